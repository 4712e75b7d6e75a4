"""The `churn` command line: help, generate, validate, and one-line errors."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from pipelines.cli import app
from tests.conftest import write_config

runner = CliRunner()


def _flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def test_help_lists_commands_with_descriptions():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "generate" in result.output and "Generate the synthetic global retailer" in result.output
    assert "validate" in result.output and "Ingest and validate every configured table" in result.output


def test_generate_then_validate_from_the_config_defaults(tmp_path):
    tables = {name: {"source": {"path": f"raw/{name}.parquet"}}
              for name in ("transactions", "customers", "fx_rates", "surveys")}
    cfg = write_config(tmp_path, tables, as_of="2026-11-01", generator={"customers": 200, "seed": 1})
    result = runner.invoke(app, ["generate", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "raw" / "transactions.parquet").exists()
    assert len(pd.read_parquet(tmp_path / "raw" / "customers.parquet")) == 200
    again = runner.invoke(app, ["generate", "--config", str(cfg), "--if-missing"])
    assert "not generated again" in _flat(again.output)

    result = runner.invoke(app, ["validate", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "transactions" in result.output and "0 (0.00%)" in result.output
    assert (tmp_path / "validated" / "transactions.parquet").exists()


def test_errors_are_one_clear_line_without_traceback_unless_debug(tmp_path):
    cfg = write_config(tmp_path, {"transactions": {"source": {"path": "none.csv"}}})
    result = runner.invoke(app, ["validate", "--config", str(cfg), "--as-of", "2026-01-01"])
    assert result.exit_code == 2
    assert "error: transactions: no file matches 'none.csv'" in _flat(result.output)
    assert "Traceback" not in result.output
    debug = runner.invoke(app, ["validate", "--config", str(cfg), "--as-of", "2026-01-01", "--debug"])
    assert debug.exit_code != 0 and debug.exception is not None


def test_bad_config_is_reported_with_the_key(tmp_path):
    cfg = write_config(tmp_path, {"transactions": {"source": {"path": "x.csv"}}}, colour="blue")
    result = runner.invoke(app, ["validate", "--config", str(cfg)])
    assert result.exit_code == 2 and "unknown key 'colour'" in _flat(result.output)


def test_features_snapshot_and_stack_match_the_engine(validated_dir):
    import datetime as dt
    import json

    from common.config import HorizonsConfig, SnapshotsConfig
    from features.snapshots import build_snapshots, cutoff_schedule, open_sources, read_snapshots

    folder = validated_dir.parent
    cfg = write_config(folder, {"transactions": {"source": {"path": "raw/transactions.parquet"}}},
                       snapshots={"cadence": "monthly", "lookback_months": 2})
    result = runner.invoke(app, ["features", "--config", str(cfg), "--stack", "--as-of", "2026-07-15"])
    assert result.exit_code == 0, result.output
    stack = read_snapshots(folder / "features" / "training_stack")
    cutoffs = cutoff_schedule(dt.date(2026, 7, 15), SnapshotsConfig(lookback_months=2))
    # two months back from 2026-07-15 is 2026-05-15: the first days of months from then on
    assert sorted(stack["cutoff"].unique()) == cutoffs == [dt.date(2026, 6, 1), dt.date(2026, 7, 1)]
    expected = build_snapshots(open_sources(validated_dir), cutoffs, HorizonsConfig(), with_labels=True)
    pd.testing.assert_frame_equal(stack[expected.columns], expected, check_dtype=False, check_categorical=False)
    meta = json.loads((folder / "features" / "training_stack" / "metadata.json").read_text())
    assert meta["rows_per_cutoff"] == {c.isoformat(): int((expected["cutoff"] == c).sum()) for c in cutoffs}
    assert "churned" in meta["features"] and {s["file"] for s in meta["sources"]} >= {"transactions.parquet"}

    out = folder / "snap.parquet"
    result = runner.invoke(app, ["features", "--config", str(cfg), "--as-of", "2026-03-01", "--with-labels",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    snap = pd.read_parquet(out)
    assert len(snap) == len(read_snapshots(folder / "features" / "snapshot_2026-03-01"))
    assert snap["churned"].notna().any()


def test_validate_warns_loudly_when_nobody_can_be_contacted(tmp_path):
    """Transactions only: consent is unknown and required, so the lists would target nobody; validate says so and
    names the settings (issue 17, stumble 3). With a customers table that has consent it says nothing."""
    tables = {name: {"source": {"path": f"raw/{name}.parquet"}} for name in ("transactions", "customers", "fx_rates")}
    cfg = write_config(tmp_path, tables, as_of="2026-11-01", generator={"customers": 200, "seed": 1})
    assert runner.invoke(app, ["generate", "--config", str(cfg)]).exit_code == 0
    with_consent = runner.invoke(app, ["validate", "--config", str(cfg)])
    assert with_consent.exit_code == 0 and "warning" not in with_consent.output
    only_tx = write_config(tmp_path, {k: v for k, v in tables.items() if k != "customers"}, as_of="2026-11-01")
    result = runner.invoke(app, ["validate", "--config", str(only_tx)])
    assert result.exit_code == 0, result.output
    text = _flat(result.output)
    assert ("warning: no customers table is configured, so nobody's marketing consent is known and "
            "targeting.require_consent is true" in text)
    assert "tables.customers.columns.marketing_consent" in text and "targeting.require_consent: false" in text
    relaxed = write_config(tmp_path, {k: v for k, v in tables.items() if k != "customers"}, as_of="2026-11-01",
                           targeting={"require_consent": False})
    assert "warning" not in runner.invoke(app, ["validate", "--config", str(relaxed)]).output


def test_a_customers_table_without_consent_is_named_too(tmp_path):
    from common.config import load_config
    from pipelines import jobs

    cfg = load_config(write_config(tmp_path, {"transactions": {"source": {"path": "t.csv"}},
                                              "customers": {"source": {"path": "c.csv"}}}))
    assert jobs.consent_warning(cfg) is None  # not validated yet: nothing known
    cfg.validated_dir.mkdir(parents=True)
    pd.DataFrame({"customer_id": ["C1"], "country": ["DE"]}).to_parquet(cfg.validated_dir / "customers.parquet")
    assert jobs.consent_warning(cfg).startswith("the customers table has no marketing_consent column")


def test_a_run_that_targets_nobody_says_why(tmp_path, capsys):
    from common.config import load_config
    from pipelines.cli import print_scoring

    cfg = load_config(write_config(tmp_path, {"transactions": {"source": {"path": "t.csv"}}}))
    campaign = {"campaign_id": "retention-at_risk-2026-11-01", "treatment": 0, "control": 0,
                "held_back_no_consent": 514, "cost": 0.0, "expected_saved_value": 0.0, "expected_net_return": 0.0}
    summary = {"as_of": "2026-11-01", "run_id": "r1", "customers_scored": 600, "active_customers": 514,
               "lapsed_customers": 86, "at_risk_customers": 40, "value_at_risk": 1.0, "expected_winback_value": 1.0,
               "champion_versions": {"churn-classifier": "1"}, "campaigns": {"at_risk": campaign},
               "published": {}, "dry_run": True}
    print_scoring(summary, cfg)
    text = _flat(capsys.readouterr().out)
    assert "0 targeted: no customers table is configured, so nobody's marketing consent is known" in text
    summary["campaigns"]["at_risk"] = {**campaign, "treatment": 3}
    print_scoring(summary, cfg)
    assert "0 targeted" not in capsys.readouterr().out


def test_validate_names_unmapped_source_columns_and_the_key_that_maps_them(tmp_path):
    """A quantity column under another name is not dropped without a word (issue 17, stumble 4)."""
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount,qty\nC1,2026-10-01,10.0,2\nC2,2026-10-02,5.0,1\n")
    cfg = write_config(tmp_path, {"transactions": {"source": {"path": "tx.csv"}}}, as_of="2026-11-01")
    result = runner.invoke(app, ["validate", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    text = _flat(result.output)
    assert ("note: transactions: source column(s) 'qty' not used; to use one, set "
            "tables.transactions.columns.<contract column>: <source column>") in text
    assert "without a source column: order_id, currency, category, channel, quantity, discount" in text
    mapped = write_config(tmp_path, {"transactions": {"source": {"path": "tx.csv"}, "columns": {"quantity": "qty"}}},
                          as_of="2026-11-01")
    again = runner.invoke(app, ["validate", "--config", str(mapped)])
    assert again.exit_code == 0 and "not used" not in again.output
