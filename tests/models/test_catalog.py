"""The model and list catalogues: one declaration per model and list, and the subscription-churn model that was
added as one catalogue entry (backtested against its baselines, stepping aside on data without subscriptions)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.config import HorizonsConfig, ModelsConfig, SnapshotsConfig
from features.definitions import label_columns
from models import catalog
from models.backtest import needed_cutoffs, run_backtest, summary_rows
from serving import lists

ROOT = Path(__file__).resolve().parents[2]
CODE = [p for folder in ("common", "features", "models", "serving", "pipelines", "bench", "notebooks")
        for p in sorted((ROOT / folder).rglob("*.py"))]


def _files_with(literal: str) -> set[str]:
    pattern = re.compile(rf"""["']{re.escape(literal)}["']""")
    return {str(p.relative_to(ROOT)) for p in CODE if pattern.search(p.read_text(encoding="utf-8"))}


@pytest.mark.parametrize("name", catalog.names())
def test_each_model_name_is_written_in_one_declaration(name):
    assert _files_with(name) == {"models/catalog.py"}
    quoted = re.compile(rf"""["']{re.escape(name)}["']""")
    assert len(quoted.findall((ROOT / "models/catalog.py").read_text())) == 1


@pytest.mark.parametrize("name", lists.names())
def test_each_list_name_is_written_in_one_declaration(name):
    # the win-back model's report section is spelled like its list: that one line of the model catalogue is allowed
    sections = {"models/catalog.py"} if name in {s.section for s in catalog.MODELS} else set()
    assert _files_with(name) == {"serving/lists.py"} | sections


def test_declarations_are_consistent():
    specs = catalog.MODELS
    for key in ("name", "section", "score_column"):
        values = [getattr(s, key) for s in specs]
        assert len(values) == len(set(values)), key
    assert {s.label for s in specs} <= set(label_columns())  # every model predicts a registered outcome
    for spec in lists.LISTS:
        assert spec.model.kind == "classifier" and spec.value in spec.columns and "rfm_segment" in spec.columns
    with pytest.raises(KeyError, match="unknown model 'nope'; expected one of"):
        catalog.get("nope")


def test_promotion_follows_each_declaration():
    from models.tracking import decide_promotion

    margins = ModelsConfig(promotion_margin_auc=0.01)
    champion = {"roc_auc": 0.80, "ece": 0.02}
    name = "subscription-churn-classifier"
    assert decide_promotion(name, {"roc_auc": 0.811, "ece": 0.02}, champion, margins).reason == (
        "ROC AUC +0.0110 >= margin 0.01, ECE not worse")
    assert not decide_promotion(name, {"roc_auc": 0.809, "ece": 0.01}, champion, margins).promote
    # the next-order model: lower median absolute error is better, by at least promotion_margin_days
    days = ModelsConfig(promotion_margin_days=0.5)
    assert decide_promotion("next-order-regressor", {"median_abs_error_days": 4.0},
                            {"median_abs_error_days": 5.0}, days).reason == (
        "reduction of the median absolute error (days) +1.0000 >= margin 0.5")
    assert not decide_promotion("next-order-regressor", {"median_abs_error_days": 5.0},
                                {"median_abs_error_days": 4.0}, days).promote


def test_tenure_plan_rule_by_hand():
    from models.training import fit_tenure_plan_rule

    rows = pd.DataFrame({"subscription_plan": ["basic"] * 4 + ["plus"] * 2,
                         "months_subscribed": [1.0, 2.0, 1.5, 30.0, 1.0, 1.0],
                         "subscription_churned": [True, True, False, False, False, None]})
    rule = fit_tenure_plan_rule(rows, "subscription_churned", prior_rows=1.0)
    overall = 2 / 5  # the unlabeled row is left out
    # basic, tenure band 0 (under 3 months): 2 of 3 cancelled, shrunk by one pseudo-row at the overall rate
    assert rule.rates[("basic", 0)] == pytest.approx((2 + overall) / (3 + 1))
    assert rule.rates[("basic", 4)] == pytest.approx((0 + overall) / (1 + 1))  # 30 months: band 24+
    unseen = pd.DataFrame({"subscription_plan": ["premium"], "months_subscribed": [5.0]})
    assert rule.score(unseen).tolist() == [overall]


@pytest.fixture(scope="module")
def labeled(validated_dir):
    from features.snapshots import build_snapshots, latest_labeled_cutoff, open_sources

    src = open_sources(validated_dir)
    as_of = latest_labeled_cutoff(src.last_day, 90)
    cutoffs = needed_cutoffs(as_of, src.last_day, HorizonsConfig(), SnapshotsConfig())
    return build_snapshots(src, cutoffs, HorizonsConfig(), with_labels=True), as_of, src.last_day


def test_subscription_model_is_backtested_against_its_baselines(labeled):
    snapshots, as_of, last_day = labeled
    spec = catalog.get("subscription-churn-classifier")
    result = run_backtest(snapshots, as_of, last_day, HorizonsConfig(), SnapshotsConfig(),
                          ModelsConfig(min_child_samples=20), models=[spec])
    section = result.report[spec.section]
    rows = result.evaluations[spec.section]
    # evaluated on the customers with an active subscription at the as-of date, with a known outcome
    at = snapshots[snapshots["cutoff"] == as_of]
    assert len(rows) == at["subscription_plan"].notna().sum() == at["subscription_churned"].notna().sum()
    assert 0.5 < section["roc_auc"] <= 1 and section["as_of"] == as_of.isoformat()
    for baseline in ("tenure_plan_rule", "logistic_regression"):
        assert 0 <= result.report["baselines"][baseline][spec.section]["roc_auc"] <= 1
    table = {(target, metric): values for target, metric, values in summary_rows(result.report, [spec])}
    assert table[("subscription", "roc_auc")]["model"] == section["roc_auc"]
    assert result.report["populations"]["subscribers"] == len(rows)


def test_next_order_model_is_backtested_on_active_customers_who_order_again(labeled):
    snapshots, as_of, last_day = labeled
    spec = catalog.get("next-order-regressor")
    result = run_backtest(snapshots, as_of, last_day, HorizonsConfig(), SnapshotsConfig(),
                          ModelsConfig(min_child_samples=20), models=[spec])
    rows, section = result.evaluations[spec.section], result.report[spec.section]
    at = snapshots[snapshots["cutoff"] == as_of]
    at = at[catalog.ACTIVE.mask(at, HorizonsConfig())]
    # active at the as-of date and ordered within the churn window: the label is known exactly for them
    assert len(rows) == at["days_to_next_order"].notna().sum() == section["n"]
    assert (rows["days_to_next_order"] < 90).all() and (rows["model"] >= 0).all()
    for baseline in ("btyd", "typical_gap"):
        assert result.report["baselines"][baseline][spec.section]["n"] == len(rows)
    assert section["median_abs_error_days"] == float(np.median(np.abs(np.rint(rows["model"])
                                                                       - rows["days_to_next_order"])))


def test_cltv_predictions_add_up_to_the_btyd_total_of_their_cutoff(labeled):
    from models.training import BTYD_LEVEL, _btyd_level

    # by hand: cutoff 1 raw (1, 3), totals 4 vs BG/NBD 8 -> x2; cutoff 2 raw 2, BG/NBD 1 -> x0.5
    rows = pd.DataFrame({"cutoff": ["c1", "c1", "c2"], BTYD_LEVEL: [4.0, 4.0, 1.0]})
    assert (np.array([1.0, 3.0, 2.0]) * _btyd_level(rows, np.array([1.0, 3.0, 2.0]))).tolist() == [2.0, 6.0, 1.0]
    snapshots, as_of, last_day = labeled
    spec = catalog.get("cltv-regressor")
    result = run_backtest(snapshots, as_of, last_day, HorizonsConfig(), SnapshotsConfig(),
                          ModelsConfig(min_child_samples=20), models=[spec])
    rows = result.evaluations[spec.section]
    assert result.models[spec.name].level == "btyd_total"
    assert rows["model"].sum() == pytest.approx(rows["btyd"].sum(), rel=1e-9)  # the level; the trees share it
    assert result.report[spec.section]["total_error"] == pytest.approx(
        result.report["baselines"]["btyd"][spec.section]["total_error"], abs=1e-9)


def test_subscription_model_steps_aside_without_subscriptions(labeled):
    snapshots, as_of, last_day = labeled
    spec = catalog.get("subscription-churn-classifier")
    without = snapshots.drop(columns=[c for c in snapshots.columns if c.startswith("subscription_")
                                      or c in ("months_subscribed", "recent_downgrade")])
    result = run_backtest(without, as_of, last_day, HorizonsConfig(), SnapshotsConfig(), ModelsConfig(),
                          models=[spec])
    assert result.report[spec.section] == {"skipped": "the snapshots have no subscription_plan (the subscribers "
                                                      "population needs it; is its table configured?)"}
    assert spec.section not in result.evaluations


def test_subscription_scores_land_on_the_lists_for_subscribers_only():
    from serving.scoring import Champion, build_lists, score_snapshot

    class Fixed:
        def __init__(self, value):
            self.value = value

        def score(self, frame):
            return np.full(len(frame), self.value)

    snap = pd.DataFrame({"customer_id": ["A", "B", "C"], "cutoff": dt.date(2026, 11, 1),
                         "frequency": [3, 5, 2], "recency": [300, 700, 100], "T": [700, 720, 800],
                         "monetary_value": [50.0, 40.0, 80.0], "days_since_last_purchase": [10, 20, 400],
                         "subscription_plan": ["basic", None, "plus"], "rfm_segment": "New", "country": "US"})
    champions = {spec.name: Champion(spec.name, "1", Fixed(0.25)) for spec in catalog.MODELS}
    scores = score_snapshot(snap, champions, HorizonsConfig())
    cancel = scores.set_index("customer_id")["subscription_cancel_probability"]
    assert cancel["A"] == 0.25 and np.isnan(cancel["B"])  # B has no active subscription
    assert cancel["C"] == 0.25  # a lapsed subscriber is scored too
    published = build_lists(scores, champions, "r")
    at_risk = published[lists.LISTS[0].name]
    assert "subscription_cancel_probability" in at_risk.columns and "subscription_model_version" in at_risk.columns
    # without a champion (the model stepped aside) the column is there and empty
    core = {n: c for n, c in champions.items() if catalog.get(n).required}
    assert score_snapshot(snap, core, HorizonsConfig())["subscription_cancel_probability"].isna().all()


def test_a_model_trains_with_its_own_boosting_settings():
    shared = ModelsConfig(learning_rate=0.05, max_rounds=300)
    churn, winback = catalog.get("churn-classifier"), catalog.get("winback-classifier")
    # the catalogue's tuning replaces the shared setting for its model only; the rest stays shared
    assert churn.boosting == {"learning_rate": 0.2}
    assert churn.settings(shared).learning_rate == 0.2 and churn.settings(shared).max_rounds == 300
    assert winback.settings(shared) == shared
    # models.per_model wins over both, for the model it names
    tuned = ModelsConfig(learning_rate=0.05, per_model={"churn-classifier": {"learning_rate": 0.3, "max_depth": 3},
                                                        "winback-classifier": {"max_rounds": 50}})
    assert (churn.settings(tuned).learning_rate, churn.settings(tuned).max_depth) == (0.3, 3)
    assert (winback.settings(tuned).learning_rate, winback.settings(tuned).max_rounds) == (0.05, 50)
    assert churn.settings(tuned).lgb_params()["learning_rate"] == 0.3


def test_per_model_settings_must_name_a_model_of_the_catalogue():
    from common.errors import ConfigError

    catalog.check_settings(ModelsConfig(per_model={"cltv-regressor": {"max_rounds": 10}}))
    with pytest.raises(ConfigError, match=r"models.per_model names 'churn-clasifier', not a model of the catalogue"
                                          r"; expected one of \['churn-classifier'"):
        catalog.check_settings(ModelsConfig(per_model={"churn-clasifier": {"learning_rate": 0.3}}))
    with pytest.raises(ValueError, match="learning_rate"):
        ModelsConfig(per_model={"churn-classifier": {"learning_rate": 2}})


def test_the_backtest_fits_bg_nbd_once_per_cutoff(labeled, monkeypatch):
    from models import btyd

    snapshots, as_of, last_day = labeled
    fitted = []
    fit = btyd.BetaGeo.fit
    monkeypatch.setattr(btyd.BetaGeo, "fit", lambda self, summary: fitted.append(len(summary)) or fit(self, summary))
    run_backtest(snapshots, as_of, last_day, HorizonsConfig(), SnapshotsConfig(),
                 ModelsConfig(min_child_samples=20, max_rounds=5))
    # the features' fit at every cutoff serves the baselines at the evaluation cutoffs too
    assert sorted(fitted) == sorted(snapshots.groupby("cutoff").size().tolist())
