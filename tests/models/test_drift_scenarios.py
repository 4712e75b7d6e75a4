"""Drift monitoring on generated data (issue 20): the scoring run's drift on the `drifted` scenario alerts on the
features its two injected changes move and on nothing else, and on the `stable` scenario it stays quiet.

Each scenario is generated with 4,000 customers and goes the way of a scoring run: validated, snapshots at the
training cutoffs, every model of the catalogue fitted as the final fit is (which profiles it), the snapshot of
2026-11-01 scored, and :func:`serving.scoring.score_drift` (what `churn score` writes to run.json). Two shortcuts
keep it cheap and change nothing the drift reads: 12 months of training cutoffs instead of 24 (still every season
and every phase of the 14-day newsletter) and at most 30 boosting rounds (the features' drift does not depend on
the model; the scores keep their shape). 4,000 customers give the US, the market the price shock hits, about 830
active customers at the scoring date and 600 to 800 at its training cutoffs: enough for a market's ten-bin PSI to be
read at the warning threshold (``models.monitoring.noise_bound``), which 3,000 would not be everywhere.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.synthetic.scenarios import (DRIFT_CHANNEL, DRIFT_CHANNEL_SHARE, DRIFT_DATE, DRIFT_MARKET,
                                          DRIFT_PRICE_INCREASE)
from models.monitoring import CLOCK_FEATURES, SCORE
from tests.conftest import GENERATED_AS_OF, write_config

CUSTOMERS, SEED = 4_000, 7
WARN, ALERT = 0.1, 0.25  # the configuration's defaults

# What the `drifted` scenario's changes move (features/synthetic/scenarios.py), from 2026-08-03, the day after the
# newest training snapshot of a model scored on 2026-11-01:
# - US prices triple. Every US order from then on is worth three times as much, so the US customers' money
#   features move: spend in the windows that reach past 2026-08-03 (30, 90, 180, 365 days, and all time), the 90-day
#   gross spend and its trend, the average order value and BTYD's monetary value, and the money quintile m_score
#   (ranked against the whole snapshot); and so can the scores that read them. The 90 days before the last 90
#   (gross_spend_prev_90d: 2026-05-05 to 2026-08-02) lie before the change and must not move. Customers elsewhere
#   keep their prices; overall the US is 28% of the customers, and a shift of 28% of a population moves its PSI by
#   about 0.28 squared of the US's own: the overall money features must stay quiet, the US's must alert.
# - A new sales channel, marketplace, takes 30% of the orders everywhere: its share of each customer's orders (zero
#   at every training cutoff) and so the shares of the other channels move, overall and in every market.
# Those are the direct effects: only they may alert. The price increase also raises, as every price increase of
# the process does, the dropout hazard of price-sensitive US customers for 60 days; the customers it sends away
# order, visit, open mails and answer surveys less, which reaches a little into every behavioural feature of the
# US (the CLTV model, whose reference is a year old, sees days_since_last_purchase in the US at a PSI of about
# 0.11). So in the US a warning may come from any feature; overall and in every other market only the channel
# shares (and the score) may warn.
MONEY = {"net_spend", "net_spend_30d", "net_spend_90d", "net_spend_180d", "net_spend_365d", "gross_spend_90d",
         "spend_trend_90d", "avg_order_value", "monetary_value", "m_score"}
CHANNELS = {f"channel_share_{c}" for c in ("app", "store", "web", DRIFT_CHANNEL)}
BEFORE_THE_DATE = {"gross_spend_prev_90d"}


def _run(folder: Path, scenario: str) -> dict:
    """A scoring run's drift on ``scenario``: the run's drift, its champions and the training snapshots."""
    from common.config import ModelsConfig, load_config
    from features.ingest import ingest
    from features.snapshots import build_snapshots, open_sources
    from features.synthetic.simulate import TABLES, generate
    from models.catalog import MODELS, StepAside
    from models.training import add_btyd_features
    from pipelines import jobs
    from serving.scoring import Champion, score_drift, score_snapshot

    generate(folder / "raw", n_customers=CUSTOMERS, seed=SEED, scenario=scenario)
    tables = {name: {"source": {"path": f"raw/{name}.parquet"}} for name in TABLES}
    cfg = load_config(write_config(folder, tables, as_of=GENERATED_AS_OF.isoformat(),
                                   snapshots={"lookback_months": 12}))
    ingest(cfg, GENERATED_AS_OF, run_id="drift-test")
    src = open_sources(cfg.validated_dir)
    cutoffs = jobs.training_cutoffs(cfg, jobs.data_span(cfg))
    snapshots = add_btyd_features(build_snapshots(src, cutoffs, cfg.horizons, with_labels=True),
                                  cfg.horizons.churn_days, cfg.horizons.cltv_days)
    settings = ModelsConfig(max_rounds=30)
    champions = {}
    for spec in MODELS:
        try:
            champions[spec.name] = Champion(spec.name, "1", spec.fit(spec.rows(snapshots, cfg.horizons), settings))
        except StepAside:
            continue
    scores, inputs = score_snapshot(build_snapshots(src, [GENERATED_AS_OF], cfg.horizons), champions, cfg.horizons,
                                    with_inputs=True)
    return {"drift": score_drift(scores, inputs, champions, cfg.horizons, WARN, ALERT), "champions": champions,
            "snapshots": snapshots, "horizons": cfg.horizons, "raw": folder / "raw"}


@pytest.fixture(scope="module")
def drifted(tmp_path_factory) -> dict:
    return _run(tmp_path_factory.mktemp("drifted"), "drifted")


@pytest.fixture(scope="module")
def stable(tmp_path_factory) -> dict:
    return _run(tmp_path_factory.mktemp("stable"), "stable")


def _flagged(state: dict) -> dict[tuple[str, str | None], str]:
    """(column, market) -> level of every warning and alert of one model."""
    return {(c["column"].split(" in ")[0], c["market"]): c["level"] for c in state["columns"]
            if c["level"] in ("warn", "alert")}


def _direct(column: str, market: str | None) -> bool:
    """Whether the `drifted` scenario's changes move ``column`` directly for the customers of ``market`` (None:
    everyone): may it alert."""
    return column in CHANNELS or (column in MONEY | {SCORE} and market in (DRIFT_MARKET, None))


def _may_warn(column: str, market: str | None) -> bool:
    return _direct(column, market) or (market == DRIFT_MARKET and column not in BEFORE_THE_DATE)


def test_the_drifted_scenario_changes_what_it_declares_from_its_date(drifted):
    """In the raw data: before 2026-08-03 no marketplace order and the default's prices; from then on about 30% of
    the orders go through marketplace, and US order values triple (the mean order value in USD over the 60 days
    after against the 60 days before; elsewhere it stays)."""
    tx = pd.read_parquet(drifted["raw"] / "transactions.parquet")
    customers = pd.read_parquet(drifted["raw"] / "customers.parquet", columns=["customer_id", "country"])
    tx = tx[tx["amount"] > 0].merge(customers, on="customer_id")
    day = tx["ts"].dt.date
    after = (day >= DRIFT_DATE) & (day < DRIFT_DATE + dt.timedelta(days=60))
    before = (day < DRIFT_DATE) & (day >= DRIFT_DATE - dt.timedelta(days=60))
    assert not (tx.loc[day < DRIFT_DATE, "channel"] == DRIFT_CHANNEL).any()
    assert (tx.loc[day >= DRIFT_DATE, "channel"] == DRIFT_CHANNEL).mean() == pytest.approx(DRIFT_CHANNEL_SHARE,
                                                                                           abs=0.02)
    us = tx["country"] == DRIFT_MARKET
    ratio_us = tx.loc[us & after, "amount"].mean() / tx.loc[us & before, "amount"].mean()
    assert ratio_us == pytest.approx(1 + DRIFT_PRICE_INCREASE, rel=0.15)
    eur = tx["currency"] == "EUR"  # DE, FR, GR, SI: no price change near the date
    assert tx.loc[eur & after, "amount"].mean() / tx.loc[eur & before, "amount"].mean() == pytest.approx(1, abs=0.1)


def test_the_oracle_stays_exact_through_the_injected_price_shock(drifted):
    """From the drift date, 90 days: the price increase raises the US's hazard in that window; the oracle knows it
    (it reads the scenario's price schedule from params.json) and matches what happened, overall, in the US and
    per latent state, within 4 standard deviations."""
    from features.synthetic.oracle import true_no_purchase_probability

    oracle = true_no_purchase_probability(drifted["raw"] / "truth", DRIFT_DATE, 90)
    tx = pd.read_parquet(drifted["raw"] / "transactions.parquet", columns=["customer_id", "ts", "amount"])
    start = pd.Timestamp(DRIFT_DATE)
    bought = set(tx.loc[(tx["amount"] > 0) & (tx["ts"] >= start) & (tx["ts"] < start + pd.Timedelta(days=90)),
                        "customer_id"])
    countries = pd.read_parquet(drifted["raw"] / "customers.parquet", columns=["customer_id", "country"])
    frame = oracle.merge(countries, on="customer_id").assign(y=lambda f: ~f["customer_id"].isin(bought))
    groups = [frame, frame[frame["country"] == DRIFT_MARKET],
              *(part for _, part in frame.groupby("latent_state", observed=True))]
    for part in groups:
        p = part["p_no_purchase"]
        assert abs(part["y"].sum() - p.sum()) < 4 * math.sqrt((p * (1 - p)).sum()) + 1


def test_injected_drift_alerts_on_the_features_it_moves_and_only_those(drifted):
    drift = drifted["drift"]["models"]
    assert set(drift) == {"churn-classifier", "winback-classifier", "cltv-regressor",
                          "subscription-churn-classifier", "next-order-regressor"}
    for name, state in drift.items():
        flagged = _flagged(state)
        unexpected = {key: level for key, level in flagged.items()
                      if not (_direct(*key) if level == "alert" else _may_warn(*key))}
        assert not unexpected, (name, unexpected)
        overall = {column for (column, market) in flagged if market is None}
        assert not overall & MONEY, (name, overall)  # diluted: the US is 28% of the customers
    # the active customers (the churn and next-order models) and everyone (CLTV): the new channel alerts overall
    # and in the markets large enough to read; the US's 90-day spend alerts, with a margin (PSI about 0.4 against
    # 0.25)
    for name in ("churn-classifier", "next-order-regressor", "cltv-regressor"):
        state, flagged = drift[name], _flagged(drift[name])
        assert DRIFT_MARKET in state["markets"] and len(state["markets"]) >= 4, state["markets"]
        assert flagged[(f"channel_share_{DRIFT_CHANNEL}", None)] == "alert"
        new_channel = {m for (column, m), level in flagged.items()
                       if column == f"channel_share_{DRIFT_CHANNEL}" and m is not None and level == "alert"}
        assert DRIFT_MARKET in new_channel and len(new_channel) >= 4, new_channel
        for column in ("net_spend_90d", "gross_spend_90d"):
            assert flagged.get((column, DRIFT_MARKET)) == "alert", (name, column)
    # lapsed customers bought nothing in the last 365 days: neither change reaches them
    assert drift["winback-classifier"]["alerts"] == drift["winback-classifier"]["warnings"] == []
    assert drift["winback-classifier"]["max_psi"] < WARN


def test_a_run_without_drift_stays_quiet(stable):
    """The `stable` scenario (the default business without price changes): no alert and no warning on any feature
    or score of any model, overall or in any market, though the markets are read as in the drifted run; the clock
    features are reported as trend (the CLTV model's newest training cutoff is a year before the scoring date)."""
    drift = stable["drift"]["models"]
    for name, state in drift.items():
        assert state["reference"] and state["alerts"] == [] and state["warnings"] == [], (name, state["alerts"],
                                                                                         state["warnings"])
        assert state["max_psi"] < WARN
        levels = {c["column"]: c["level"] for c in state["columns"] if c["market"] is None}
        assert {levels[c] for c in CLOCK_FEATURES if c in levels} <= {"trend", "no data"}
    for name in ("churn-classifier", "cltv-regressor"):
        assert DRIFT_MARKET in drift[name]["markets"] and len(drift[name]["markets"]) >= 4
        levels = {c["column"]: c["level"] for c in drift[name]["columns"]}
        assert levels[SCORE] == "ok" and list(levels.values()).count("ok") >= 50  # judged, not too few


def test_the_profile_covers_the_population_at_every_training_cutoff(stable):
    """The next-order model trains on the active customers who ordered within the churn window, but scores every
    active customer: its profile counts all of them, at each cutoff it trained on (its labeled ones)."""
    champion = stable["champions"]["next-order-regressor"].model
    reference = champion.reference
    snapshots, horizons = stable["snapshots"], stable["horizons"]
    active = snapshots[snapshots["days_since_last_purchase"] <= horizons.activity_window_days]
    trained = active[active["cutoff"].isin(champion.training_cutoffs)]
    assert reference["cutoffs"] == [c.isoformat() for c in champion.training_cutoffs]
    counts = reference["columns"]["days_since_last_purchase"]["counts"][0]  # everyone, per cutoff and bin
    assert counts.sum(axis=1).tolist() == trained.groupby("cutoff").size().tolist()
    assert trained["days_to_next_order"].isna().any()  # customers it did not train on are in the profile
    assert np.isin(np.array(reference["markets"]), trained["country"].unique()).all()
