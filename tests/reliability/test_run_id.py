"""``run_id`` names a list's inputs: every input that changes a published list changes it, and nothing else."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from common.config import load_config
from pipelines import keys
from tests.conftest import write_config

CHAMPIONS = {"churn-classifier": SimpleNamespace(version="3"), "cltv-regressor": SimpleNamespace(version="2")}


@pytest.fixture
def inputs(tmp_path) -> dict:
    (tmp_path / "reasons.yaml").write_text("reasons: {}\n")
    (tmp_path / "playbooks.yaml").write_text("playbooks: []\n")
    (tmp_path / "validated").mkdir()
    pd.DataFrame({"customer_id": ["C1"], "email": ["a@example.com"]}).to_parquet(
        tmp_path / "validated" / "customer_contacts.parquet")
    return {"folder": tmp_path, "settings": {}, "snapshot": "snap-1", "champions": dict(CHAMPIONS)}


def _run_id(inputs: dict) -> str:
    folder = inputs["folder"]
    cfg = load_config(write_config(folder, {"transactions": {"source": {"path": "raw/tx.csv"}}},
                                   **inputs["settings"]))
    return keys.scoring_run_id(inputs["snapshot"], inputs["champions"], cfg, folder / "reasons.yaml",
                               folder / "playbooks.yaml")


def _set(inputs: dict, section: str, key: str, value) -> None:
    inputs["settings"].setdefault(section, {})[key] = value


CHANGES = {
    "control share": lambda i: _set(i, "targeting", "control_share", 0.30),
    "budget": lambda i: _set(i, "targeting", "budgets", {"at_risk": 5000.0}),
    "risk tiers": lambda i: _set(i, "targeting", "risk_tiers", {"high": 0.7, "medium": 0.3}),
    "consent rule": lambda i: _set(i, "targeting", "require_consent", False),
    "campaign prefix": lambda i: _set(i, "targeting", "campaign_prefix", "save"),
    "list minimum tier": lambda i: _set(i, "targeting", "min_tier", "high"),
    "next-order date rule": lambda i: _set(i, "scoring", "next_order_date_max_churn", 0.4),
    "contacts joined": lambda i: _set(i, "outputs", "include_contact", True),
    "churn horizon": lambda i: _set(i, "horizons", "churn_days", 60),
    "base currency": lambda i: i["settings"].update(base_currency="EUR"),
    "playbooks": lambda i: (i["folder"] / "playbooks.yaml").write_text("playbooks: [] # edited\n"),
    "reasons": lambda i: (i["folder"] / "reasons.yaml").write_text("reasons: {} # edited\n"),
    "snapshot (data, feature code)": lambda i: i.update(snapshot="snap-2"),
    "a champion": lambda i: i["champions"].update({"churn-classifier": SimpleNamespace(version="4")}),
}


@pytest.mark.parametrize("change", CHANGES)
def test_each_input_that_changes_a_list_changes_the_run_id(inputs, change):
    before = _run_id(inputs)
    assert _run_id(inputs) == before  # the same inputs, the same id
    CHANGES[change](inputs)
    assert _run_id(inputs) != before


def test_the_contacts_count_only_when_they_are_joined(inputs):
    contacts = inputs["folder"] / "validated" / "customer_contacts.parquet"
    before = _run_id(inputs)
    pd.DataFrame({"customer_id": ["C1"], "email": ["b@example.com"]}).to_parquet(contacts)
    assert _run_id(inputs) == before
    _set(inputs, "outputs", "include_contact", True)
    joined = _run_id(inputs)
    pd.DataFrame({"customer_id": ["C1"], "email": ["c@example.com"]}).to_parquet(contacts)
    assert _run_id(inputs) != joined


@pytest.mark.parametrize("package", ["common", "models", "serving"])
def test_the_code_that_scores_explains_and_targets_changes_the_run_id(inputs, monkeypatch, package):
    before = _run_id(inputs)
    real = keys.source_version

    def edited(*packages: str) -> str:  # as if one file of `package` had changed
        return real(*packages) + ("-edited" if package in packages else "")

    monkeypatch.setattr(keys, "source_version", edited)
    assert _run_id(inputs) != before


def test_the_sql_lock_timeout_does_not_change_it(inputs):
    before = _run_id(inputs)
    _set(inputs, "outputs", "sql_lock_timeout_seconds", 5)
    assert _run_id(inputs) == before
