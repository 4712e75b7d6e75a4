"""Bad input never ends in a traceback: every class of the corpus (tests/reliability/corpus.py) gives its expected
outcome, from `churn validate` too, and the commands after validation (features, promote) fail in one clear line."""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from common.config import load_config
from common.errors import ConfigError
from pipelines.cli import app
from tests.conftest import write_config
from tests.reliability.corpus import CASES, Case, run_case

runner = CliRunner()
ERROR_CASES = [c for c in CASES if c.error is not None]


def _flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


@pytest.mark.parametrize("batch_rows", [None, 2], ids=["whole", "batches of 2 rows"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_case_has_its_expected_outcome(case: Case, tmp_path, batch_rows):
    # validated in batches of two rows, every table of every case spans several batches: the same outcome, counts
    # and messages prove that the checks across rows (duplicates, derived order ids) see the whole table
    result = run_case(case, tmp_path, batch_rows)
    assert result["passed"], result["problem"]
    if result["outcome"] == "ok":  # rows read = kept + quarantined + suppressed, per table
        for table, counts in result["tables"].items():
            assert counts["rows_read"] == counts["kept"] + counts["quarantined"] + counts["suppressed"], table


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.name)
def test_error_case_is_one_line_from_the_cli(case: Case, tmp_path):
    run_case(case, tmp_path)  # writes the inputs and the config (and the suppression list)
    result = runner.invoke(app, ["validate", "--config", str(tmp_path / "config.yaml")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    error = _flat(result.output[result.output.index("error:"):])
    assert re.search(case.error, error), error
    assert not any(text in error for text in case.not_in_message), error


def test_run_case_reports_the_counts_a_bench_prints(tmp_path):
    case = next(c for c in CASES if c.name == "provenance after suppression")
    result = run_case(case, tmp_path)
    assert {k: result[k] for k in ("outcome", "rows_read", "kept", "quarantined", "suppressed", "message")} == {
        "outcome": "ok", "rows_read": 4, "kept": 1, "quarantined": 1, "suppressed": 2, "message": ""}


def test_run_case_reports_a_traceback_as_a_failed_error(tmp_path, monkeypatch):
    import features.ingest

    def crash(*args, **kwargs):
        raise KeyError("amount")

    monkeypatch.setattr(features.ingest, "ingest", crash)
    result = run_case(next(c for c in CASES if c.name == "header only"), tmp_path)
    assert (result["outcome"], result["crashed"], result["passed"]) == ("error", True, False)
    assert result["problem"].startswith("a traceback instead of a clear error: KeyError")


def test_quarantine_names_file_line_and_row_and_validated_tables_have_no_provenance(tmp_path):
    case = next(c for c in CASES if c.name == "glob of several files: provenance")
    assert run_case(case, tmp_path)["passed"]
    quarantine = pd.read_parquet(tmp_path / "quarantine" / "transactions" / "corpus.parquet")
    assert list(quarantine.columns) == ["customer_id", "ts", "amount", "order_id", "reject_reason", "source_file",
                                        "source_line", "source_row"]
    # orders-2.csv: header on line 1, o3 on line 2, o4 on line 3, o5 on line 4 = its third data row (0-based 2)
    row = quarantine.set_index("order_id").loc["o5"]
    assert (row["source_file"], row["source_line"], row["source_row"]) == ("exports/orders-2.csv", 4, 2)
    validated = pd.read_parquet(tmp_path / "validated" / "transactions.parquet")
    assert not [c for c in validated.columns if "source" in c]


def test_amounts_below_the_bound_build_features_without_overflow(tmp_path):
    """The bound exists for the feature engine's integer millionths: what validation keeps, it can sum."""
    from common.config import HorizonsConfig
    from features.snapshots import build_snapshots, open_sources

    case = next(c for c in CASES if c.name == "amounts out of range")
    assert run_case(case, tmp_path)["passed"]
    snapshot = build_snapshots(open_sources(tmp_path / "validated"), [dt.date(2026, 10, 6)], HorizonsConfig())
    assert snapshot["net_spend"].tolist() == [pytest.approx(999_999_999_999.99 + 5)]


def test_config_normalises_currency_and_checks_encoding_and_date_format(tmp_path):
    tx = {"transactions": {"source": {"path": "tx.csv"}}}
    assert load_config(write_config(tmp_path, tx, base_currency=" usd ")).base_currency == "USD"
    with pytest.raises(ConfigError, match=r"'base_currency': 'US' is not an ISO 4217"):
        load_config(write_config(tmp_path, tx, base_currency="US"))
    for bad, message in (("utf-9", "unknown text encoding 'utf-9'"), ("base64", "unknown text encoding 'base64'")):
        tables = {"transactions": {"source": {"path": "tx.csv", "csv_encoding": bad}}}
        with pytest.raises(ConfigError, match=rf"'tables\.transactions\.source\.csv_encoding': {message}"):
            load_config(write_config(tmp_path, tables))
    tables = {"transactions": {"source": {"path": "tx.csv", "csv_encoding": "CP1250"}, "date_format": "%d.%m.%Y"}}
    assert load_config(write_config(tmp_path, tables)).tables["transactions"].date_format == "%d.%m.%Y"


def _validated(folder: Path) -> Path:
    (folder / "tx.csv").write_text("customer_id,ts,amount\nA,2026-01-05,5\nA,2026-03-05,7\nB,2026-02-05,3\n")
    config = write_config(folder, {"transactions": {"source": {"path": "tx.csv"}}}, as_of="2026-10-31")
    result = runner.invoke(app, ["validate", "--config", str(config)])
    assert result.exit_code == 0, result.output
    return config


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_features_on_a_damaged_validated_file_names_it_and_says_to_validate_again(tmp_path, damage):
    config = _validated(tmp_path)
    path = tmp_path / "validated" / "transactions.parquet"
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        path.write_bytes(bytes(data[:100]))
    else:  # the middle of the file, footer intact
        data[8:len(data) // 2] = b"\x55" * (len(data) // 2 - 8)
        path.write_bytes(bytes(data))
    result = runner.invoke(app, ["features", "--config", str(config)])
    assert result.exit_code == 2, result.output
    output = _flat(result.output)
    assert "Traceback" not in result.output
    assert f"error: {path} cannot be read as Parquet" in output and "run `churn validate` again" in output


def test_features_after_a_validation_that_kept_nothing_says_what_to_do(tmp_path):
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount\nA,soon,5\n")
    config = write_config(tmp_path, {"transactions": {"source": {"path": "tx.csv"}}}, as_of="2026-10-31",
                          validation={"max_reject_share": 1.0})
    result = runner.invoke(app, ["validate", "--config", str(config)])
    assert result.exit_code == 2 and "No row of transactions is valid" in _flat(result.output)
    result = runner.invoke(app, ["features", "--config", str(config)])
    assert result.exit_code == 2
    assert "no validated transactions in" in _flat(result.output) and "run `churn validate` first" in result.output


def _registered(folder: Path) -> Path:
    """A config whose MLflow store holds ``churn-classifier`` version 1 (no champion)."""
    from mlflow import MlflowClient

    from models import tracking

    config = write_config(folder, {"transactions": {"source": {"path": "tx.csv"}}})
    tracking._mlflow(load_config(config))
    client = MlflowClient()
    client.create_registered_model("churn-classifier")
    client.create_model_version("churn-classifier", source=str(folder / "model"))
    return config


def _assert_refused_and_unchanged(result, config: Path) -> None:
    from mlflow import MlflowClient

    from models import tracking

    output = _flat(result.output)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and output.count("error:") == 1
    assert "error: cannot promote churn-classifier version 1: could not" in output
    assert "nothing was changed" in output and "writable" in output and "run `churn promote` again" in output
    tracking._mlflow(load_config(config))
    assert tracking._alias_version(MlflowClient(), "churn-classifier", "champion") is None


def test_promote_with_a_read_only_mlflow_store_is_one_line_and_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow makes the folder of a sqlite path, and reads 'file:/...' as relative
    config = _registered(tmp_path)
    store = tmp_path / "mlflow"
    modes = {p: p.stat().st_mode for p in [store, *store.rglob("*")]}
    for path in modes:  # chmod -R a-w
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    read_only = tmp_path / "read-only.yaml"
    settings = yaml.safe_load(config.read_text())
    if os.geteuid() == 0:  # root writes through any permission bits: open the same file read-only instead
        settings["mlflow"] = {"tracking_uri": f"sqlite:///file:{store / 'mlflow.db'}?mode=ro&uri=true"}
    read_only.write_text(yaml.safe_dump(settings))
    try:
        result = runner.invoke(app, ["promote", "churn-classifier", "1", "--config", str(read_only)])
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    _assert_refused_and_unchanged(result, config)


def test_promote_when_the_store_refuses_the_write_is_one_line_and_changes_nothing(tmp_path, monkeypatch):
    """The same refusal simulated where the store raises it (what SQLite says to a write on a read-only file)."""
    import sqlalchemy
    from mlflow import MlflowClient

    config = _registered(tmp_path)

    def refuse(*args, **kwargs):
        raise sqlalchemy.exc.OperationalError("UPDATE registered_models", {}, Exception(
            "attempt to write a readonly database"))

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", refuse)
    result = runner.invoke(app, ["promote", "churn-classifier", "1", "--config", str(config)])
    assert "attempt to write a readonly database" in _flat(result.output)
    monkeypatch.undo()
    _assert_refused_and_unchanged(result, config)
