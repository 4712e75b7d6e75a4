"""Atomic publishing: all lists or none, the CRM CSV format, and the fault hook."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest

from common.files import replace_all
from common.faults import InjectedFailure, checkpoint
from serving.publish import publish_lists, to_csv_bytes

AS_OF = dt.date(2026, 11, 1)


def _lists(tag: str) -> dict[str, pd.DataFrame]:
    return {
        "at_risk": pd.DataFrame({"rank": [1, 2], "customer_id": ["C2", "C1"], "as_of": [AS_OF, AS_OF],
                                 "churn_probability": [0.8123456789, 0.5], "predicted_cltv": [100.005, 20.0],
                                 "value_at_risk": [81.2345, 10.0], "run_id": [tag, tag]}),
        "winback": pd.DataFrame({"rank": [1], "customer_id": ["C3"], "as_of": [AS_OF],
                                 "reactivation_probability": [0.25], "run_id": [tag]}),
    }


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_publish_writes_parquet_csv_metadata_and_pointer(tmp_path):
    paths = publish_lists(_lists("run-1"), tmp_path, AS_OF, {"run_id": "run-1"})
    assert paths["at_risk"] == tmp_path / "at_risk" / "as_of=2026-11-01"
    assert sorted(p.name for p in paths["at_risk"].iterdir()) == ["at_risk.csv", "at_risk.parquet", "changes.csv",
                                                                   "exports", "run.json"]
    back = pd.read_parquet(paths["at_risk"] / "at_risk.parquet")
    assert back["churn_probability"].tolist() == [0.8123456789, 0.5]  # Parquet keeps full precision
    assert json.loads((tmp_path / "at_risk" / "latest.json").read_text()) == {
        "list": "at_risk", "as_of": "2026-11-01", "folder": "as_of=2026-11-01", "rows": 2, "run_id": "run-1"}
    meta = json.loads((paths["winback"] / "run.json").read_text())
    assert meta["rows"] == 1 and meta["list"] == "winback" and meta["run_id"] == "run-1"
    assert oct(paths["at_risk"].stat().st_mode & 0o777) != oct(0o700)  # readable by the CRM import, not private


def test_csv_rounds_money_to_cents_and_probabilities_to_six_decimals():
    text = to_csv_bytes(_lists("r")["at_risk"]).decode()
    assert text.splitlines() == [
        "rank,customer_id,as_of,churn_probability,predicted_cltv,value_at_risk,run_id",
        "1,C2,2026-11-01,0.812346,100.0,81.23,r",  # 100.005 is 100.00499.. in binary: rounds down
        "2,C1,2026-11-01,0.5,20.0,10.0,r",
    ]


@pytest.mark.parametrize("point", ["publish.after_staging", "publish.after_first_list"])
def test_a_failure_while_publishing_leaves_every_previous_list(tmp_path, monkeypatch, point):
    publish_lists(_lists("old"), tmp_path, AS_OF, {"run_id": "old"})
    before = _tree(tmp_path)
    monkeypatch.setenv("CHURN_FAIL_AT", point)
    with pytest.raises(InjectedFailure, match=point):
        publish_lists(_lists("new"), tmp_path, AS_OF, {"run_id": "new"})
    assert _tree(tmp_path) == before  # same files, same bytes, no staged leftovers
    monkeypatch.delenv("CHURN_FAIL_AT")
    publish_lists(_lists("new"), tmp_path, AS_OF, {"run_id": "new"})
    assert pd.read_parquet(tmp_path / "winback" / "as_of=2026-11-01" / "winback.parquet")["run_id"].tolist() == [
        "new"]


def test_replace_all_puts_back_what_it_swapped_when_a_later_swap_fails(tmp_path):
    a, b, pointer = tmp_path / "a", tmp_path / "b", tmp_path / "latest.json"
    for folder in (a, b):
        folder.mkdir()
        (folder / "x.txt").write_text("old")
    pointer.write_text("old")
    swapped = []

    def hook(event, target):
        if event == "swapped":
            swapped.append(target.name)
            if target == b:
                raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        replace_all({a: lambda t: (t / "x.txt").write_text("new"), b: lambda t: (t / "x.txt").write_text("new")},
                    {pointer: b"new"}, hook=hook)
    assert swapped == ["a", "b"]
    assert (a / "x.txt").read_text() == (b / "x.txt").read_text() == pointer.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "latest.json"]


def test_a_failing_fill_changes_nothing(tmp_path):
    target = tmp_path / "list"
    target.mkdir()
    (target / "x.txt").write_text("old")

    def fill(tmp: Path) -> None:
        (tmp / "x.txt").write_text("half")
        raise ValueError("bad row")

    with pytest.raises(ValueError):
        replace_all({target: fill})
    assert (target / "x.txt").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["list"]


def test_fault_hook_names_only_known_points(monkeypatch):
    checkpoint("score.after_scoring")  # unset: nothing happens
    monkeypatch.setenv("CHURN_FAIL_AT", "score.after_scoring")
    with pytest.raises(InjectedFailure):
        checkpoint("score.after_scoring")
    with pytest.raises(ValueError, match="unknown failure point"):
        checkpoint("score.typo")


@pytest.mark.parametrize("point", ["publish.sql_after_first_list", "publish.after_first_list"])
def test_sql_tables_and_files_change_together_or_not_at_all(tmp_path, monkeypatch, point):
    import sqlite3

    url = f"sqlite:///{tmp_path / 'lists.db'}"
    publish_lists(_lists("old"), tmp_path, AS_OF, {"run_id": "old"}, sql=url)
    publish_lists(_lists("old"), tmp_path, dt.date(2026, 10, 1), {"run_id": "old"}, sql=url)

    def tables() -> dict:
        with sqlite3.connect(tmp_path / "lists.db") as db:
            return {t: db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
                    for t in ("at_risk", "winback", "list_latest", "at_risk_latest", "winback_latest")}

    before, files = tables(), _tree(tmp_path / "at_risk")
    assert len(before["at_risk"]) == 4 and len(before["at_risk_latest"]) == 2  # two as-of dates kept; latest one
    assert before["list_latest"] == [("at_risk", "2026-10-01", "old", 2), ("winback", "2026-10-01", "old", 1)]
    monkeypatch.setenv("CHURN_FAIL_AT", point)
    with pytest.raises(InjectedFailure):
        publish_lists(_lists("new"), tmp_path, AS_OF, {"run_id": "new"}, sql=url)
    assert tables() == before and _tree(tmp_path / "at_risk") == files
    monkeypatch.delenv("CHURN_FAIL_AT")
    publish_lists(_lists("new"), tmp_path, AS_OF, {"run_id": "new"}, sql=url)
    after = tables()
    assert len(after["at_risk"]) == 4 and {r[-1] for r in after["at_risk_latest"]} == {"new"}
