"""Reasons are facts that agree with the score: the rules worked out by hand on a model double."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from serving.explain import audit_reasons, reference_values, top_reasons
from serving.reasons import DEFAULT_REASONS, load_reasons, render

CATALOG = load_reasons(DEFAULT_REASONS)
CUTOFF = dt.date(2026, 11, 1)
FEATURES = ["days_since_last_purchase", "overdue_ratio", "days_overdue", "orders_365d", "p_alive", "orders_30d",
            "spend_trend_90d"]


class Fixed:
    """Every feature raises the score, in the order of FEATURES."""

    features = FEATURES

    def explain(self, rows):
        return pd.DataFrame([[7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]] * len(rows), columns=FEATURES, index=rows.index)


def _rows(**columns) -> pd.DataFrame:
    base = {"customer_id": ["A"], "cutoff": CUTOFF, "country": ["US"], "days_since_last_purchase": [150],
            "overdue_ratio": [3.0], "gap_mean_days": [50.0], "days_overdue": [100.0], "orders_365d": [124],
            "p_alive": [0.0], "orders_30d": [0], "spend_trend_90d": [0.5]}
    return pd.DataFrame({**base, **columns})


# the population's medians: 40 days since the last order, 6 orders a year, 1 in the last 30 days
REFERENCE = pd.Series({"days_since_last_purchase": 40.0, "overdue_ratio": 0.8, "days_overdue": -10.0,
                       "orders_365d": 6.0, "p_alive": 0.7, "orders_30d": 1.0, "spend_trend_90d": 1.0})


def test_a_churn_reason_is_a_fact_on_the_risky_side_and_one_per_fact():
    got = top_reasons(Fixed(), _rows(), CATALOG, "USD", 90, reference=REFERENCE, with_drivers=True)
    # the overdue ratio and the days overdue state the recency fact again: left out; 124 orders a year is above
    # the median, which lowers the risk: left out; P(alive) is another model's output: never a reason
    assert got.iloc[0].tolist() == [
        "No purchase for 150 days, about 3x their usual gap of 50 days",
        "No orders in the last 30 days",
        "Spend in the last 90 days changed by -50% from the 90 days before",
        "days_since_last_purchase", "orders_30d", "spend_trend_90d"]
    assert audit_reasons(got, _rows(), CATALOG, "risk", REFERENCE) == dict.fromkeys(
        ("contradicting", "not_a_fact", "same_fact_twice", "zero_count", "negative_duration", "unpluralised",
         "zero_percent", "mixed_language"), 0)


def test_a_win_back_reason_is_on_the_side_that_raises_the_chance_of_buying_again():
    got = top_reasons(Fixed(), _rows(), CATALOG, "USD", 90, raises="return", reference=REFERENCE)
    # for a win-back score 124 orders a year is the reason; 150 days without an order and falling spend are not
    assert got.iloc[0].tolist() == ["124 orders in the last year", None, None]


def test_a_customer_who_is_not_late_is_never_told_a_negative_lateness():
    rows = _rows(days_since_last_purchase=[20], overdue_ratio=[0.6], days_overdue=[-35.0], orders_30d=[2],
                 spend_trend_90d=[1.4], orders_365d=[3])
    got = top_reasons(Fixed(), rows, CATALOG, "USD", 90, reference=REFERENCE)
    # 3 orders a year (below the median of 6) is the only fact on the risky side
    assert got.iloc[0].tolist() == ["3 orders in the last year", None, None]


def test_the_audit_counts_each_defect():
    rows = _rows()
    bad = pd.DataFrame({"reason_1": ["124 orders in the last year"], "driver_1": ["orders_365d"],
                        "reason_2": ["-35 days later than their usual gap of 50 days"], "driver_2": ["days_overdue"],
                        "reason_3": ["Expected to order 0 times in the next 90 days"], "driver_3": ["p_alive"]})
    counts = audit_reasons(bad, rows, CATALOG, "risk", REFERENCE)
    assert counts["contradicting"] == 1 and counts["not_a_fact"] == 1 and counts["zero_count"] == 1
    assert counts["negative_duration"] == 1 and counts["same_fact_twice"] == 0
    twice = pd.DataFrame({"reason_1": ["No purchase for 78 days"], "driver_1": ["days_since_last_purchase"],
                          "reason_2": ["Gone 4.73x as long as their usual gap of 16 days"],
                          "driver_2": ["overdue_ratio"],
                          "reason_3": ["1 orders in the last 90 days, 0% of them"], "driver_3": [None]})
    counts = audit_reasons(twice, rows, CATALOG, "risk", REFERENCE)
    assert counts["same_fact_twice"] == 1 and counts["unpluralised"] == 1 and counts["zero_percent"] == 1


def test_counts_agree_with_their_noun_and_shares_never_read_zero():
    row = {"cutoff": CUTOFF, "country": "US"}
    assert render(CATALOG, "orders_90d", {**row, "orders_90d": 1}, "USD") == "1 order in the last 90 days"
    assert render(CATALOG, "orders_90d", {**row, "orders_90d": 2}, "USD") == "2 orders in the last 90 days"
    assert render(CATALOG, "open_tickets", {**row, "open_tickets": 1}, "USD") == "1 support ticket still open"
    assert render(CATALOG, "refund_rate", {**row, "refund_rate": 0.004}, "USD") == "Returned 0.4% of their orders"
    assert render(CATALOG, "refund_rate", {**row, "refund_rate": 0.0004}, "USD") == "Returned <0.1% of their orders"
    assert render(CATALOG, "refund_rate", {**row, "refund_rate": 0.25}, "USD") == "Returned 25% of their orders"
    # a value of exactly 0 has its own words
    assert render(CATALOG, "refund_rate", {**row, "refund_rate": 0.0}, "USD") == "Has never returned an order"
    assert render(CATALOG, "net_spend_180d", {**row, "country": "CZ", "net_spend_180d": 0.0}, "CZK") == (
        "Za posledních 180 dní neutratil nic")


def test_czech_nouns_take_the_three_plural_forms(tmp_path):
    path = tmp_path / "reasons.yaml"
    path.write_text(
        "country_languages: {CZ: cs}\n"
        "nouns:\n  orders:\n    en: {one: '{n} order', other: '{n} orders'}\n"
        "    cs: {one: '{n} objednávka', few: '{n} objednávky', many: '{n} objednávky', other: '{n} objednávek'}\n"
        "templates:\n  orders:\n    risk: lower\n    text: {en: ['{orders:orders}'], cs: ['{orders:orders} celkem']}\n",
        encoding="utf-8")
    catalog = load_reasons(path)
    texts = [render(catalog, "orders", {"cutoff": CUTOFF, "country": "CZ", "orders": n}, "CZK") for n in (1, 3, 5)]
    assert texts == ["1 objednávka celkem", "3 objednávky celkem", "5 objednávek celkem"]
    path.write_text(path.read_text(encoding="utf-8").replace("few: '{n} objednávky', ", ""), encoding="utf-8")
    load_reasons.cache_clear()
    from common.errors import ConfigError

    with pytest.raises(ConfigError, match=r"noun 'orders' \(cs\) lacks the plural form\(s\) \['few'\]"):
        load_reasons(path)


def test_the_reference_is_the_median_of_numbers_and_booleans():
    rows = pd.DataFrame({"a": [1.0, 2.0, 10.0], "b": [True, False, True], "c": ["x", "y", "z"]})
    assert reference_values(rows, ["a", "b", "c"]).to_dict() == {"a": 2.0, "b": 1.0}
    assert np.isnan(reference_values(pd.DataFrame({"a": [np.nan]}), ["a"])["a"])
