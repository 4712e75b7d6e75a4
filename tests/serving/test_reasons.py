"""Reasons: TreeSHAP equal to shap's, texts worked out by hand in two languages, a template for every feature."""

from __future__ import annotations

import datetime as dt

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from common.errors import ConfigError
from models.training import ScoringModel
from serving.explain import reference_values, top_reasons
from serving.reasons import DEFAULT_REASONS, load_reasons, placeholders, render

CATALOG = load_reasons(DEFAULT_REASONS)
CUTOFF = dt.date(2026, 11, 1)
DERIVED = {"last_nps_date", "spend_change_90d", "orders_change_90d", "web_change_30d", "email_open_change_90d",
           "channel", "channel_share", "churn_horizon"}


def _row(**values) -> dict:
    return {"cutoff": CUTOFF, "country": "US", **values}


@pytest.mark.parametrize("country, expected", [
    ("US", "No purchase for 143 days, about 3.18x their usual gap of 45 days"),
    ("GB", "No purchase for 143 days, about 3.18x their usual gap of 45 days"),
    ("CZ", "Bez nákupu 143 dnů, asi 3,18x déle než obvyklá pauza 45 dnů"),
])
def test_recency_reason_uses_the_customers_own_gap_in_their_language(country, expected):
    row = _row(country=country, days_since_last_purchase=143, overdue_ratio=3.1777, gap_mean_days=45.0)
    assert render(CATALOG, "days_since_last_purchase", row, "USD") == expected


def test_a_variant_with_a_missing_field_falls_back_to_the_next():
    row = _row(days_since_last_purchase=1, overdue_ratio=np.nan, gap_mean_days=np.nan)
    assert render(CATALOG, "days_since_last_purchase", row, "USD") == "No purchase for 1 day"
    assert render(CATALOG, "days_since_last_purchase", {**row, "country": "CZ"}, "USD") == "Bez nákupu 1 den"


def test_nps_reason_dates_and_words_follow_the_locale():
    row = _row(last_nps=3, days_since_last_nps=48, nps_group="detractor")  # 2026-11-01 - 48 days = 2026-09-14
    assert render(CATALOG, "last_nps", row, "USD") == "Rated us 3/10 on Sep 14, 2026 (detractor)"
    assert render(CATALOG, "last_nps", {**row, "country": "GB"}, "USD") == "Rated us 3/10 on 14 Sept 2026 (detractor)"
    assert render(CATALOG, "last_nps", {**row, "country": "CZ"}, "USD") == "Ohodnotil nás 3/10 dne 14. 9. 2026 (kritik)"


def test_changes_money_counts_and_channels():
    row = _row(spend_trend_90d=0.38, net_spend=1234.5, open_tickets=2, channel_share_web=0.5, unsubscribed=True)
    assert render(CATALOG, "spend_trend_90d", row, "USD") == (
        "Spend in the last 90 days changed by -62% from the 90 days before")
    assert render(CATALOG, "net_spend", row, "USD") == "Spent $1,234.50 in total, refunds included"
    # an English text for a Spanish customer (no Spanish texts) keeps English separators
    assert render(CATALOG, "net_spend", {**row, "country": "ES"}, "USD") == "Spent $1,234.50 in total, refunds included"
    assert render(CATALOG, "net_spend", {**row, "country": "CZ"}, "EUR") == (
        "Celková útrata 1\u00a0234,50\u00a0€ včetně vratek")  # CLDR: no-break spaces inside numbers and amounts
    assert render(CATALOG, "open_tickets", row, "USD") == "2 support tickets still open"
    assert render(CATALOG, "channel_share_web", row, "USD") == "50% of their orders through the web channel"
    assert render(CATALOG, "unsubscribed", {**row, "country": "CZ"}, "USD") == "Odhlášen z e-mailů: ano"


def test_every_model_feature_has_a_text_in_every_language_with_known_fields(validated_dir):
    from common.config import HorizonsConfig
    from features.snapshots import build_snapshots, open_sources
    from models.training import BTYD_FEATURES, feature_columns

    snap = build_snapshots(open_sources(validated_dir), [CUTOFF], HorizonsConfig())
    features = feature_columns(snap) + list(BTYD_FEATURES)
    known = set(snap.columns) | set(BTYD_FEATURES) | DERIVED
    for feature in features:
        by_language = CATALOG.template(feature)
        assert by_language is not None, f"no reason template for {feature}"
        assert set(by_language) == CATALOG.languages == {"en", "de", "fr", "cs", "el", "ja", "sl", "he"}, feature
        for texts in by_language.values():
            for text in texts:
                fields = set(placeholders(text))
                assert fields <= known, (feature, fields - known)


def test_a_bad_reasons_file_names_the_file_and_the_problem(tmp_path):
    bad = tmp_path / "reasons.yaml"
    bad.write_text("country_languages: {CZ: cs}\ntemplates:\n  orders: {risk: lower, text: {en: ['{orders:int} orders']}}\n")
    with pytest.raises(ConfigError, match=r"reasons.yaml: .*'orders' has no text in \['cs'\]"):
        load_reasons(bad)
    bad.write_text("templates:\n  orders: {risk: lower, text: {en: ['{orders:weird} orders']}}\n")
    with pytest.raises(ConfigError, match="unknown format 'weird'"):
        load_reasons(bad)
    bad.write_text("templates:\n  orders: {risk: sideways, text: {en: ['{orders:int} orders']}}\n")
    with pytest.raises(ConfigError, match="templates.orders.risk"):
        load_reasons(bad)


@pytest.fixture(scope="module")
def model() -> tuple[ScoringModel, pd.DataFrame]:
    """A small LightGBM classifier where churn rises with days since the last purchase and falls with orders."""
    rng = np.random.default_rng(0)
    n = 2000
    X = pd.DataFrame({"days_since_last_purchase": rng.integers(1, 400, n).astype(float),
                      "orders_30d": rng.integers(0, 6, n).astype(float),
                      "nps_group": pd.Categorical(rng.choice(["promoter", "passive", "detractor"], n))})
    logit = X["days_since_last_purchase"] / 80 - X["orders_30d"] - 2 + (X["nps_group"] == "detractor") * 1.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    booster = lgb.train({"objective": "binary", "num_leaves": 7, "verbose": -1, "seed": 1, "deterministic": True},
                        lgb.Dataset(X, y), num_boost_round=60)
    categories = {"nps_group": list(X["nps_group"].cat.categories)}
    scoring = ScoringModel("churn-classifier", "classifier", "churned", list(X.columns), categories, booster,
                           (1.0, 0.0), best_iteration=60)
    rows = X.assign(customer_id=[f"C{i}" for i in range(n)], cutoff=CUTOFF, country="US",
                    nps_group=X["nps_group"].astype(str), last_nps=np.where(X["nps_group"] == "detractor", 3, 9),
                    days_since_last_nps=10)
    return scoring, rows


def test_lightgbm_treeshap_equals_shap_and_adds_up_to_the_raw_score(model):
    import shap

    scoring, rows = model
    contributions = scoring.explain(rows.head(300))
    from models.training import design_matrix

    design = design_matrix(rows.head(300), scoring.features, scoring.categories)
    reference = shap.TreeExplainer(scoring.booster).shap_values(design)
    reference = reference[1] if isinstance(reference, list) else reference
    assert np.abs(contributions[scoring.features].to_numpy() - reference).max() < 1e-6
    total = contributions.sum(axis=1).to_numpy()
    assert np.abs(total - scoring.raw_score(rows.head(300))).max() < 1e-9


def test_the_published_contributions_add_up_to_the_raw_score(model):
    """The profile's waterfall data: the top drivers by size with their values, and the rest, from the base."""
    import json

    scoring, rows = model
    head = rows.head(50)
    found = top_reasons(scoring, head, CATALOG, "USD", 90, with_contributions=True)
    raw = scoring.raw_score(head)
    for text, total, (_, row) in zip(found["shap_contributions"], raw, head.iterrows()):
        data = json.loads(text)
        assert [f for f, _, _ in data["features"]] and len(data["features"]) == 3  # every feature: 3 < 8
        assert abs(data["base"] + sum(c for _, _, c in data["features"]) + data["other"] - total) < 1e-5
        sizes = [abs(c) for _, _, c in data["features"]]
        assert sizes == sorted(sizes, reverse=True)
        values = {f: v for f, v, _ in data["features"]}
        assert values["days_since_last_purchase"] == row["days_since_last_purchase"]
        assert values["nps_group"] == row["nps_group"]


def test_reasons_are_the_largest_positive_drivers_in_order(model):
    scoring, rows = model
    reference = reference_values(rows, scoring.features)  # the population's medians
    risky = rows[(rows["days_since_last_purchase"] > 350) & (rows["orders_30d"] == 0)
                 & (rows["nps_group"] == "detractor")].head(5)
    reasons = top_reasons(scoring, risky, CATALOG, "USD", 90, reference=reference)
    contributions = scoring.explain(risky)[scoring.features]
    for (i, got), (_, contrib) in zip(zip(risky.index, reasons.to_numpy().tolist()), contributions.iterrows()):
        # every positive driver is on the risky side here: long silent, no recent orders, a detractor
        positive = contrib[contrib > 0].sort_values(ascending=False).index.tolist()
        expected = [render(CATALOG, f, risky.loc[i].to_dict(), "USD") for f in positive][:3]
        assert [r for r in got if r is not None] == expected
        assert any(r.startswith("No purchase for") for r in expected)
    safe = rows[(rows["days_since_last_purchase"] < 20) & (rows["orders_30d"] >= 4)].head(3)
    # a safe customer: no recency or order fact is on the risky side; only a detractor's answer can be said
    said = top_reasons(scoring, safe, CATALOG, "USD", 90, reference=reference).to_numpy().ravel().tolist()
    assert all(r is None or r.startswith("A detractor") for r in said) and said.count(None) >= 2 * len(safe)


def test_a_driver_without_a_text_is_skipped_and_the_next_one_moves_up():
    """Reasons fill reason_1 first: a driver whose fields are missing (no NPS answer), that states a fact already
    given (two order counts) or that lies on the safe side leaves no gap, and the columns hold texts or None."""

    class Fixed:
        features = ["last_nps", "days_since_last_purchase", "orders_30d", "orders_90d", "tenure_days"]

        def explain(self, rows):
            return pd.DataFrame([[3.0, 2.0, 1.0, 0.5, 0.2], [3.0, 2.0, -1.0, -2.0, 0.1]], columns=self.features,
                                index=rows.index)

    rows = pd.DataFrame({"customer_id": ["A", "B"], "cutoff": CUTOFF, "country": ["US", "CZ"],
                         "last_nps": [np.nan, 3.0], "days_since_last_nps": [np.nan, 48], "nps_group": [None, "detractor"],
                         "days_since_last_purchase": [143, 1], "overdue_ratio": [np.nan, np.nan],
                         "gap_mean_days": [np.nan, np.nan], "orders_30d": [0, 2], "orders_90d": [1, 4],
                         "tenure_days": [40, 900]})
    reference = pd.Series({"last_nps": 8.0, "days_since_last_purchase": 30.0, "orders_30d": 1.0, "orders_90d": 3.0,
                           "tenure_days": 400.0})
    got = top_reasons(Fixed(), rows, CATALOG, "USD", 90, reference=reference).to_numpy().tolist()
    # A: no NPS answer; one order count only (the 30-day one, the larger driver); a short tenure
    assert got[0] == ["No purchase for 143 days", "No orders in the last 30 days", "Signed up 40 days ago"]
    # B, in Czech: a detractor; 1 day without an order and a long tenure lie on the safe side
    assert got[1] == ["Ohodnotil nás 3/10 dne 14. 9. 2026 (kritik)", None, None]