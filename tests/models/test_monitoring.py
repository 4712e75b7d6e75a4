"""Drift monitoring (issue 20): the PSI worked out by hand, bins from training, categorical features and missing
values, the levels, and `scoring.block_on_drift` refusing to publish on an alert."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.monitoring import SCORE, drift, profile, psi


def test_psi_by_hand():
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    assert psi([1.0, 0.0], [0.0, 1.0]) == pytest.approx(2 * (1 - 1e-4) * math.log(1 / 1e-4))  # floored


def test_bins_come_from_training_and_levels_follow_the_thresholds():
    rng = np.random.default_rng(3)
    train = pd.DataFrame({"x": rng.normal(size=20_000), "y": rng.normal(size=20_000),
                          "country": rng.choice(["US", "DE"], 20_000, p=[0.7, 0.3]),
                          "gap": np.where(rng.random(20_000) < 0.1, np.nan, rng.exponential(size=20_000))})
    reference = profile(train, ["x", "y", "country", "gap"], lambda f: f["x"].to_numpy())
    assert len(reference["x"]["edges"]) == 9 and reference["x"]["shares"] == pytest.approx([0.1] * 10, abs=1e-3)
    assert reference["country"]["categories"] == ["US", "DE"] and reference["gap"]["missing"] == pytest.approx(
        0.1, abs=0.01)
    now = pd.DataFrame({"x": rng.normal(size=5_000) + 1.0, "y": rng.normal(size=5_000),
                        "country": rng.choice(["US", "DE", "FR"], 5_000, p=[0.3, 0.3, 0.4]),
                        "gap": np.where(rng.random(5_000) < 0.5, np.nan, rng.exponential(size=5_000))})
    table = drift(reference, now, now["x"].to_numpy(), warn=0.1, alert=0.25).set_index("column")
    assert table.loc["x", "level"] == "alert" and table.loc["x", "psi"] > 0.25  # shifted by one s.d.
    assert table.loc["y", "level"] == "ok" and table.loc["y", "psi"] < 0.01  # same distribution
    assert table.loc["country", "level"] == "alert"  # FR was never seen in training: its own bin
    assert table.loc["gap", "level"] == "ok"  # the values kept their shape ...
    assert table.loc["gap", "missing_now"] == pytest.approx(0.5, abs=0.03)  # ... the missing rate is reported
    assert table.loc[SCORE, "level"] == "alert"  # the score (x here) moved with x
    assert drift(reference, now, now["y"].to_numpy(), 0.1, 0.25).set_index("column").loc[SCORE, "level"] == "ok"
    assert list(table.index) == ["x", "y", "country", "gap", SCORE]


def test_block_on_drift_refuses_to_publish_an_alert(tmp_path):
    from common.errors import ChurnError
    from pipelines import jobs
    from tests.conftest import write_config
    from common.config import load_config

    drift_state = {"warn_psi": 0.1, "alert_psi": 0.25, "models": {"churn-classifier": {
        "reference": True, "rows": 10, "alerts": ["net_spend"], "warnings": ["orders"], "max_psi": 0.4,
        "columns": [{"column": "net_spend", "psi": 0.4, "missing_training": 0.0, "missing_now": 0.0,
                     "level": "alert"},
                    {"column": "orders", "psi": 0.12, "missing_training": 0.0, "missing_now": 0.0,
                     "level": "warn"}]}}}
    tables = {"transactions": {"source": {"path": "raw/transactions.parquet"}}}
    quiet = load_config(write_config(tmp_path, tables))
    jobs.refuse_on_drift(quiet, drift_state)  # the default: publish, and say so
    assert jobs.drift_lines(drift_state) == ["churn-classifier: drift alert on net_spend (PSI 0.40)",
                                             "churn-classifier: drift warning on orders (PSI 0.12)"]
    strict = load_config(write_config(tmp_path, tables, scoring={"block_on_drift": True}))
    with pytest.raises(ChurnError, match="drift alert on churn-classifier: net_spend .PSI 0.40.*not published"):
        jobs.refuse_on_drift(strict, drift_state)
    with pytest.raises(Exception, match="drift_alert_psi"):
        load_config(write_config(tmp_path, tables, scoring={"drift_warn_psi": 0.3, "drift_alert_psi": 0.2}))


TRANSACTION_FEATURES = ("recency", "frequency", "T", "orders", "net_spend", "days_since_last_purchase",
                        "orders_90d", "net_spend_90d", "orders_180d", "net_spend_180d", "monetary_value")
MONEY = {"net_spend", "net_spend_90d", "net_spend_180d", "monetary_value"}


def _snapshot_at(validated, cutoff):
    from common.config import HorizonsConfig
    from features.snapshots import build_snapshots, open_sources

    snap = build_snapshots(open_sources(validated), [cutoff], HorizonsConfig())
    return snap[snap["days_since_last_purchase"] <= 365].reset_index(drop=True)


def test_an_injected_price_shock_alerts_on_the_money_features_only(generated_config, validated_dir, tmp_path):
    """Generated data: the state of the active customers on Aug 1 against Nov 1 stays quiet; the same data with a
    price shock injected (every amount from Aug 1 on multiplied by 2.5) alerts on the money features the shock
    reaches and on nothing else."""
    import datetime as dt
    import shutil

    august, november = dt.date(2026, 8, 1), dt.date(2026, 11, 1)
    before = _snapshot_at(validated_dir, august)
    reference = profile(before, list(TRANSACTION_FEATURES), lambda f: f["days_since_last_purchase"].to_numpy())

    quiet = _snapshot_at(validated_dir, november)
    table = drift(reference, quiet, quiet["days_since_last_purchase"].to_numpy(), 0.1, 0.25)
    assert (table["level"] == "ok").all(), table[table["level"] != "ok"]

    shocked_dir = tmp_path / "validated"
    shutil.copytree(validated_dir, shocked_dir)
    transactions = pd.read_parquet(shocked_dir / "transactions.parquet")
    after = transactions["ts"] >= pd.Timestamp(august)
    transactions.loc[after, "amount"] *= 2.5
    transactions.to_parquet(shocked_dir / "transactions.parquet", index=False)
    (shocked_dir / "purchase_days.parquet").unlink(missing_ok=True)  # derived from the transactions
    shocked = _snapshot_at(shocked_dir, november)
    table = drift(reference, shocked, shocked["days_since_last_purchase"].to_numpy(), 0.1, 0.25).set_index("column")
    alerted = set(table.index[table["level"] == "alert"])
    flagged = set(table.index[table["level"].isin(["warn", "alert"])])
    assert "net_spend_90d" in alerted and {"net_spend_180d", "monetary_value"} <= flagged <= MONEY, table
    assert (table.loc[[c for c in TRANSACTION_FEATURES if c not in MONEY], "level"] == "ok").all(), table
