"""Hand-worked snapshots: every feature family at one cutoff, with the numbers worked out in the comments.

The cutoff is 2026-01-10 (exclusive): rows at 2026-01-10 00:00:00 or later never count, a row at
2026-01-09 23:59:59 does.
"""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from common.config import HorizonsConfig
from features.definitions import RFM_GRID
from features.snapshots import build_snapshots, cutoff_schedule, latest_labeled_cutoff, sources_from_frames
from common.config import SnapshotsConfig

CUTOFF = dt.date(2026, 1, 10)


def _dt(values):
    return pd.to_datetime(pd.Series(values), format="ISO8601").astype("datetime64[us]")


def _tx(rows):
    frame = pd.DataFrame(rows, columns=["customer_id", "ts", "amount", "category", "channel", "discount"])
    frame["ts"] = _dt(frame["ts"])
    frame["order_id"] = [f"o{i}" for i in range(len(frame))]
    return frame


TRANSACTIONS = _tx([
    # A: purchase days 01-01 (two orders), 01-04, 01-09; a refund on 01-05; two orders at/after the cutoff
    ("A", "2026-01-01 10:00:00", 10.0, "food", "web", 0.0),
    ("A", "2026-01-01 15:00:00", 5.0, "toys", "app", 1.0),
    ("A", "2026-01-04 09:00:00", 20.0, "food", "web", 0.0),
    ("A", "2026-01-05 12:00:00", -5.0, "toys", "app", 0.0),
    ("A", "2026-01-09 23:59:59", 30.0, "books", "web", 0.0),   # one second before the cutoff: counts
    ("A", "2026-01-10 00:00:00", 100.0, "food", "web", 0.0),   # exactly at the cutoff: excluded
    ("A", "2026-01-10 00:00:01", 100.0, "food", "web", 0.0),   # one second after: excluded
    # B: a single purchase 101 days before the cutoff
    ("B", "2025-10-01 08:00:00", 100.0, "food", "store", 0.0),
    # C: first purchase exactly at the cutoff: not in the snapshot
    ("C", "2026-01-10 00:00:00", 50.0, "food", "web", 0.0),
    # D: two purchases, 360 and 21 days before the cutoff
    ("D", "2025-01-15 12:00:00", 60.0, "food", "store", 0.0),
    ("D", "2025-12-20 12:00:00", 40.0, "food", "store", 0.0),
])


def _snapshot(frames, cutoff=CUTOFF, **kw):
    snap = build_snapshots(sources_from_frames(frames), [cutoff], HorizonsConfig(), **kw)
    return snap.set_index("customer_id")


def test_transaction_features_by_hand():
    snap = _snapshot({"transactions": TRANSACTIONS})
    assert list(snap.index) == ["A", "B", "D"]  # C's only purchase is at the cutoff
    expected = pd.DataFrame({
        # A: purchase days 01-01, 01-04, 01-09 -> frequency 2, recency 8, T = 01-09 - 01-01 = 8
        # B: one purchase -> frequency 0, recency 0, T = 01-09 - 10-01 = 100
        # D: 2025-01-15 and 2025-12-20 -> recency 339, T = 2026-01-09 - 2025-01-15 = 359
        "frequency": [2, 0, 1], "recency": [8, 0, 339], "T": [8, 100, 359],
        # A: repeat days' values (20 + 30) / 2; B: 0 (no repeat); D: 40
        "monetary_value": [(20.0 + 30.0) / 2, 0.0, 40.0],
        "days_since_last_purchase": [1, 101, 21],
        "orders": [4, 1, 2],
        "net_spend": [10 + 5 + 20 - 5 + 30.0, 100.0, 100.0],
        "avg_order_value": [65 / 4, 100.0, 50.0],
        "orders_30d": [4, 0, 1], "orders_90d": [4, 0, 1], "orders_180d": [4, 1, 1], "orders_365d": [4, 1, 2],
        "net_spend_30d": [60.0, 0.0, 40.0], "net_spend_365d": [60.0, 100.0, 100.0],
        # orders in the last 90 days over the 90 before (B's purchase is 101 days back; A has none before)
        "orders_trend_90d": [math.nan, 0.0, math.nan],
        # gaps: A 3 and 5 days -> mean 8 / 2 = 4, sample std sqrt(2); D one gap of 339 (no std)
        "gap_mean_days": [4.0, math.nan, 339.0],
        "gap_std_days": [math.sqrt(2), math.nan, math.nan],
        "gap_cv": [math.sqrt(2) / 4, math.nan, math.nan],
        "days_overdue": [1 - 4.0, math.nan, 21 - 339.0],
        "overdue_ratio": [1 / 4, math.nan, 21 / 339],
        "refund_rate": [1 / 4, 0.0, 0.0],
        "discount_share": [1 / 4, 0.0, 0.0],
        "channel_share_web": [3 / 4, 0.0, 0.0], "channel_share_store": [0.0, 1.0, 1.0],
        "distinct_categories": [3, 1, 1],
    }, index=pd.Index(["A", "B", "D"], name="customer_id"))
    assert_frame_equal(snap[expected.columns], expected, check_dtype=False)
    assert snap["cutoff"].eq(CUTOFF).all()
    # optional tables that are not configured give no columns at all (never zeros that look real)
    for absent in ("open_tickets", "last_nps", "web_sessions_30d", "unsubscribed", "subscription_plan",
                   "country"):
        assert absent not in snap.columns


def test_a_customer_appears_once_his_first_purchase_is_before_the_cutoff():
    snap = _snapshot({"transactions": TRANSACTIONS}, cutoff=dt.date(2026, 1, 11))
    assert "C" in snap.index and snap.loc["C", "T"] == 0 and snap.loc["C", "days_since_last_purchase"] == 1
    assert snap.loc["A", "orders"] == 6  # both orders of 2026-01-10 now count


def _optional_frames():
    customers = pd.DataFrame({"customer_id": ["A", "B", "D"], "country": ["CZ", "GR", "US"],
                              "signup_date": _dt(["2025-12-25", "2025-10-01", "2025-01-15"]),
                              "marketing_consent": [True, False, True]})
    tickets = pd.DataFrame({
        "customer_id": ["A", "A", "A", "A"], "ticket_id": ["t1", "t2", "t3", "t4"],
        "opened_at": _dt(["2025-12-01", "2026-01-05", "2026-01-08", "2026-01-10 00:00:00"]),
        "resolved_at": _dt(["2025-12-05", None, "2026-01-12", None]),
        "csat": [2.0, None, 5.0, None]})
    surveys = pd.DataFrame({"customer_id": ["A", "A", "A"],
                            "ts": _dt(["2025-11-01", "2026-01-09 18:00", "2026-01-10 00:00:00"]),
                            "nps": [9.0, 3.0, 10.0], "csat": [4.0, None, None], "ces": [2.0, None, 7.0]})
    web = pd.DataFrame({"customer_id": ["A"] * 4,
                        "ts": _dt(["2026-01-05", "2026-01-06", "2025-12-01", "2026-01-10 00:00:00"]),
                        "pages": [1, 2, 3, 4], "duration": [10.0, 20.0, 30.0, 40.0]})
    email = pd.DataFrame({
        "customer_id": ["A", "A", "A", "A", "A", "A", "B"],
        "ts": _dt(["2026-01-02 09:00", "2026-01-02 10:00", "2026-01-03", "2025-11-01", "2025-09-01",
                              "2026-01-10 00:00:00", "2025-06-01"]),
        "event": ["sent", "open", "click", "sent", "open", "unsubscribe", "unsubscribe"]})
    subscriptions = pd.DataFrame({
        "customer_id": ["A", "A"], "subscription_id": ["s1", "s2"], "plan": ["premium", "plus"],
        "started_at": _dt(["2025-06-01", "2025-12-15"]),
        "cancelled_at": _dt(["2025-12-15", None]), "monthly_amount": [40.0, 20.0]})
    return {"transactions": TRANSACTIONS, "customers": customers, "support_tickets": tickets, "surveys": surveys,
            "web_sessions": web, "email_events": email, "subscriptions": subscriptions}


def test_optional_table_features_by_hand():
    snap = _snapshot(_optional_frames())
    a, b = snap.loc["A"], snap.loc["B"]
    # customers: signup 2025-12-25 -> 16 days of tenure at 2026-01-10
    assert (a["country"], a["signup_cohort"], a["tenure_days"]) == ("CZ", "2025-12", 16)
    # tickets: t1 (40 days ago), t2, t3 in the last 90 days; t4 opened at the cutoff does not count.
    # Open at the cutoff: t2 (unresolved) and t3 (resolved only after the cutoff). CSAT known: t1's 2 only.
    assert (a["tickets_90d"], a["open_tickets"], a["mean_ticket_csat"]) == (3, 2, 2.0)
    assert (b["tickets_90d"], b["open_tickets"]) == (0, 0) and math.isnan(b["mean_ticket_csat"])
    # surveys: last NPS before the cutoff is 3 (on 01-09, 1 day before): detractor; the 10 at the cutoff is unseen
    assert (a["last_nps"], a["nps_group"], a["days_since_last_nps"], a["last_ces"]) == (3.0, "detractor", 1, 2.0)
    assert b["nps_group"] is None or pd.isna(b["nps_group"])
    # web: two sessions in the last 30 days, one in the 30 before (40 days ago), the one at the cutoff unseen
    assert (a["web_sessions_30d"], a["web_sessions_prev_30d"], a["web_sessions_trend_30d"]) == (2, 1, 2.0)
    # e-mail: sent 01-02 and 11-01 (70 days ago) -> 2 sent, 1 open, 1 click in 90 days; the open of 09-01 is
    # 131 days ago (the 90 before); A's unsubscribe at the cutoff is unseen; B unsubscribed in June
    assert (a["email_sent_90d"], a["email_opens_90d"], a["email_clicks_90d"], a["email_opens_prev_90d"]) == (2, 1, 1, 1)
    assert (a["email_open_rate_90d"], a["email_open_trend_90d"], a["unsubscribed"]) == (0.5, 1.0, False)
    assert b["unsubscribed"]
    # subscriptions: plus (20.0) since 12-15, a cheaper plan than premium 26 days ago; first started 223 days ago
    assert (a["subscription_plan"], a["subscription_monthly_amount"], a["recent_downgrade"]) == ("plus", 20.0, True)
    assert a["months_subscribed"] == pytest.approx(223 / 30.4375)
    assert pd.isna(b["subscription_plan"]) and not b["recent_downgrade"]


def test_labels_by_hand_and_never_beyond_the_data():
    horizons = HorizonsConfig(churn_days=3, cltv_days=5, activity_window_days=100)
    src = sources_from_frames({"transactions": TRANSACTIONS})
    assert src.last_day == dt.date(2026, 1, 10)
    # the latest cutoff whose 3-day window [t, t+3) ends inside the data: t + 3 <= 01-10 + 1
    assert latest_labeled_cutoff(src.last_day, 3) == dt.date(2026, 1, 8)
    snap = build_snapshots(src, [dt.date(2026, 1, 8)], horizons, with_labels=True).set_index("customer_id")
    # A bought on 01-09 and 01-10 -> not churned; B and D are lapsed (B: 99 days, D: 19 days -> D active)
    assert snap.loc["A", "churned"] == False and snap.loc["A", "is_active"]  # noqa: E712
    assert snap.loc["D", "is_active"] and snap.loc["D", "churned"] == True  # noqa: E712
    assert snap.loc["B", "is_active"] and snap.loc["B", "churned"] == True  # noqa: E712  (99 <= 100 days)
    # A's next order is on 01-09, one day after the cutoff; D and B have none in the window
    assert snap.loc["A", "days_to_next_order"] == 1 and pd.isna(snap.loc["D", "days_to_next_order"])
    # CLTV needs [01-08, 01-13), which ends after the data: no label
    assert snap["future_net_revenue"].isna().all()
    with pytest.raises(Exception, match="cannot label cutoff 2026-01-09.*latest labeled cutoff is 2026-01-08"):
        build_snapshots(src, [dt.date(2026, 1, 9)], horizons, with_labels=True)

    snap = build_snapshots(src, [dt.date(2026, 1, 5)], horizons, with_labels=True).set_index("customer_id")
    # window [01-05, 01-10) for CLTV: A's refund -5 and 30 on 01-09 -> 25; 01-10 rows are outside
    assert snap.loc["A", "future_net_revenue"] == 25.0
    assert snap.loc["B", "reactivated"] is None or pd.isna(snap.loc["B", "reactivated"])  # B is active (96 d)


def test_winback_label_for_lapsed_customers():
    horizons = HorizonsConfig(churn_days=30, cltv_days=30, activity_window_days=60)
    tx = _tx([("L", "2025-01-01", 10.0, "food", "web", 0.0), ("L", "2025-06-10", 10.0, "food", "web", 0.0),
              ("M", "2025-01-01", 10.0, "food", "web", 0.0), ("Z", "2025-07-30", 1.0, "food", "web", 0.0)])
    snap = build_snapshots(sources_from_frames({"transactions": tx}), [dt.date(2025, 6, 1)], horizons,
                           with_labels=True).set_index("customer_id")
    # both lapsed at 06-01 (151 days > 60); L comes back on 06-10 (inside 30 days), M does not
    assert not snap.loc["L", "is_active"] and snap.loc["L", "reactivated"] == True  # noqa: E712
    assert snap.loc["L", "days_to_next_order"] == 9  # 06-10 is 9 days after 06-01
    assert snap.loc["M", "reactivated"] == False and pd.isna(snap.loc["M", "churned"])  # noqa: E712


def test_contractual_churn_ignores_plan_changes():
    frames = _optional_frames()
    # a late purchase by Z extends the data to 2026-03-01, so a 30-day window from 2026-01-10 is complete
    frames["transactions"] = pd.concat([TRANSACTIONS, _tx([("Z", "2026-03-01", 1.0, "food", "web", 0.0)])])
    frames["subscriptions"] = pd.DataFrame({
        "customer_id": ["A", "A", "D"], "subscription_id": ["s1", "s2", "s3"], "plan": ["premium", "plus", "basic"],
        "started_at": _dt(["2025-06-01", "2026-01-20", "2025-02-01"]),
        "cancelled_at": _dt(["2026-01-20", None, "2026-01-29"]), "monthly_amount": [40.0, 20.0, 9.0]})
    snap = build_snapshots(sources_from_frames(frames), [CUTOFF], HorizonsConfig(churn_days=30),
                           with_labels=True).set_index("customer_id")
    # A's premium row ends on the day plus starts: a plan change, not churn. D cancels 19 days later: churn.
    assert snap.loc["A", "subscription_churned"] == False  # noqa: E712
    assert snap.loc["D", "subscription_churned"] == True  # noqa: E712
    assert pd.isna(snap.loc["B", "subscription_churned"])  # no subscription


def test_rfm_segment_grid_covers_every_score_pair_with_the_eleven_named_segments():
    names = {name for row in RFM_GRID.values() for name in row}
    assert names == {"Champions", "Loyal", "Potential Loyalist", "New", "Promising", "Need Attention",
                     "About to Sleep", "At Risk", "Can't Lose Them", "Hibernating", "Lost"}
    assert sorted(RFM_GRID) == [1, 2, 3, 4, 5] and all(len(row) == 5 for row in RFM_GRID.values())


def test_rfm_scores_by_hand():
    # five customers, one order each on a different day, spend 10..50: R and M scores are 1..5 in order;
    # F ties (1 order each) all share the lowest score
    tx = _tx([(f"c{i}", f"2026-01-0{i}", 10.0 * i, "food", "web", 0.0) for i in range(1, 6)])
    snap = _snapshot({"transactions": tx}, cutoff=dt.date(2026, 1, 9))
    assert snap["r_score"].tolist() == [1, 2, 3, 4, 5]  # c5 bought most recently
    assert snap["m_score"].tolist() == [1, 2, 3, 4, 5]
    assert snap["f_score"].tolist() == [1] * 5
    assert snap["rfm_segment"].tolist() == ["Lost", "Hibernating", "About to Sleep", "Promising", "New"]


def test_cutoff_schedule():
    assert cutoff_schedule(dt.date(2026, 8, 3), SnapshotsConfig(cadence="monthly", lookback_months=3)) == [
        dt.date(2026, 6, 1), dt.date(2026, 7, 1), dt.date(2026, 8, 1)]
    weekly = cutoff_schedule(dt.date(2026, 8, 3), SnapshotsConfig(cadence="weekly", lookback_months=1))
    assert all(d.weekday() == 0 for d in weekly) and weekly[-1] == dt.date(2026, 8, 3)


def test_money_sums_do_not_depend_on_the_order_rows_are_added():
    # As floats, (0.1 + 0.2) + 0.3 = 0.6000000000000001 but 0.1 + (0.2 + 0.3) = 0.6: a parallel engine adds in
    # any order, which once changed LightGBM's trees between runs. Sums in whole millionths are exact.
    tx = _tx([("A", "2025-12-01", 0.1, "food", "web", 0.0), ("A", "2025-12-02", 0.2, "food", "web", 0.0),
              ("A", "2025-12-03", 0.3, "food", "web", 0.0)])
    snap = build_snapshots(sources_from_frames({"transactions": tx}), [CUTOFF], HorizonsConfig())
    assert snap.loc[0, "net_spend"] == 0.6 and snap.loc[0, "net_spend_90d"] == 0.6
    assert snap.loc[0, "avg_order_value"] == 0.6 / 3


def test_a_customer_sample_keeps_every_cutoff_of_the_same_customers_on_every_run():
    """spark.training_sample_customers: the sample is drawn in the engine by the hash of customer_id, so a stack
    holds every cutoff of each sampled customer, the same customers every time, and exactly as many as asked."""
    rows = [(f"k{i:03d}", f"2025-{1 + i % 12:02d}-{1 + i % 27:02d} 10:00:00", 10.0 + i, "food", "web", 0.0)
            for i in range(120)]
    src = sources_from_frames({"transactions": _tx(rows)})
    cutoffs = [dt.date(2025, 10, 1), dt.date(2026, 1, 1)]
    whole = build_snapshots(src, cutoffs, HorizonsConfig())
    sample = build_snapshots(src, cutoffs, HorizonsConfig(), sample_customers=25)
    assert sample["customer_id"].nunique() == 25
    # every row of a sampled customer is there, identical to the whole stack's
    kept = whole[whole["customer_id"].isin(sample["customer_id"])].reset_index(drop=True)
    assert_frame_equal(sample, kept)
    assert set(kept.groupby("customer_id")["cutoff"].nunique()) >= {2}  # customers seen at both cutoffs kept both
    again = build_snapshots(src, cutoffs, HorizonsConfig(), sample_customers=25)
    assert_frame_equal(again, sample)
    everyone = build_snapshots(src, cutoffs, HorizonsConfig(), sample_customers=10_000)
    assert_frame_equal(everyone, whole)
