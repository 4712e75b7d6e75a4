"""The synthetic retailer: determinism, richness, and an oracle that is exact."""

from __future__ import annotations

import datetime as dt
import hashlib
import math

import numpy as np
import pandas as pd
import pytest

from features.synthetic.oracle import (conditional_median_days, load_params, no_purchase_curve,
                                       no_purchase_probability, true_no_purchase_probability)
from features.synthetic.params import DORMANT, ENGAGED, SimulationParams, season
from features.synthetic.simulate import TABLES, generate


def _digests(folder) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(tmp_path):
    params = SimulationParams(chunk_size=120)  # three chunks: the per-chunk streams are part of the contract
    a = generate(tmp_path / "a", n_customers=300, seed=3, params=params)
    b = generate(tmp_path / "b", n_customers=300, seed=3, params=params)
    c = generate(tmp_path / "c", n_customers=300, seed=4, params=params)
    assert _digests(a.out_dir) == _digests(b.out_dir)
    assert _digests(a.out_dir)["transactions.parquet"] != _digests(c.out_dir)["transactions.parquet"]
    assert set(_digests(a.out_dir)) == {f"{t}.parquet" for t in TABLES} | {
        "truth/customers.parquet", "truth/transitions.parquet", "truth/tickets.parquet", "truth/params.json"}


def test_generated_world_is_global_and_rich(generated):
    customers = pd.read_parquet(generated / "customers.parquet")
    tx = pd.read_parquet(generated / "transactions.parquet")
    fx = pd.read_parquet(generated / "fx_rates.parquet")
    tickets = pd.read_parquet(generated / "support_tickets.parquet")
    truth = pd.read_parquet(generated / "truth" / "transitions.parquet")

    assert customers["country"].nunique() >= 6
    assert tx["currency"].nunique() >= 4 and set(fx["currency"]) >= set(tx["currency"]) - {"USD"}
    assert 0.2 < 1 - customers["marketing_consent"].mean() < 0.5  # some customers without consent
    assert 0.02 < (tx["amount"] < 0).mean() < 0.1  # refunds
    assert tx["order_id"].is_unique
    signup_quarters = pd.to_datetime(customers["signup_date"]).dt.to_period("Q").nunique()
    assert signup_quarters >= 12  # new customers join throughout the three years
    assert tickets["resolved_at"].isna().any()  # some tickets still open at the end
    # win-back: customers who went dormant and came back
    states = truth.sort_values(["customer_id", "day"]).groupby("customer_id")["state"].apply(list)
    returned = states.apply(lambda s: any(a == DORMANT and b == ENGAGED for a, b in zip(s, s[1:])))
    assert returned.sum() > 10


def test_engagement_signals_fall_before_customers_go_quiet(generated):
    """Web sessions per customer-day are much lower while disengaging than while engaged (leading indicator)."""
    params = load_params(generated / "truth")
    web = pd.read_parquet(generated / "web_sessions.parquet")
    transitions = pd.read_parquet(generated / "truth" / "transitions.parquet")
    web["day"] = (web["ts"] - pd.Timestamp(params.start_date)).dt.days
    spells = transitions.sort_values(["customer_id", "day"]).astype({"day": "int64"})
    spells["end"] = spells.groupby("customer_id")["day"].shift(-1).fillna(params.n_days).astype(int)
    merged = pd.merge_asof(web.sort_values("day"), spells.sort_values("day"), on="day", by="customer_id")
    sessions = merged.groupby("state").size()
    exposure = (spells["end"] - spells["day"]).groupby(spells["state"]).sum()
    rate = sessions / exposure
    assert rate[1] < 0.4 * rate[0]  # disengaging vs engaged
    assert rate[2] < 0.1 * rate[0]  # dormant


def _engaged_and_dormant():
    """Two customers of known latent state at 2025-03-01: c1 engaged with no dropout hazard (lambda 0.05), c2
    dormant and never returning. Returns (params, cutoff, cutoff's day number, state)."""
    params = SimulationParams()
    cutoff = dt.date(2025, 3, 1)
    state = pd.DataFrame({
        "customer_id": ["c1", "c2"], "country": ["US", "US"], "purchase_rate": [0.05, 0.5],
        "hazard_h0": [0.0, 0.01], "satisfaction": [0.0, 0.0], "price_sensitivity": [0.0, 0.0],
        "return_hazard": [0.0, 0.0], "ticket_rate": [0.0, 0.0], "state": [ENGAGED, DORMANT],
        "open_tickets": [0, 0]})
    return params, cutoff, (cutoff - params.start_date).days, state


def test_oracle_recursion_matches_hand_computed_cases():
    """An engaged customer with no dropout hazard: P(no purchase) = exp(-lambda * sum of season(d)).
    A dormant customer who never returns: P(no purchase) = 1."""
    params, cutoff, day0, state = _engaged_and_dormant()
    p = no_purchase_probability(state, params, cutoff, horizon_days=30)
    expected_c1 = math.exp(-0.05 * season(params, np.arange(day0, day0 + 30)).sum())
    assert p == pytest.approx([expected_c1, 1.0], rel=1e-12)


def test_the_oracle_next_order_median_by_hand():
    """The curve of a customer without dropout is exp(-lambda * cumulative season) day by day; its last column is
    P(no purchase in the horizon). Conditional medians by hand: S = (0.8, 0.6, 0.5) -> P(order by day k | order) =
    (0.4, 0.8, 1): median 1 (the second day); S = (0.2, ...) -> 0.8 / 1 on day 0: median 0; never buys: NaN."""
    params, cutoff, day0, state = _engaged_and_dormant()
    curve = no_purchase_curve(state, params, cutoff, horizon_days=30)
    expected = np.exp(-0.05 * np.cumsum(season(params, np.arange(day0, day0 + 30))))
    assert curve[0] == pytest.approx(expected, rel=1e-12) and curve[1] == pytest.approx(np.ones(30))
    assert curve[:, -1] == pytest.approx(no_purchase_probability(state, params, cutoff, horizon_days=30))
    medians = conditional_median_days(np.array([[0.8, 0.6, 0.5], [0.2, 0.1, 0.0], [1.0, 1.0, 1.0]]))
    assert medians[:2].tolist() == [1.0, 0.0] and np.isnan(medians[2])


def test_oracle_is_calibrated_against_what_the_simulation_did(generated):
    """Among customers active at the cutoff, the number who make no purchase in 90 days equals the sum of the
    oracle's probabilities, within 4 standard deviations (sum of p(1 - p)); and per probability decile too."""
    cutoff = dt.date(2026, 3, 1)
    horizon = 90
    oracle = true_no_purchase_probability(generated / "truth", cutoff, horizon)
    tx = pd.read_parquet(generated / "transactions.parquet")
    purchases = tx[tx["amount"] > 0]
    t = pd.Timestamp(cutoff)
    last = purchases[purchases["ts"] < t].groupby("customer_id")["ts"].max()
    bought = set(purchases.loc[(purchases["ts"] >= t) & (purchases["ts"] < t + pd.Timedelta(days=horizon)),
                               "customer_id"])
    active = oracle[oracle["customer_id"].map((t - last).dt.days) <= 365].copy()
    active["churned"] = ~active["customer_id"].isin(bought)
    p, y = active["p_no_purchase"], active["churned"]
    sd = math.sqrt((p * (1 - p)).sum())
    assert abs(y.sum() - p.sum()) < 4 * sd
    assert 0.15 < y.mean() < 0.5
    bins = pd.qcut(p.rank(method="first"), 5, labels=False)
    for _, group in active.groupby(bins):
        gp = group["p_no_purchase"]
        assert abs(group["churned"].sum() - gp.sum()) < 4 * math.sqrt((gp * (1 - gp)).sum()) + 1


def test_recency_alone_is_not_enough(generated):
    """Ranking by days since the last purchase is clearly worse than the oracle (features must matter)."""
    cutoff = dt.date(2026, 3, 1)
    oracle = true_no_purchase_probability(generated / "truth", cutoff, 90)
    tx = pd.read_parquet(generated / "transactions.parquet")
    purchases = tx[tx["amount"] > 0]
    t = pd.Timestamp(cutoff)
    recency = (t - purchases[purchases["ts"] < t].groupby("customer_id")["ts"].max()).dt.days
    bought = set(purchases.loc[(purchases["ts"] >= t) & (purchases["ts"] < t + pd.Timedelta(days=90)),
                               "customer_id"])
    oracle["recency"] = oracle["customer_id"].map(recency)
    active = oracle[oracle["recency"] <= 365]
    y = ~active["customer_id"].isin(bought)

    def auc(score):
        ranks = score.rank().to_numpy()
        n1, n0 = y.sum(), (~y).sum()
        return (ranks[y.to_numpy()].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)

    assert auc(active["p_no_purchase"]) - auc(active["recency"]) > 0.03
