"""Drift monitoring (issue 20): the PSI worked out by hand, bins from training, categorical features and missing
values, the nearest training cutoff, markets, too few values, clock features, the levels, and
`scoring.block_on_drift` refusing to publish on an alert. The injected drift of the generator's `drifted` scenario:
tests/models/test_drift_scenarios.py."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from models.monitoring import SCORE, drift, noise_bound, profile, psi, shares


def test_psi_by_hand():
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    assert psi([1.0, 0.0], [0.0, 1.0]) == pytest.approx(2 * (1 - 1e-4) * math.log(1 / 1e-4))  # floored


def _overall(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["market"].isna()].set_index("column")


def test_bins_come_from_training_and_levels_follow_the_thresholds():
    rng = np.random.default_rng(3)
    train = pd.DataFrame({"x": rng.normal(size=20_000), "y": rng.normal(size=20_000),
                          "country": rng.choice(["US", "DE"], 20_000, p=[0.7, 0.3]),
                          "gap": np.where(rng.random(20_000) < 0.1, np.nan, rng.exponential(size=20_000))})
    reference = profile(train, ["x", "y", "country", "gap"], lambda f: f["x"].to_numpy())
    x = reference["columns"]["x"]
    assert len(x["edges"]) == 9 and x["counts"].shape == (3, 1, 10)  # everyone, DE, US; one cutoff; ten bins
    assert (x["counts"][0, 0] == 2_000).all() and x["counts"][1:].sum() == 20_000
    assert reference["columns"]["country"]["categories"] == ["US", "DE"] and reference["markets"] == ["DE", "US"]
    assert reference["columns"]["gap"]["missing"][0, 0] == pytest.approx(2_000, abs=100)
    now = pd.DataFrame({"x": rng.normal(size=5_000) + 1.0, "y": rng.normal(size=5_000),
                        "country": rng.choice(["US", "DE", "FR"], 5_000, p=[0.3, 0.3, 0.4]),
                        "gap": np.where(rng.random(5_000) < 0.5, np.nan, rng.exponential(size=5_000))})
    table = _overall(drift(reference, now, now["x"].to_numpy(), warn=0.1, alert=0.25))
    assert table.loc["x", "level"] == "alert" and table.loc["x", "psi"] > 0.25  # shifted by one s.d.
    assert table.loc["y", "level"] == "ok" and table.loc["y", "psi"] < 0.01  # same distribution
    assert table.loc["country", "level"] == "alert"  # FR was never seen in training: its own bin
    assert table.loc["gap", "level"] == "ok"  # the values kept their shape ...
    assert table.loc["gap", "missing_now"] == pytest.approx(0.5, abs=0.03)  # ... the missing rate is reported
    assert table.loc["gap", "missing_training"] == pytest.approx(0.1, abs=0.01)
    assert table.loc[SCORE, "level"] == "alert"  # the score (x here) moved with x
    assert _overall(drift(reference, now, now["y"].to_numpy(), 0.1, 0.25)).loc[SCORE, "level"] == "ok"
    assert list(table.index) == ["x", "y", "country", "gap", SCORE]


def test_drift_is_measured_against_the_nearest_training_cutoff():
    """A newsletter every 14 days: at one cutoff every customer got 6 mails in 90 days, at the next 7. Scored on a
    day like the second, the PSI is 0 against it; against the two pooled (shares 1/2, 1/2 against 0, 1) it would be
    (1e-4 - 0.5) ln(1e-4 / 0.5) + (1 - 0.5) ln(1 / 0.5) = 4.6, an alert on nothing."""
    train = pd.DataFrame({"cutoff": ["2026-06-01"] * 1_000 + ["2026-07-01"] * 1_000,
                          "sent": [6] * 1_000 + [7] * 1_000})
    reference = profile(train, ["sent"], lambda f: np.zeros(len(f)))
    assert reference["cutoffs"] == ["2026-06-01", "2026-07-01"]
    assert reference["columns"]["sent"]["edges"] == [6.0, 6.5, 7.0]  # the deciles: 6 five times, 6.5, 7
    assert reference["columns"]["sent"]["counts"][0].tolist() == [[1_000, 0, 0, 0], [0, 0, 1_000, 0]]
    now = pd.DataFrame({"sent": [7] * 800})
    row = _overall(drift(reference, now, np.zeros(800), 0.1, 0.25)).loc["sent"]
    assert (row["cutoff"], row["level"], row["rows_training"]) == ("2026-07-01", "ok", 1_000)
    assert row["psi"] == pytest.approx(0, abs=1e-3)  # the same shares, but for the half row added to every bin
    assert psi([0.5, 0.5], [0.0, 1.0]) == pytest.approx((1e-4 - 0.5) * math.log(1e-4 / 0.5) + 0.5 * math.log(2))
    assert psi([0.5, 0.5], [0.0, 1.0]) > 4.5


def test_markets_are_compared_at_the_cutoff_the_median_market_is_nearest_to():
    """The newsletter again, in two markets: JP had 1,000 customers at the first cutoff (6 mails) but only 50 at the
    second (7 mails, like now). DE, readable at both, is nearest to the second; JP, readable only at the first, is
    as near as it gets there. The median market is nearest to the second cutoff (DE exactly, against half of DE's
    distance at the first), so JP is compared with its 50 customers then: too few to tell. Against its own
    readable past, the first cutoff, it would be an alert on nothing."""
    train = pd.DataFrame({"cutoff": ["2026-06-01"] * 2_000 + ["2026-07-01"] * 1_050,
                          "country": ["DE"] * 1_000 + ["JP"] * 1_000 + ["DE"] * 1_000 + ["JP"] * 50,
                          "sent": [6] * 2_000 + [7] * 1_050})
    reference = profile(train, ["sent", "country"], lambda f: np.zeros(len(f)))
    now = pd.DataFrame({"country": ["DE"] * 1_000 + ["JP"] * 300, "sent": [7] * 1_300})
    table = drift(reference, now, np.zeros(1_300), 0.1, 0.25).set_index("column")
    assert table.loc["sent", ["cutoff", "level"]].tolist() == ["2026-07-01", "ok"]
    assert table.loc["sent in DE", ["cutoff", "level"]].tolist() == ["2026-07-01", "ok"]
    assert table.loc["sent in JP", ["cutoff", "rows_training", "level"]].tolist() == ["2026-07-01", 50, "too few"]


def test_a_shift_in_one_market_alerts_in_that_market_and_not_overall():
    """US customers (20% here) spend twice as much; overall the PSI grows by about 0.2 squared of the US's."""
    rng = np.random.default_rng(5)
    country = rng.choice(["US", "DE", "FR", "GB"], 40_000, p=[0.2, 0.3, 0.3, 0.2])
    train = pd.DataFrame({"spend": rng.lognormal(3, 0.5, 40_000), "country": country})
    reference = profile(train, ["spend", "country"], lambda f: np.zeros(len(f)))
    country = rng.choice(["US", "DE", "FR", "GB"], 10_000, p=[0.2, 0.3, 0.3, 0.2])
    now = pd.DataFrame({"spend": rng.lognormal(3, 0.5, 10_000) * np.where(country == "US", 2.0, 1.0),
                        "country": country})
    table = drift(reference, now, np.zeros(10_000), 0.1, 0.25).set_index("column")
    us = table.loc["spend in US"]
    assert us["market"] == "US" and us["level"] == "alert" and us["psi"] > 1
    assert table.loc["spend", "level"] == "ok" and table.loc["spend", "psi"] < 0.1
    assert (table.loc[["spend in DE", "spend in FR", "spend in GB"], "level"] == "ok").all()
    assert "country in US" not in table.index  # a market's own column says nothing within it


def test_shares_add_half_a_row_to_every_bin():
    """A small market: 14 of its 602 customers have an open ticket now, none of its 198 at a training cutoff. With
    the shares floored at 1e-4 the empty bin alone costs (0.0233 - 1e-4) ln(0.0233 / 1e-4) = 0.127, a warning
    from one unlucky cutoff; with half a row added to every bin (198.5 / 199, 0.5 / 199 against 588.5 / 603,
    14.5 / 603) the PSI is 0.049."""
    assert shares([198, 0]).tolist() == pytest.approx([198.5 / 199, 0.5 / 199])
    now, then = [588.5 / 603, 14.5 / 603], [198.5 / 199, 0.5 / 199]
    assert psi(shares([198, 0]), shares([588, 14])) == pytest.approx(
        sum((c - r) * math.log(c / r) for c, r in zip(now, then)))
    assert psi(shares([198, 0]), shares([588, 14])) == pytest.approx(0.049, abs=0.001)
    assert psi([1.0, 0.0], [588 / 602, 14 / 602]) == pytest.approx(0.127, abs=0.001)


def test_too_few_values_are_shown_not_judged():
    """Two samples of 100 from one distribution over ten bins have a PSI of about (1/100 + 1/100) x chi2(9): its
    99.9% quantile, 0.02 x 27.88 = 0.56, is above 0.1 (the bound of a stable population), so such a PSI is not
    read; 2,000 on each side are (0.001 x 27.88 = 0.028)."""
    assert noise_bound(100, 100, 10) == pytest.approx(0.02 * 27.877, rel=1e-3)
    assert noise_bound(2_000, 2_000, 10) == pytest.approx(0.001 * 27.877, rel=1e-3)
    rng = np.random.default_rng(8)
    reference = profile(pd.DataFrame({"x": rng.normal(size=100)}), ["x"], lambda f: np.zeros(len(f)))
    now = pd.DataFrame({"x": rng.normal(size=100) + 3})  # far away, but too few to tell
    row = _overall(drift(reference, now, np.zeros(100), 0.1, 0.25)).loc["x"]
    assert row["level"] == "too few" and row["psi"] > 1


def test_clock_features_are_reported_as_trend():
    """Every customer is a year older than at the only training cutoff: tenure's PSI is shown, never judged."""
    rng = np.random.default_rng(9)
    tenure = rng.integers(0, 730, 5_000)
    reference = profile(pd.DataFrame({"tenure_days": tenure}), ["tenure_days"], lambda f: np.zeros(len(f)))
    row = _overall(drift(reference, pd.DataFrame({"tenure_days": tenure + 365}), np.zeros(5_000), 0.1,
                         0.25)).loc["tenure_days"]
    assert row["level"] == "trend" and row["psi"] > 1


def test_a_champion_with_an_older_profile_has_no_reference():
    """Trained before the profiles per cutoff and market: the run says to retrain it, and measures nothing."""
    from common.config import HorizonsConfig
    from serving.scoring import Champion, score_drift

    old = {"x": {"kind": "numeric", "edges": [0.0], "shares": [0.5, 0.5], "missing": 0.0}}
    champion = Champion("churn-classifier", "1", SimpleNamespace(reference=old))
    inputs = pd.DataFrame({"days_since_last_purchase": [3, 30], "x": [1.0, -1.0]})
    scores = pd.DataFrame({"churn_probability": [0.2, 0.4]})
    state = score_drift(scores, inputs, {"churn-classifier": champion}, HorizonsConfig(), 0.1, 0.25)
    assert state["models"]["churn-classifier"] == {"reference": False, "rows": 2, "alerts": [], "warnings": [],
                                                   "max_psi": None, "markets": [], "columns": []}


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
    """Generated data: the state of the active customers on Aug 1 against Nov 1 stays quiet (T, the days since the
    first order, is a clock: reported as trend); the same data with a price shock injected (every amount from Aug 1
    on multiplied by 2.5, in every market) alerts on the money features the shock reaches and on nothing else."""
    import datetime as dt
    import shutil

    august, november = dt.date(2026, 8, 1), dt.date(2026, 11, 1)
    before = _snapshot_at(validated_dir, august)
    reference = profile(before, list(TRANSACTION_FEATURES), lambda f: f["days_since_last_purchase"].to_numpy())

    quiet = _snapshot_at(validated_dir, november)
    table = drift(reference, quiet, quiet["days_since_last_purchase"].to_numpy(), 0.1, 0.25)
    assert table["level"].isin(["ok", "trend", "too few"]).all(), table[table["level"] != "ok"]
    assert (_overall(table).drop(index="T")["level"] == "ok").all()  # T: days since the first order, a clock

    shocked_dir = tmp_path / "validated"
    shutil.copytree(validated_dir, shocked_dir)
    transactions = pd.read_parquet(shocked_dir / "transactions.parquet")
    after = transactions["ts"] >= pd.Timestamp(august)
    transactions.loc[after, "amount"] *= 2.5
    transactions.to_parquet(shocked_dir / "transactions.parquet", index=False)
    (shocked_dir / "purchase_days.parquet").unlink(missing_ok=True)  # derived from the transactions
    shocked = _snapshot_at(shocked_dir, november)
    table = _overall(drift(reference, shocked, shocked["days_since_last_purchase"].to_numpy(), 0.1, 0.25))
    alerted = set(table.index[table["level"] == "alert"])
    flagged = set(table.index[table["level"].isin(["warn", "alert"])])
    assert "net_spend_90d" in alerted and {"net_spend_180d", "monetary_value"} <= flagged <= MONEY, table
    assert (table.loc[[c for c in TRANSACTION_FEATURES if c not in MONEY | {"T"}], "level"] == "ok").all(), table
    assert table.loc["T", "level"] == "trend"
