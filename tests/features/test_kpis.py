"""The retention KPIs and the cohort matrix (issue 20): every KPI worked out by hand on four customers over one
month, the periods, "no data" instead of 0, the labels' activity rule, and the cohort matrix against a plain
pandas computation on the generated fixture."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from features.kpis import OVERALL, boundaries, cohort_matrix, kpi_table, label, period_start, shift

FEB, MAR = dt.date(2026, 2, 1), dt.date(2026, 3, 1)


def _transactions() -> pd.DataFrame:
    rows = [
        ("A", "2026-01-10", 100.0), ("A", "2026-02-05", 50.0), ("A", "2026-02-07", -10.0),  # refund
        ("B", "2025-12-20", 80.0),  # active on Feb 1 (43 days), gone by Mar 1 (71 > 60): lost
        ("C", "2026-02-10", 50.0),  # new in February
        ("D", "2025-10-01", 40.0), ("D", "2026-02-15", 60.0),  # lapsed on Feb 1 (123 days), back in February
        ("A", "2026-03-01", 999.0),  # after the period: changes nothing
    ]
    return pd.DataFrame(rows, columns=["customer_id", "ts", "amount"]).assign(ts=lambda f: pd.to_datetime(f["ts"]))


def _status() -> pd.DataFrame:
    # activity window 60 days; segments at the start as the feature engine would give them
    return pd.DataFrame([
        ("A", FEB, True, "Champions", "US"), ("B", FEB, True, "At Risk", "US"), ("D", FEB, False, "Lost", "DE"),
        ("A", MAR, True, "Champions", "US"), ("B", MAR, False, "Lost", "US"), ("C", MAR, True, "New", "DE"),
        ("D", MAR, True, "Promising", "DE"),
    ], columns=["customer_id", "cutoff", "is_active", "rfm_segment", "country"])


def _surveys() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ["A", "C", "D", "D", "A", "C", "A"],
                         "ts": pd.to_datetime(["2026-02-02", "2026-02-11", "2026-02-16", "2026-02-20",
                                               "2026-02-03", "2026-02-12", "2026-01-05"]),
                         "nps": [9, 10, 7, 3, np.nan, np.nan, 0], "csat": [np.nan, np.nan, np.nan, np.nan, 5, 3, 1],
                         "ces": [4, np.nan, 2, np.nan, np.nan, np.nan, 7]})


def _tickets() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ["A", "B", "D", "A"],
                         "opened_at": pd.to_datetime(["2026-02-03", "2026-02-20", "2026-02-16", "2026-03-01"]),
                         "csat": [4, 2, np.nan, 1]})


def _table(**kwargs) -> pd.DataFrame:
    customers = pd.DataFrame({"customer_id": list("ABCD"),
                              "acquisition_channel": ["organic", "paid_search", "referral", "organic"]})
    return kpi_table(_status(), _transactions(), [FEB, MAR], "month",
                     **{"customers": customers, "surveys": _surveys(), "tickets": _tickets(), **kwargs})


def _row(table: pd.DataFrame, grouping: str = "overall", group: str = OVERALL) -> pd.Series:
    found = table[(table["grouping"] == grouping) & (table["group"] == group)]
    assert len(found) == 1, (grouping, group)
    return found.iloc[0]


def test_every_kpi_by_hand():
    row = _row(_table())
    assert row["period"] == "2026-02"
    # S = {A, B}, E = {A, C, D}, N = {C}, lost = {B}
    assert (row["customers_start"], row["customers_end"], row["new_customers"], row["lost_customers"]) == (2, 3, 1, 1)
    assert row["churn_rate"] == 0.5
    assert row["retention_rate"] == 1.0  # (3 - 1) / 2: D came back
    assert row["revenue_retention"] == pytest.approx(0.4)  # A and B: (50 - 10 + 0) / (100 + 0)
    # February's orders: A 50, C 50, D 60 (the refund is not an order)
    assert row["average_order_value"] == pytest.approx(160 / 3)
    assert row["purchase_frequency"] == 1.0
    assert row["repeat_purchase_rate"] == pytest.approx(2 / 3)  # A and D have two orders by Mar 1, C one
    assert row["expected_lifespan_periods"] == 2.0
    assert row["historical_cltv"] == pytest.approx(160 / 3 * 1.0 * 2)
    # NPS answers 9, 10, 7, 3 (January's 0 is outside): promoters 2/4, passives 1/4, detractors 1/4
    assert (row["nps_promoters"], row["nps_passives"], row["nps_detractors"]) == (0.5, 0.25, 0.25)
    assert row["nps"] == 25.0
    assert row["csat"] == 0.5 and row["csat_mean"] == 4.0  # 5 and 3
    assert row["ces_mean"] == 3.0  # 4 and 2
    assert row["survey_response_rate"] == 0.5  # of S, only A answered
    assert row["tickets_per_100"] == 150.0  # three tickets in February for two customers at the start
    assert row["ticket_csat_mean"] == 3.0  # 4 and 2; D's has no answer
    assert row["referral_rate"] == 1.0  # C, the one new customer, came through a referral


def test_markets_and_segments_split_the_same_customers():
    table = _table()
    us, de = _row(table, "market", "US"), _row(table, "market", "DE")
    assert (us["customers_start"], us["customers_end"], us["lost_customers"]) == (2, 1, 1)
    assert us["churn_rate"] == 0.5 and us["retention_rate"] == 0.5
    assert (de["customers_start"], de["customers_end"], de["new_customers"]) == (0, 2, 1)
    assert np.isnan(de["churn_rate"]) and np.isnan(de["retention_rate"])  # nobody at the start: no data
    champions, at_risk = _row(table, "segment", "Champions"), _row(table, "segment", "At Risk")
    assert champions["churn_rate"] == 0.0 and np.isnan(champions["expected_lifespan_periods"])
    assert at_risk["churn_rate"] == 1.0 and at_risk["retention_rate"] == 0.0
    assert set(table.loc[table["grouping"] == "segment", "group"]) == {"Champions", "At Risk", "Lost"}
    assert _row(table, "segment", "Lost")["customers_start"] == 0  # D was lapsed at the start


def test_a_kpi_without_its_data_is_no_data_never_zero():
    row = _row(kpi_table(_status(), _transactions(), [FEB, MAR], "month"))
    for column in ("nps", "csat", "ces_mean", "survey_response_rate", "tickets_per_100", "ticket_csat_mean",
                   "referral_rate"):
        assert np.isnan(row[column]), column
    assert row["churn_rate"] == 0.5


def test_periods_are_complete_calendar_months_or_quarters():
    assert period_start(dt.date(2026, 11, 17), "quarter") == dt.date(2026, 10, 1)
    assert shift(dt.date(2026, 1, 1), -1, "quarter") == dt.date(2025, 10, 1)
    # as of Nov 1 (exclusive) October is the last complete month; the first reported period needs one before it
    edges = boundaries(dt.date(2026, 11, 1), dt.date(2026, 7, 15), "month", 12)
    assert edges == [dt.date(2026, 8, 1), dt.date(2026, 9, 1), dt.date(2026, 10, 1), dt.date(2026, 11, 1)]
    assert boundaries(dt.date(2026, 11, 20), dt.date(2024, 1, 1), "quarter", 2) == [
        dt.date(2026, 4, 1), dt.date(2026, 7, 1), dt.date(2026, 10, 1)]
    assert label(dt.date(2026, 7, 1), "quarter") == "2026-Q3" and label(dt.date(2026, 7, 1), "month") == "2026-07"
    with pytest.raises(ValueError, match="period"):
        period_start(dt.date(2026, 1, 1), "week")


def test_the_status_uses_the_labels_activity_rule(validated_dir):
    from common.config import HorizonsConfig
    from features.kpis import boundary_status
    from features.snapshots import build_snapshots, open_sources

    horizons = HorizonsConfig()
    cutoff = dt.date(2026, 6, 1)
    src = open_sources(validated_dir)
    status = boundary_status(src, [cutoff], horizons)
    labeled = build_snapshots(src, [cutoff], horizons, with_labels=True)[["customer_id", "is_active"]]
    both = status.merge(labeled, on="customer_id", suffixes=("", "_label"))
    assert len(both) == len(status) == len(labeled) and status["is_active"].any() and not status["is_active"].all()
    assert (both["is_active"] == both["is_active_label"].astype(bool)).all()


def test_the_status_is_the_snapshot_s_own_columns(validated_dir):
    """build_status reads only the families the report needs: the same rows and values as the full snapshot."""
    from common.config import HorizonsConfig
    from features.snapshots import STATUS_COLUMNS, build_snapshots, build_status, open_sources

    src = open_sources(validated_dir)
    cutoffs = [dt.date(2025, 3, 1), dt.date(2026, 6, 1), dt.date(2026, 11, 1)]
    full = build_snapshots(src, cutoffs, HorizonsConfig())[STATUS_COLUMNS]
    pd.testing.assert_frame_equal(build_status(src, cutoffs), full)


def test_the_cohort_matrix_matches_a_pandas_reference(validated_dir):
    transactions = pd.read_parquet(validated_dir / "transactions.parquet", columns=["customer_id", "ts", "amount"])
    customers = pd.read_parquet(validated_dir / "customers.parquet", columns=["customer_id", "country"])
    as_of = (transactions["ts"].max() + pd.Timedelta(days=1)).date()
    found = cohort_matrix(transactions, as_of, customers)

    end = pd.Timestamp(period_start(as_of, "month"))
    t = transactions[transactions["ts"] < end].copy()
    t["month"] = t["ts"].dt.to_period("M")
    cohort = t[t["amount"] >= 0].groupby("customer_id")["month"].min().rename("cohort")
    t = t.join(cohort, on="customer_id").dropna(subset=["cohort"])
    t["months_since"] = (t["month"] - t["cohort"]).apply(lambda offset: offset.n)
    buyers = t[t["amount"] >= 0].groupby(["cohort", "months_since"])["customer_id"].nunique()
    revenue = t.groupby(["cohort", "months_since"])["amount"].sum()
    sizes = cohort.value_counts()
    overall = found[found["market"] == OVERALL].set_index(["cohort", "months_since"])
    assert len(overall) == len(revenue)
    for (c, k), customers_retained in buyers.items():
        row = overall.loc[(str(c), k)]
        assert row["customers"] == customers_retained and row["cohort_size"] == sizes[c]
        assert row["customer_share"] == pytest.approx(customers_retained / sizes[c])
    for (c, k), net in revenue.items():
        # each amount is summed rounded to a millionth (byte-identical sums on any thread count)
        assert overall.loc[(str(c), k), "net_revenue"] == pytest.approx(net, abs=1e-4)
    assert (overall.xs(0, level="months_since")["customer_share"] == 1.0).all()  # everyone buys in month 0
    # per market: the markets' customers add up to the whole
    markets = found[found["market"] != OVERALL].groupby(["cohort", "months_since"])["customers"].sum()
    assert markets.reindex(overall.index).fillna(0).astype(int).equals(overall["customers"].astype(int))
