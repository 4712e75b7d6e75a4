"""Invariants of the feature engine on random transaction sets (hypothesis), against the pandas oracle."""

from __future__ import annotations

import datetime as dt

import ibis
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

from common.config import HorizonsConfig
from features.snapshots import build_snapshots, sources_from_frames
from tests.features.reference import CORE, reference_rfm

START = pd.Timestamp("2025-01-01")
BACKEND = ibis.duckdb.connect()  # one in-process database for every example
SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])

row = st.tuples(
    st.sampled_from(["a", "b", "c", "d"]),
    st.integers(0, 400 * 86_400 - 1),  # seconds after START
    st.one_of(st.floats(-50, 500, allow_nan=False, allow_infinity=False).map(lambda x: round(x, 2)),
              st.just(0.0)),
)
cutoff_day = st.integers(1, 400)


def _frame(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "seconds", "amount"])
    frame["ts"] = (START + pd.to_timedelta(frame["seconds"], unit="s")).astype("datetime64[us]")
    frame["order_id"] = [f"o{i}" for i in range(len(frame))]
    return frame.drop(columns="seconds")


def _engine(frame: pd.DataFrame, cutoff: dt.date) -> pd.DataFrame:
    snap = build_snapshots(sources_from_frames({"transactions": frame}, BACKEND), [cutoff], HorizonsConfig())
    return snap.set_index("customer_id")


def _cutoff(day: int) -> dt.date:
    return (START + pd.Timedelta(days=day)).date()


@SETTINGS
@given(st.lists(row, min_size=1, max_size=40), cutoff_day)
def test_engine_equals_the_pandas_oracle(rows, day):
    frame, cutoff = _frame(rows), _cutoff(day)
    expected = reference_rfm(frame, cutoff)
    got = _engine(frame, cutoff) if len(expected) else pd.DataFrame(columns=CORE)
    if not len(expected):
        assert got.empty
        return
    assert_frame_equal(got[CORE], expected[CORE], check_dtype=False, check_index_type=False, rtol=1e-9)


@SETTINGS
@given(st.lists(row, min_size=1, max_size=30), st.lists(row, min_size=1, max_size=15), cutoff_day)
def test_rows_at_or_after_the_cutoff_change_nothing(rows, later, day):
    frame, cutoff = _frame(rows), _cutoff(day)
    t = pd.Timestamp(cutoff)
    late = _frame(later)
    # move the extra rows to the cutoff or after it (the first one exactly at the cutoff)
    late["ts"] = (t + pd.to_timedelta([0] + [r[1] for r in later[1:]], unit="s")).astype("datetime64[us]")
    late["order_id"] = [f"late{i}" for i in range(len(late))]
    before = _engine(frame, cutoff) if (frame["ts"] < t).any() else None
    after = _engine(pd.concat([frame, late], ignore_index=True), cutoff) if before is not None else None
    if before is not None:
        assert_frame_equal(before, after)


@SETTINGS
@given(st.lists(row, min_size=2, max_size=40), cutoff_day, st.randoms(use_true_random=False))
def test_shuffling_rows_changes_nothing(rows, day, rnd):
    frame, cutoff = _frame(rows), _cutoff(day)
    if not (frame["ts"] < pd.Timestamp(cutoff)).any():
        return
    shuffled = frame.sample(frac=1, random_state=rnd.randint(0, 2**31))
    assert_frame_equal(_engine(frame, cutoff), _engine(shuffled, cutoff))


@SETTINGS
@given(st.lists(row, min_size=2, max_size=40), cutoff_day)
def test_a_customers_features_depend_only_on_their_own_rows(rows, day):
    frame, cutoff = _frame(rows), _cutoff(day)
    full = _engine(frame, cutoff) if (frame["ts"] < pd.Timestamp(cutoff)).any() else pd.DataFrame()
    within_snapshot = [c for c in full.columns if c.endswith("_score") or c == "rfm_segment"]  # ranks
    for customer in full.index:
        alone = _engine(frame[frame["customer_id"] == customer], cutoff)
        assert_frame_equal(full.loc[[customer]].drop(columns=within_snapshot),
                           alone.drop(columns=within_snapshot), check_dtype=False)


@SETTINGS
@given(st.lists(row, min_size=1, max_size=30), cutoff_day, st.integers(1, 120), st.integers(1, 400))
def test_no_label_window_reaches_past_the_data(rows, day, churn_days, cltv_days):
    """Whatever the cutoff and horizons, a label exists only when [t, t + H) ends inside the data."""
    from common.errors import DataError
    from features.snapshots import latest_labeled_cutoff

    frame, cutoff = _frame(rows), _cutoff(day)
    if not (frame["ts"] < pd.Timestamp(cutoff)).any():
        return
    src = sources_from_frames({"transactions": frame}, BACKEND)
    horizons = HorizonsConfig(churn_days=churn_days, cltv_days=cltv_days)
    end = src.last_day + dt.timedelta(days=1)
    if cutoff > latest_labeled_cutoff(src.last_day, churn_days):
        try:
            build_snapshots(src, [cutoff], horizons, with_labels=True)
        except DataError:
            return
        raise AssertionError("an incomplete churn window was labeled")
    snap = build_snapshots(src, [cutoff], horizons, with_labels=True)
    assert cutoff + dt.timedelta(days=churn_days) <= end
    labeled = snap["churned"].notna() | snap["reactivated"].notna()
    assert labeled.all() or snap.empty
    has_cltv = snap["future_net_revenue"].notna()
    assert (~has_cltv).all() if cutoff + dt.timedelta(days=cltv_days) > end else has_cltv.all()
