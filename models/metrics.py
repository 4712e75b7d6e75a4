"""Evaluation metrics of the churn, win-back, CLTV and next-order models, each a plain function of arrays.

Probabilistic metrics use scikit-learn where it has them (ROC AUC, average precision, Brier score); the others are
defined here, with the definition in each docstring, because their conventions differ between sources.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


def _arrays(y, score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float)
    score = np.asarray(score, dtype=float)
    if y.shape != score.shape or y.ndim != 1:
        raise ValueError(f"expected two 1-d arrays of the same length, got shapes {y.shape} and {score.shape}")
    if len(y) == 0:
        raise ValueError("cannot evaluate on zero rows")
    return y, score


def expected_calibration_error(y, p, n_bins: int = 10) -> float:
    """ECE: ``sum_b (n_b / n) |mean(y in b) - mean(p in b)|`` over ``n_bins`` equal-width bins of ``p`` on [0, 1].

    The right edge of the last bin is closed (p = 1.0 falls in it).
    """
    mean_p, rate, count = calibration_curve(y, p, n_bins)
    return float(np.sum(count / count.sum() * np.abs(rate - mean_p)))


def calibration_curve(y, p, n_bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty equal-width bin: mean predicted probability, observed rate, and count (for plots)."""
    y, p = _arrays(y, p)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    present = np.unique(bins)
    return (np.array([p[bins == b].mean() for b in present]), np.array([y[bins == b].mean() for b in present]),
            np.array([(bins == b).sum() for b in present]))


def _top_share(score: np.ndarray, share: float) -> np.ndarray:
    """Boolean mask of the ``ceil(share * n)`` highest scores (ties broken by position, stably)."""
    k = int(np.ceil(share * len(score)))
    order = np.argsort(-score, kind="stable")
    mask = np.zeros(len(score), dtype=bool)
    mask[order[:k]] = True
    return mask


def top_decile_lift(y, score, share: float = 0.1) -> float:
    """Positive rate among the top ``share`` of scores divided by the overall positive rate."""
    y, score = _arrays(y, score)
    base = y.mean()
    return float(y[_top_share(score, share)].mean() / base) if base > 0 else float("nan")


def top_decile_capture(y, score, share: float = 0.1) -> float:
    """Share of all positives that fall in the top ``share`` of scores."""
    y, score = _arrays(y, score)
    total = y.sum()
    return float(y[_top_share(score, share)].sum() / total) if total > 0 else float("nan")


def gain_curve(y, score) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative gain: share of customers contacted (highest scores first) vs share of positives captured."""
    y, score = _arrays(y, score)
    order = np.argsort(-score, kind="stable")
    captured = np.concatenate([[0.0], np.cumsum(y[order]) / max(y.sum(), 1e-300)])
    return np.linspace(0, 1, len(y) + 1), captured


def classification_metrics(y, p) -> dict[str, float]:
    """ROC AUC, PR AUC (average precision), Brier score, ECE, top-decile lift and capture, base rate and size."""
    y, p = _arrays(y, p)
    one_class = len(np.unique(y)) < 2
    return {
        "roc_auc": float("nan") if one_class else float(roc_auc_score(y, p)),
        "pr_auc": float("nan") if one_class else float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, np.clip(p, 0, 1))),
        "ece": expected_calibration_error(y, np.clip(p, 0, 1)),
        "top_decile_lift": top_decile_lift(y, p),
        "top_decile_capture": top_decile_capture(y, p),
        "base_rate": float(y.mean()),
        "n": int(len(y)),
    }


def normalized_gini(actual, predicted) -> float:
    """Gini of ``actual`` ordered by ``predicted``, divided by the Gini of ``actual`` ordered by itself.

    With rows sorted by prediction (highest first, ties kept in input order), the Gini is
    ``sum_i (cumsum(actual)_i / sum(actual) - i / n)`` over ``i = 1..n``, divided by ``n`` (the Kaggle "Porto
    Seguro" definition). 1 is a perfect ranking, 0 a random one; negative actual values (refunds) are allowed.
    """
    actual, predicted = _arrays(actual, predicted)

    def gini(order_by: np.ndarray) -> float:
        order = np.argsort(-order_by, kind="stable")
        cumulative = np.cumsum(actual[order]) / actual.sum()
        return float((cumulative - np.arange(1, len(actual) + 1) / len(actual)).sum() / len(actual))

    return gini(predicted) / gini(actual)


def decile_table(actual, predicted, n_bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Mean predicted and mean actual value per decile of the prediction (decile 1 = lowest predictions).

    Rows are sorted by prediction (ties in input order) and cut into ``n_bins`` groups of sizes differing by at
    most one (``numpy.array_split``); fewer groups when there are fewer rows than ``n_bins``.
    """
    actual, predicted = _arrays(actual, predicted)
    order = np.argsort(predicted, kind="stable")
    groups = np.array_split(order, min(n_bins, len(order)))
    return (np.array([predicted[g].mean() for g in groups]), np.array([actual[g].mean() for g in groups]))


def decile_mape(actual, predicted, n_bins: int = 10) -> float:
    """Mean over deciles of the prediction of ``|mean predicted - mean actual| / |mean actual|``.

    Deciles whose actual mean is zero are left out of the mean (their relative error is undefined).
    """
    pred, act = decile_table(actual, predicted, n_bins)
    usable = act != 0
    return float(np.mean(np.abs(pred[usable] - act[usable]) / np.abs(act[usable]))) if usable.any() else float("nan")


def regression_metrics(actual, predicted) -> dict[str, float]:
    """Normalized Gini, Spearman rank correlation, decile MAPE and total error ``sum(pred) / sum(actual) - 1``."""
    actual, predicted = _arrays(actual, predicted)
    total = actual.sum()
    return {
        "normalized_gini": normalized_gini(actual, predicted),
        "spearman": float(_spearman(actual, predicted)),
        "decile_mape": decile_mape(actual, predicted),
        "total_error": float(predicted.sum() / total - 1) if total != 0 else float("nan"),
        "mean_actual": float(actual.mean()),
        "n": int(len(actual)),
    }


def median_abs_error_days(actual_days, predicted_days) -> float:
    """Median of ``|predicted - actual|`` in days over the rows where the actual is known (not NaN)."""
    actual, predicted = _arrays(actual_days, predicted_days)
    known = ~np.isnan(actual)
    return float(np.median(np.abs(predicted[known] - actual[known]))) if known.any() else float("nan")


def duration_metrics(actual_days, predicted_days) -> dict[str, float]:
    """How far estimates of a number of days (the next order) are from what happened, over the rows whose actual
    is known. An estimate is published as a date, so it is scored as one: rounded to the nearest whole day first.
    ``median_abs_error_days`` and ``mean_abs_error_days`` of those whole days, ``within_7_days`` the share at most 7
    days off, and ``median_abs_error_days_unrounded`` the median of the estimate before rounding, for comparison.
    """
    actual, predicted = _arrays(actual_days, predicted_days)
    known = ~np.isnan(actual) & ~np.isnan(predicted)
    if not known.any():
        return {"median_abs_error_days": float("nan"), "mean_abs_error_days": float("nan"),
                "within_7_days": float("nan"), "median_abs_error_days_unrounded": float("nan"), "n": 0}
    error = np.abs(np.rint(predicted[known]) - actual[known])
    return {"median_abs_error_days": float(np.median(error)), "mean_abs_error_days": float(error.mean()),
            "within_7_days": float((error <= 7).mean()),
            "median_abs_error_days_unrounded": float(np.median(np.abs(predicted[known] - actual[known]))),
            "n": int(known.sum())}


def _spearman(actual, predicted) -> float:
    from scipy import stats  # imported here: scipy.stats costs most of this module's import (`churn models`)

    return stats.spearmanr(actual, predicted).statistic
