"""Scoring and the lists: values worked out by hand with fixed model outputs, the active/lapsed rule agreeing with
the labels, and the order of the lists."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from common.config import HorizonsConfig
from serving.scoring import Champion, active_mask, build_lists, score_snapshot, summarize

CUTOFF = dt.date(2026, 11, 1)


class FixedModel:
    """A model double that returns a fixed score per customer."""

    def __init__(self, by_customer: dict[str, float]):
        self.by_customer = by_customer

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        return frame["customer_id"].map(self.by_customer).to_numpy(dtype=float)


def _snapshot() -> pd.DataFrame:
    # A: bought 10 days ago; B: exactly 365 days ago (still active); C: 366 days ago (lapsed); D: lapsed, new-ish
    return pd.DataFrame({
        "customer_id": ["B", "A", "D", "C"], "cutoff": CUTOFF,
        "frequency": [3, 5, 0, 2], "recency": [300, 700, 0, 100], "T": [700, 720, 400, 800],
        "monetary_value": [50.0, 40.0, 0.0, 80.0], "days_since_last_purchase": [365, 10, 400, 366],
        "rfm_segment": ["At Risk", "Champions", "Lost", "Hibernating"], "country": ["CZ", "GR", "US", "DE"],
    })


def _champions() -> dict[str, Champion]:
    return {
        "churn-classifier": Champion("churn-classifier", "3", FixedModel({"A": 0.1, "B": 0.6})),
        "winback-classifier": Champion("winback-classifier", "2", FixedModel({"C": 0.2, "D": 0.05})),
        "cltv-regressor": Champion("cltv-regressor", "5", FixedModel({"A": 1000.0, "B": 100.0, "C": 40.0,
                                                                      "D": 10.0})),
    }


def test_money_is_published_in_the_currency_s_minor_unit_with_its_code():
    from serving.scoring import in_currency

    lists = {"at_risk": pd.DataFrame({"customer_id": ["A", "B"], "value_at_risk": [1660.8798162906637, np.nan],
                                      "expected_net_value": [12.346, 0.5], "contact_group": ["treatment", "control"]})}
    usd = in_currency(lists, "USD")["at_risk"]
    assert usd["value_at_risk"].iloc[0] == 1660.88 and np.isnan(usd["value_at_risk"].iloc[1])
    assert list(usd.columns) == ["customer_id", "value_at_risk", "expected_net_value", "currency", "contact_group"]
    assert set(usd["currency"]) == {"USD"} and usd["expected_net_value"].tolist() == [12.35, 0.5]
    jpy = in_currency(lists, "JPY")["at_risk"]  # no minor unit
    assert jpy["value_at_risk"].iloc[0] == 1661.0 and jpy["expected_net_value"].tolist() == [12.0, 0.0]


def test_the_next_order_champion_sets_the_date_in_whole_days():
    # A 3.4 days -> 3 days after the cutoff, B 0.4 -> the cutoff day itself; lapsed customers get no date; with
    # the default rule B (churn probability 0.6) would get none
    champions = {**_champions(), "next-order-regressor": Champion(
        "next-order-regressor", "1", FixedModel({"A": 3.4, "B": 0.4, "C": 9.0, "D": 9.0}))}
    scores = score_snapshot(_snapshot(), champions, HorizonsConfig(), next_order_max_churn=1.0)
    assert scores.loc[:1, "expected_next_order_date"].tolist() == [CUTOFF + dt.timedelta(days=3), CUTOFF]
    assert score_snapshot(_snapshot(), champions, HorizonsConfig()).loc[1, "expected_next_order_date"] is None
    assert scores.loc[:1, "expected_next_order_days"].tolist() == [3.4, 0.4]
    assert scores.loc[2:, "expected_next_order_date"].isna().all()
    assert scores.loc[2:, "expected_next_order_days"].isna().all()


def test_scores_values_and_lists_by_hand():
    scores = score_snapshot(_snapshot(), _champions(), HorizonsConfig())
    assert list(scores["customer_id"]) == ["A", "B", "C", "D"]
    assert list(scores["is_active"]) == [True, True, False, False]  # 365 days: active; 366: lapsed
    # value at risk = P(churn) x CLTV: A 0.1 x 1000 = 100, B 0.6 x 100 = 60
    assert scores.loc[:1, "value_at_risk"].tolist() == pytest.approx([100.0, 60.0])
    assert scores.loc[2:, "value_at_risk"].isna().all() and scores.loc[:1, "reactivation_probability"].isna().all()
    # next order: the cutoff plus BG/NBD's median days to the next order, only for active customers likelier to
    # buy than not (B's churn probability 0.6 >= 0.5: no date)
    assert scores.loc[0, "expected_next_order_date"] >= CUTOFF and scores.loc[1, "expected_next_order_date"] is None
    assert scores.loc[2:, "expected_next_order_date"].isna().all()
    assert (scores.loc[2:, "expected_winback_value"]
            == scores.loc[2:, "reactivation_probability"] * scores.loc[2:, "value_if_reactivated"]).all()
    lists = build_lists(scores, _champions(), "run-x")
    assert list(lists["at_risk"]["customer_id"]) == ["A", "B"] and list(lists["at_risk"]["rank"]) == [1, 2]
    assert set(lists["at_risk"]["churn_model_version"]) == {"3"} and set(lists["at_risk"]["run_id"]) == {"run-x"}
    assert list(lists["winback"]["customer_id"]) == list(
        scores.iloc[2:].sort_values("expected_winback_value", ascending=False)["customer_id"])
    summary = summarize(scores, lists, _champions(), at_risk_threshold=0.5)
    assert summary["at_risk_customers"] == 1 and summary["value_at_risk"] == pytest.approx(160.0)
    assert summary["customers_scored"] == 4 and summary["champion_versions"]["cltv-regressor"] == "5"


def test_equal_values_are_ranked_by_customer_id():
    scores = pd.DataFrame({"customer_id": ["Z", "A", "M"], "as_of": CUTOFF, "is_active": True,
                           "churn_probability": 0.5, "predicted_cltv": 10.0, "value_at_risk": 5.0,
                           "p_alive": 0.9, "expected_next_order_date": None, "rfm_segment": "New", "country": "US",
                           "reactivation_probability": np.nan, "value_if_reactivated": np.nan,
                           "expected_winback_value": np.nan})
    assert list(build_lists(scores, _champions(), "r")["at_risk"]["customer_id"]) == ["A", "M", "Z"]


def test_scoring_refuses_several_cutoffs():
    two = pd.concat([_snapshot(), _snapshot().assign(cutoff=dt.date(2026, 10, 1))])
    with pytest.raises(ValueError, match="one cutoff at a time"):
        score_snapshot(two, _champions(), HorizonsConfig())


def test_active_rule_agrees_with_the_labels(validated_dir):
    from features.snapshots import build_snapshots, open_sources

    horizons = HorizonsConfig()
    snap = build_snapshots(open_sources(validated_dir), [dt.date(2026, 6, 1)], horizons, with_labels=True)
    assert (active_mask(snap, horizons.activity_window_days) == snap["is_active"].astype(bool)).all()
    assert snap["is_active"].astype(bool).any() and (~snap["is_active"].astype(bool)).any()


def test_the_purchase_history_holds_each_month_before_the_cutoff_only(tmp_path):
    """Worked by hand: two orders and a refund before the cutoff; an order on the cutoff day and one older than
    24 months are left out; a customer without transactions gets an empty history."""
    import datetime as dt
    import json

    from serving.scoring import add_purchase_history

    path = tmp_path / "transactions.parquet"
    pd.DataFrame({"customer_id": ["A", "A", "A", "A", "A", "C"],
                  "ts": pd.to_datetime(["2026-09-05 10:00", "2026-09-20 12:00", "2026-10-02 09:00",
                                        "2026-11-01 08:00", "2024-10-15 10:00", "2026-09-01 10:00"]),
                  "amount": [10.0, 5.0, -5.0, 99.0, 7.0, 1.0]}).to_parquet(path)
    lists = {"at_risk": pd.DataFrame({"customer_id": ["A", "B"]}), "winback": pd.DataFrame({"customer_id": []})}
    out = add_purchase_history(lists, path, dt.date(2026, 11, 1))
    assert [json.loads(t) for t in out["at_risk"]["purchase_history"]] == [
        [["2026-09", 2, 0, 15.0], ["2026-10", 0, 1, -5.0]], []]
    assert out["winback"].empty and "purchase_history" in out["winback"].columns


def test_p_alive_is_bg_nbd_s_of_the_cutoff_on_both_lists():
    from models.training import btyd_predictions

    scores = score_snapshot(_snapshot(), _champions(), HorizonsConfig())
    expected = btyd_predictions(_snapshot().sort_values("customer_id").reset_index(drop=True), 90, 365)["p_alive"]
    assert scores["p_alive"].to_numpy() == pytest.approx(expected.to_numpy())
    # BG/NBD: a customer with no repeat purchase (D, frequency 0) cannot have dropped out after one: P(alive) = 1
    assert scores.loc[3, "p_alive"] == pytest.approx(1.0) and scores["p_alive"].between(0, 1).all()
    lists = build_lists(scores, _champions(), "run-x")
    from serving.lists import LISTS

    for spec in LISTS:  # right after the value that ranks the list
        frame = lists[spec.name]
        assert frame["p_alive"].notna().all()
        assert frame.columns.get_loc("p_alive") == frame.columns.get_loc(spec.value) + 1


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the BG/NBD optimiser's trial steps on random data
def test_a_part_of_the_snapshot_scores_as_the_whole_given_the_population_s_fit_and_levels():
    """What Spark's executors rely on (serving/spark.py): with BG/NBD fitted on the whole population and the
    levelled CLTV model's factor computed over all of it, each half scores bit for bit as in the whole."""
    import lightgbm as lgb

    from models.catalog import get
    from models.training import BTYD_LEVEL, ScoringModel, btyd_fit, btyd_level_factor
    from serving.scoring import model_inputs

    rng = np.random.default_rng(3)
    n = 400
    snapshot = pd.DataFrame({
        "customer_id": [f"c{i:04d}" for i in rng.permutation(n)], "cutoff": CUTOFF,
        "frequency": rng.integers(0, 12, n), "T": rng.integers(100, 900, n).astype(float),
        "monetary_value": rng.gamma(2.0, 30.0, n), "days_since_last_purchase": rng.integers(1, 700, n),
        "rfm_segment": "New", "country": "US"})
    snapshot["recency"] = (snapshot["T"] - snapshot["days_since_last_purchase"]).clip(lower=0)
    features = ["frequency", "monetary_value", "days_since_last_purchase"]
    booster = lgb.train({"objective": "regression", "verbose": -1, "num_threads": 1, "seed": 1},
                        lgb.Dataset(snapshot[features], rng.gamma(2.0, 50.0, n)), num_boost_round=5)
    cltv = ScoringModel("cltv-regressor", "regressor", "future_net_revenue", features, {}, booster, (1.0, 0.0),
                        level="btyd_total")
    assert cltv.population_level
    champions = {**_champions(), "cltv-regressor": Champion("cltv-regressor", "5", cltv)}
    horizons = HorizonsConfig()
    whole = score_snapshot(snapshot, champions, horizons)
    fitted = btyd_fit(snapshot, horizons.churn_days)
    inputs, _ = model_inputs(snapshot, horizons, fitted)
    population = inputs[get("cltv-regressor").population.mask(inputs, horizons).to_numpy()]
    level = btyd_level_factor(population, cltv.raw_score(population))
    # by hand: the factor makes the population's predictions add up to its BG/NBD x Gamma-Gamma total
    assert (cltv.raw_score(population) * level).sum() == pytest.approx(population[BTYD_LEVEL].sum(), rel=1e-12)
    halves = [score_snapshot(part, champions, horizons, fitted=fitted, levels={"cltv-regressor": level})
              for part in (snapshot.iloc[: n // 3], snapshot.iloc[n // 3:])]
    pd.testing.assert_frame_equal(pd.concat(halves).sort_values("customer_id").reset_index(drop=True), whole)
    # without them a part is fitted and levelled on itself, and its values differ
    alone = score_snapshot(snapshot.iloc[: n // 3], champions, horizons)
    assert not np.allclose(alone["predicted_cltv"].dropna(), whole.set_index("customer_id").loc[
        alone["customer_id"], "predicted_cltv"].dropna())
