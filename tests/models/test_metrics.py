"""Metrics against numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.metrics import (classification_metrics, duration_metrics, decile_mape, decile_table, expected_calibration_error,
                            median_abs_error_days, normalized_gini, regression_metrics, top_decile_capture,
                            top_decile_lift)


def test_normalized_gini_by_hand():
    actual = np.array([3.0, 0.0, 1.0])
    # Ordered by actual (3, 1, 0): cumulative shares .75, 1, 1 minus 1/3, 2/3, 1 -> sum .75, / 3 = .25
    assert normalized_gini(actual, actual) == pytest.approx(1.0)
    # Ordered 3, 0, 1: .75, .75, 1 minus 1/3, 2/3, 1 -> .5 / 3 = 1/6, normalised by .25 -> 2/3
    assert normalized_gini(actual, np.array([0.9, 0.5, 0.1])) == pytest.approx(2 / 3)
    # Ordered 0, 1, 3: 0, .25, 1 minus 1/3, 2/3, 1 -> -.75 / 3 = -.25 -> -1
    assert normalized_gini(actual, np.array([0.1, 0.9, 0.5])) == pytest.approx(-1.0)


def test_ece_by_hand():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.15, 0.8, 0.95])
    # bins [.1,.2): mean p .125, rate 0, weight 1/2; [.8,.9): |1 - .8| x 1/4; [.9,1]: |1 - .95| x 1/4
    assert expected_calibration_error(y, p) == pytest.approx(0.5 * 0.125 + 0.25 * 0.2 + 0.25 * 0.05)
    assert expected_calibration_error(np.array([1, 0]), np.array([1.0, 0.0])) == 0.0  # p = 1 is in the last bin


def test_lift_and_capture_by_hand():
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    score = np.array([0.9, 0.8, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2])
    # top 10% = 1 customer (score .9), a positive: rate 1 against base rate 2/10 -> lift 5; it holds 1 of 2 positives
    assert top_decile_lift(y, score) == pytest.approx(5.0)
    assert top_decile_capture(y, score) == pytest.approx(0.5)


def test_decile_mape_and_total_error_by_hand():
    actual = np.array([10.0, 0.0, 20.0, 30.0])
    predicted = np.array([1.0, 2.0, 3.0, 4.0])
    pred, act = decile_table(actual, predicted, n_bins=2)
    np.testing.assert_allclose(pred, [1.5, 3.5])
    np.testing.assert_allclose(act, [5.0, 25.0])
    # |1.5 - 5| / 5 = .7 and |3.5 - 25| / 25 = .86 -> mean .78
    assert decile_mape(actual, predicted, n_bins=2) == pytest.approx(0.78)
    assert regression_metrics(actual, predicted)["total_error"] == pytest.approx(10 / 60 - 1)


def test_classification_metrics_keys_and_one_class():
    m = classification_metrics(np.array([0, 1, 0, 1]), np.array([0.2, 0.7, 0.4, 0.9]))
    assert m["roc_auc"] == 1.0 and m["base_rate"] == 0.5 and m["n"] == 4
    assert m["brier"] == pytest.approx((0.04 + 0.09 + 0.16 + 0.01) / 4)
    assert np.isnan(classification_metrics(np.array([1, 1]), np.array([0.2, 0.3]))["roc_auc"])


def test_median_abs_error_ignores_unknown_outcomes():
    assert median_abs_error_days(np.array([10, np.nan, 30, 5]), np.array([12, 99, 20, 5])) == 2.0


def test_duration_metrics_score_whole_days_by_hand():
    # estimates 12.4 -> 12, 18.6 -> 19, 4.5 -> 4 (to even), 40 against 10, 20, 5, unknown: errors 2, 1, 1
    m = duration_metrics(np.array([10, 20, 5, np.nan]), np.array([12.4, 18.6, 4.5, 40.0]))
    assert m["median_abs_error_days"] == 1.0 and m["mean_abs_error_days"] == pytest.approx(4 / 3)
    assert m["median_abs_error_days_unrounded"] == pytest.approx(1.4)  # |2.4|, |1.4|, |0.5|
    assert m["within_7_days"] == 1.0 and m["n"] == 3


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1000, allow_nan=False), min_size=3, max_size=40), st.integers(0, 2**32 - 1))
def test_normalized_gini_is_at_most_one_and_scale_free(values, seed):
    actual = np.array(values)
    if actual.sum() <= 0 or len(np.unique(actual)) < 2:
        return
    predicted = np.random.default_rng(seed).random(len(actual))
    g = normalized_gini(actual, predicted)
    assert g <= 1 + 1e-9
    assert normalized_gini(actual, predicted * 7 + 3) == pytest.approx(g)  # only the order of predictions counts


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=60), st.integers(0, 2**32 - 1))
def test_ece_is_between_zero_and_one(p, seed):
    p = np.array(p)
    y = (np.random.default_rng(seed).random(len(p)) < 0.5).astype(float)
    assert 0 <= expected_calibration_error(y, p) <= 1
