"""Scenarios of the synthetic generator: each writes what it declares, and the oracle stays exact for each."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from common.errors import ConfigError
from features.synthetic.oracle import latent_state, load_params, no_purchase_probability, true_no_purchase_probability
from features.synthetic.params import (
    COUNTRIES,
    DISENGAGING,
    DORMANT,
    DOWNGRADE_PROB,
    ENGAGED,
    RESUBSCRIBE_PROB,
    SimulationParams,
    billing_days,
    dropout_hazard,
    price_shock_active,
    season,
)
from features.synthetic.simulate import SCENARIOS, TABLES, generate, scenario_tables
from pipelines.cli import app
from tests.conftest import write_config

END = dt.date(2026, 10, 31)
TRUTH_FILES = {"truth/customers.parquet", "truth/transitions.parquet", "truth/tickets.parquet", "truth/params.json"}
# A world where subscription changes are frequent, so that getting them wrong would show: customers disengage
# within weeks, go dormant within days, and every one of them may come back (and subscribe again).
STRESSED = SimulationParams(hazard_mean=1 / 40, disengaged_to_dormant=1 / 6, returner_share=1.0,
                            return_hazard_mean=1 / 25, ticket_rate_mean=1 / 30)


@pytest.fixture(scope="module")
def scenario_data(tmp_path_factory) -> dict[str, Path]:
    """Every scenario at 1,500 customers, seed 7: name -> raw folder (truth/ inside)."""
    root = tmp_path_factory.mktemp("scenarios")
    return {name: generate(root / name, n_customers=1_500, seed=7, scenario=name).out_dir for name in SCENARIOS}


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _in_base_currency(tx: pd.DataFrame, fx: pd.DataFrame) -> pd.Series:
    """``tx.amount`` in USD at the rate of the latest business day on or before the transaction."""
    fx = fx.assign(date=pd.to_datetime(fx["date"]).astype("datetime64[us]")).sort_values("date")
    keyed = tx.assign(date=tx["ts"].dt.normalize(), row=np.arange(len(tx))).sort_values("date")
    merged = pd.merge_asof(keyed, fx, on="date", by="currency").sort_values("row")
    rate = np.where(merged["currency"] == "USD", 1.0, merged["rate_to_base"])
    return pd.Series(merged["amount"].to_numpy() * rate, index=tx.index)


# --- the registry ----------------------------------------------------------------------------------------------

def test_unknown_scenario_is_refused_with_the_known_names(tmp_path):
    known = ", ".join(SCENARIOS)
    with pytest.raises(ConfigError, match=re.escape(f"unknown scenario 'retail'; known scenarios: {known}")):
        generate(tmp_path / "raw", n_customers=10, scenario="retail")
    assert not (tmp_path / "raw").exists()
    with pytest.raises(ConfigError, match="known scenarios: default, transactions-only"):
        scenario_tables("retail")


def test_scenario_tables_names_the_files_a_scenario_writes():
    assert scenario_tables("default") == TABLES
    assert scenario_tables("transactions-only") == ("transactions", "fx_rates")
    assert set(SCENARIOS) >= {"default", "transactions-only", "single-cohort", "short-history", "no-consent-data",
                              "subscription-business"}


def test_every_scenario_is_documented():
    page = (Path(__file__).resolve().parents[2] / "docs" / "synthetic.md").read_text(encoding="utf-8")
    section = page[page.index("## Scenarios"):]
    for name in SCENARIOS:
        assert f"`{name}`" in section, f"scenario {name} is not described in docs/synthetic.md"


# --- what each scenario writes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SCENARIOS)
def test_each_scenario_writes_exactly_its_tables_and_columns(scenario_data, name):
    folder, default = scenario_data[name], scenario_data["default"]
    scenario = SCENARIOS[name]
    truth = TRUTH_FILES | ({"truth/subscriptions.parquet"} if scenario.billing else set())
    assert set(_digests(folder)) == {f"{t}.parquet" for t in scenario_tables(name)} | truth
    for table in scenario_tables(name):
        dropped = scenario.dropped_columns.get(table, ())
        expected = [c for c in pq.read_schema(default / f"{table}.parquet").names if c not in dropped]
        assert pq.read_schema(folder / f"{table}.parquet").names == expected
    meta = json.loads((folder / "truth" / "params.json").read_text())
    assert meta.get("scenario", "default") == name
    assert "scenario" not in json.loads((default / "truth" / "params.json").read_text())  # byte-identical default


def test_scenarios_that_only_leave_things_out_equal_the_default_elsewhere(scenario_data):
    """transactions-only and no-consent-data simulate the default business: the files they do write are the
    default's, byte for byte, except the customers table without its consent column."""
    default = _digests(scenario_data["default"])
    for name in ("transactions-only", "no-consent-data"):
        written = _digests(scenario_data[name])
        same = {f for f in written if f not in ("customers.parquet", "truth/params.json")}
        assert {f: written[f] for f in same} == {f: default[f] for f in same}
    customers = pd.read_parquet(scenario_data["no-consent-data"] / "customers.parquet")
    assert "marketing_consent" not in customers.columns
    expected = pd.read_parquet(scenario_data["default"] / "customers.parquet").drop(columns="marketing_consent")
    pd.testing.assert_frame_equal(customers, expected)


@pytest.mark.parametrize("name, first_day", [
    ("default", dt.date(2023, 11, 1)),  # three years
    ("transactions-only", dt.date(2023, 11, 1)),
    ("no-consent-data", dt.date(2023, 11, 1)),
    ("subscription-business", dt.date(2023, 11, 1)),
    ("single-cohort", dt.date(2025, 5, 1)),  # 18 months: May 2025 to October 2026
    ("short-history", dt.date(2025, 11, 1)),  # 12 months: November 2025 to October 2026
])
def test_history_runs_from_the_declared_start_to_2026_10_31(scenario_data, name, first_day):
    folder = scenario_data[name]
    params = load_params(folder / "truth")
    assert (params.start_date, params.end_date) == (first_day, END)
    tx = pd.read_parquet(folder / "transactions.parquet", columns=["ts"])
    assert tx["ts"].min().date() == first_day and tx["ts"].max().date() == END
    fx_first = pd.read_parquet(folder / "fx_rates.parquet")["date"].min()
    assert first_day - dt.timedelta(days=14) <= fx_first <= first_day - dt.timedelta(days=12)  # first business day


def test_single_cohort_joins_in_one_quarter_and_its_activity_decays(scenario_data):
    folder = scenario_data["single-cohort"]
    customers = pd.read_parquet(folder / "customers.parquet")
    signup = pd.to_datetime(customers["signup_date"])
    assert signup.min() == pd.Timestamp("2025-05-01")
    assert signup.max() < pd.Timestamp("2025-05-01") + pd.Timedelta(days=91)  # 2025-07-30 is the last day
    tx = pd.read_parquet(folder / "transactions.parquet")
    buyers = tx[tx["amount"] > 0].groupby(tx["ts"].dt.to_period("Q"))["customer_id"].nunique()
    assert buyers[pd.Period("2026Q3")] < 0.75 * buyers[pd.Period("2025Q3")]  # a year later, far fewer buy
    assert buyers[pd.Period("2026Q3")] < buyers[pd.Period("2026Q1")]


def test_short_history_keeps_the_default_acquisition_pattern(scenario_data):
    """A launch cohort (15% in the first 30 days) and then customers joining throughout the year."""
    customers = pd.read_parquet(scenario_data["short-history"] / "customers.parquet")
    days = (pd.to_datetime(customers["signup_date"]) - pd.Timestamp("2025-11-01")).dt.days
    assert 0.12 < (days < 30).mean() < 0.25
    assert pd.to_datetime(customers["signup_date"]).dt.to_period("M").nunique() == 12  # every month


def test_subscription_business_earns_most_of_its_revenue_from_subscriptions(scenario_data):
    folder = scenario_data["subscription-business"]
    tx = pd.read_parquet(folder / "transactions.parquet")
    revenue = _in_base_currency(tx, pd.read_parquet(folder / "fx_rates.parquet"))
    share = revenue[tx["category"] == "subscription"].sum() / revenue.sum()
    assert share > 0.5
    subscribers = pd.read_parquet(folder / "subscriptions.parquet")["customer_id"].nunique()
    assert 0.65 < subscribers / 1_500 < 0.75
    assert (revenue[tx["category"] == "subscription"] > 0).all() and tx["order_id"].is_unique
    assert tx.groupby("customer_id")["ts"].is_monotonic_increasing.all()


def test_charges_are_the_billing_days_of_the_subscriptions_table(scenario_data):
    """One charge per billing day of every subscription, for its monthly amount, until it is cancelled (the
    cancellation day is not charged) or the data end."""
    folder = scenario_data["subscription-business"]
    params = load_params(folder / "truth")
    subs = pd.read_parquet(folder / "subscriptions.parquet")
    start = (pd.to_datetime(subs["started_at"]) - pd.Timestamp(params.start_date)).dt.days.to_numpy()
    stop = (pd.to_datetime(subs["cancelled_at"]) - pd.Timestamp(params.start_date)).dt.days
    row, day = billing_days(params, start, stop.fillna(params.n_days).astype(int).to_numpy())
    expected = pd.DataFrame({
        "customer_id": subs["customer_id"].to_numpy()[row], "day": day,
        "amount": subs["monthly_amount"].to_numpy()[row], "currency": subs["currency"].to_numpy()[row],
    }).sort_values(["customer_id", "day"], ignore_index=True)
    tx = pd.read_parquet(folder / "transactions.parquet")
    charges = tx[tx["category"] == "subscription"]
    got = pd.DataFrame({
        "customer_id": charges["customer_id"], "day": (charges["ts"] - pd.Timestamp(params.start_date)).dt.days,
        "amount": charges["amount"], "currency": charges["currency"],
    }).sort_values(["customer_id", "day"], ignore_index=True)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert (charges["ts"].dt.hour == 3).all() and (charges["discount"] == 0).all()


def test_billing_days_by_hand():
    """Started 31 January 2024: charged 31 Jan, 29 Feb (leap year), 31 Mar, 30 Apr; a stop on a billing day is
    exclusive. Started 15 November 2023 (day 14), stopped on day 75 (15 January 2024): two charges."""
    params = SimulationParams()
    jan31 = (dt.date(2024, 1, 31) - params.start_date).days
    may31 = (dt.date(2024, 5, 31) - params.start_date).days
    row, day = billing_days(params, np.array([jan31, 14]), np.array([may31, 75]))
    dates = [params.start_date + dt.timedelta(days=int(d)) for d in day]
    assert row.tolist() == [0, 0, 0, 0, 1, 1]
    assert dates == [dt.date(2024, 1, 31), dt.date(2024, 2, 29), dt.date(2024, 3, 31), dt.date(2024, 4, 30),
                     dt.date(2023, 11, 15), dt.date(2023, 12, 15)]


@pytest.mark.parametrize("name", SCENARIOS)
def test_same_seed_gives_identical_files(tmp_path, name):
    params = SimulationParams(chunk_size=120)  # three chunks
    a = generate(tmp_path / "a", n_customers=300, seed=3, params=params, scenario=name)
    b = generate(tmp_path / "b", n_customers=300, seed=3, params=params, scenario=name)
    assert _digests(a.out_dir) == _digests(b.out_dir)


def test_a_scenario_removes_tables_it_does_not_write(tmp_path):
    generate(tmp_path, n_customers=50, seed=1)
    generate(tmp_path, n_customers=50, seed=1, scenario="transactions-only")
    assert sorted(p.name for p in tmp_path.glob("*.parquet")) == ["fx_rates.parquet", "transactions.parquet"]


def test_cli_generates_a_scenario_that_validates_with_only_its_tables(tmp_path):
    runner = CliRunner()
    tables = {t: {"source": {"path": f"raw/{t}.parquet"}} for t in scenario_tables("transactions-only")}
    cfg = write_config(tmp_path, tables, as_of="2026-11-01",
                       generator={"customers": 100, "seed": 1, "scenario": "transactions-only"})
    result = runner.invoke(app, ["generate", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "raw").glob("*.parquet")) == ["fx_rates.parquet",
                                                                            "transactions.parquet"]
    assert runner.invoke(app, ["validate", "--config", str(cfg)]).exit_code == 0
    refused = runner.invoke(app, ["generate", "--config", str(cfg), "--scenario", "retail"])
    assert refused.exit_code == 2 and "known scenarios: default" in " ".join(refused.output.split())


# --- the oracle ------------------------------------------------------------------------------------------------

def _purchased(folder: Path, cutoff: dt.date, horizon: int) -> set[str]:
    tx = pd.read_parquet(folder / "transactions.parquet", columns=["customer_id", "ts", "amount"])
    t = pd.Timestamp(cutoff)
    window = (tx["amount"] > 0) & (tx["ts"] >= t) & (tx["ts"] < t + pd.Timedelta(days=horizon))
    return set(tx.loc[window, "customer_id"])


def _assert_calibrated(oracle: pd.DataFrame, no_purchase: pd.Series, groups: pd.Series) -> None:
    """Observed customers without a purchase = sum of the oracle's probabilities, within 4 standard deviations
    (sum of p(1 - p)), overall and in every group."""
    frame = oracle.assign(y=no_purchase.to_numpy(), group=groups.to_numpy())
    for _, part in [("all", frame), *frame.groupby("group", observed=True)]:
        p = part["p_no_purchase"]
        assert abs(part["y"].sum() - p.sum()) < 4 * math.sqrt((p * (1 - p)).sum()) + 1, part["group"].iloc[0]


@pytest.mark.parametrize("name, cutoff", [
    ("default", dt.date(2026, 3, 1)), ("transactions-only", dt.date(2026, 3, 1)),
    ("no-consent-data", dt.date(2026, 3, 1)), ("single-cohort", dt.date(2026, 3, 1)),
    ("short-history", dt.date(2026, 6, 1)), ("subscription-business", dt.date(2026, 3, 1)),
])
def test_oracle_is_calibrated_against_what_each_scenario_did(scenario_data, name, cutoff):
    """Per latent state and per probability quintile, over every customer who joined before the cutoff."""
    folder = scenario_data[name]
    oracle = true_no_purchase_probability(folder / "truth", cutoff, 90)
    no_purchase = ~oracle["customer_id"].isin(_purchased(folder, cutoff, 90))
    assert 0.2 < no_purchase.mean() < 0.9
    _assert_calibrated(oracle, no_purchase, oracle["latent_state"].astype(str))
    _assert_calibrated(oracle, no_purchase, pd.qcut(oracle["p_no_purchase"].rank(method="first"), 5, labels=False))


def _subscription_group(state: pd.DataFrame) -> pd.Series:
    plan = state["subscription_plan"]
    return pd.Series(np.select([plan > 0, plan == 0, state["subscriber"]],
                               ["plus or premium", "basic", "lapsed subscriber"], "never subscribed"))


def test_oracle_is_calibrated_where_subscription_changes_matter(tmp_path):
    """In the stressed subscription business, downgrades, cancellations and returns happen within weeks: the
    oracle still matches what the generator did, per subscription status."""
    folder = generate(tmp_path, n_customers=2_000, seed=11, params=STRESSED, scenario="subscription-business").out_dir
    for cutoff, horizon in ((dt.date(2026, 3, 1), 30), (dt.date(2026, 6, 1), 90)):
        oracle = true_no_purchase_probability(folder / "truth", cutoff, horizon)
        state = latent_state(folder / "truth", cutoff)
        no_purchase = ~oracle["customer_id"].isin(_purchased(folder, cutoff, horizon))
        _assert_calibrated(oracle, no_purchase, _subscription_group(state))


def _billing_state(rows: list[dict]) -> pd.DataFrame:
    """Customers as :func:`latent_state` returns them for a billing scenario: ``rows`` override the defaults."""
    base = {"customer_id": "c", "country": "US", "purchase_rate": 0.0, "hazard_h0": 0.0, "satisfaction": 0.0,
            "price_sensitivity": 0.0, "return_hazard": 0.0, "ticket_rate": 0.0, "state": ENGAGED,
            "open_tickets": 0, "subscriber": True, "subscription_start_day": -1, "subscription_plan": -1}
    return pd.DataFrame([{**base, **row} for row in rows])


def test_oracle_billing_by_hand():
    """Customers who never order (purchase rate 0), so only subscription charges can be purchases:

    - engaged, never disengaging, basic plan started 2025-02-19: charged 2025-03-19, inside 30 days: p = 0;
    - disengaging with a basic plan started 2025-02-09: charged on 2025-03-09, 8 days after the cutoff, unless it
      goes dormant (cancelling) at the end of one of the first 8 days: p = 1 - (1 - 1/28) ** 8;
    - dormant subscriber who returns with 1% a day and then subscribes again with 30% (charged the next day; back
      without a subscription, he never buys): a return at the end of the 30th day is charged after the horizon,
      so p = 1 - 0.3 * (1 - 0.99 ** 29);
    - the same when he never subscribed: p = 1;
    - engaged, premium plan started 2025-02-10 (next charge 2025-03-10, outside 2 days), daily dropout hazard
      h = 1 - exp(-0.05): a downgrade on the first evening is charged on day 2, so p = 1 - 0.4 * h.
    """
    params = SimulationParams()
    cutoff = dt.date(2025, 3, 1)
    day0 = (cutoff - params.start_date).days
    state = _billing_state([
        {"subscription_start_day": day0 - 10, "subscription_plan": 0},
        {"state": DISENGAGING, "subscription_start_day": day0 - 20, "subscription_plan": 0},
        {"state": DORMANT, "return_hazard": 0.01},
        {"state": DORMANT, "return_hazard": 0.01, "subscriber": False},
    ])
    p = no_purchase_probability(state, params, cutoff, 30, billing=True)
    assert p == pytest.approx([0.0, 1 - (1 - 1 / 28) ** 8, 1 - RESUBSCRIBE_PROB * (1 - 0.99**29), 1.0], rel=1e-12)
    premium = _billing_state([{"hazard_h0": 0.05, "subscription_start_day": day0 - 19, "subscription_plan": 2}])
    h = 1 - math.exp(-0.05)
    assert no_purchase_probability(premium, params, cutoff, 2, billing=True) == pytest.approx(
        [1 - DOWNGRADE_PROB * h], rel=1e-12)
    assert no_purchase_probability(premium, params, cutoff, 1, billing=True) == pytest.approx([1.0])  # boundary


def _monte_carlo_no_purchase(state: pd.DataFrame, params: SimulationParams, cutoff: dt.date, horizon: int,
                             billing: bool, paths: int, rng: np.random.Generator) -> np.ndarray:
    """Share of ``paths`` forward simulations per customer without a purchase in ``[cutoff, cutoff + horizon)``,
    following the process as :mod:`features.synthetic.params` describes it, one path per row."""
    n = len(state)
    i = np.repeat(np.arange(n), paths)
    day0 = (cutoff - params.start_date).days
    col = {c: state[c].to_numpy()[i] for c in ("purchase_rate", "hazard_h0", "satisfaction", "price_sensitivity",
                                               "return_hazard", "ticket_rate")}
    country = pd.Categorical(state["country"], categories=COUNTRIES).codes[i]
    s = state["state"].to_numpy()[i].astype(np.int64)
    tickets = state["open_tickets"].to_numpy()[i].astype(np.int64)
    none = np.ones(len(i), bool)
    if billing:
        start = state["subscription_start_day"].to_numpy()
        billed = np.zeros((n, horizon), bool)
        row, day = billing_days(params, np.maximum(start, 0), np.where(start >= 0, day0 + horizon, 0))
        later = day >= day0
        billed[row[later], day[later] - day0] = True
        active = (start >= 0)[i]
        plan = state["subscription_plan"].to_numpy()[i]
        subscriber = state["subscriber"].to_numpy()[i]
    factor = np.array(params.purchase_factor)
    for d in range(day0, day0 + horizon):
        rate = col["purchase_rate"] * season(params, np.array([d]))[0] * factor[s]
        none &= rng.random(len(i)) >= -np.expm1(-rate)
        if billing:
            none &= ~(active & billed[i, d - day0])
        hazard = dropout_hazard(params, col["hazard_h0"], col["satisfaction"], col["price_sensitivity"],
                                price_shock_active(params, country, d), tickets)
        u = rng.random(len(i))
        to_g = (s == ENGAGED) & (u < hazard)
        to_d = (s == DISENGAGING) & (u < params.disengaged_to_dormant)
        to_e = (s == DORMANT) & (u < col["return_hazard"])
        after = tickets - rng.binomial(tickets, params.ticket_resolve_prob)
        opened = (s != DORMANT) & (after < params.max_open_tickets) & (rng.random(len(i)) < col["ticket_rate"])
        tickets = after + opened
        if billing:
            u_sub = rng.random(len(i))
            if d + 1 < day0 + horizon:  # the new subscription's first charge, the next day
                none &= ~(to_g & active & (plan > 0) & (u_sub < DOWNGRADE_PROB))
                none &= ~(to_e & subscriber & ~active & (u_sub < RESUBSCRIBE_PROB))
            active &= ~to_d
        s[to_g], s[to_d], s[to_e] = DISENGAGING, DORMANT, ENGAGED
    return none.reshape(n, paths).mean(axis=1)


@pytest.mark.parametrize("name", ["default", "subscription-business"])
def test_oracle_matches_a_monte_carlo_of_the_process(tmp_path, name):
    """From the latent state of up to 40 customers per state (and subscription status), 3,000 simulated futures
    each: every customer's share without a purchase is within 4.5 standard errors of the oracle's probability."""
    folder = generate(tmp_path, n_customers=1_500, seed=5, params=STRESSED, scenario=name).out_dir
    cutoff, horizon = dt.date(2026, 3, 1), 30
    state = latent_state(folder / "truth", cutoff)
    groups = state["state"].astype(str)
    if SCENARIOS[name].billing:
        groups = groups + " " + _subscription_group(state)
    sample = state.groupby(groups.to_numpy(), group_keys=False).apply(lambda g: g.head(40)).reset_index(drop=True)
    assert sample["open_tickets"].max() >= 1
    params, billing = load_params(folder / "truth"), SCENARIOS[name].billing
    p = no_purchase_probability(sample, params, cutoff, horizon, billing=billing)
    paths = 3_000
    share = _monte_carlo_no_purchase(sample, params, cutoff, horizon, billing, paths, np.random.default_rng(0))
    se = np.sqrt(p * (1 - p) / paths)
    assert (np.abs(share - p) <= 4.5 * se + 1 / paths).all(), np.max(np.abs(share - p) / (se + 1e-12))
    assert 0.05 < p.mean() < 0.95
