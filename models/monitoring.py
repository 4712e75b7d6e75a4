"""Drift of the scored snapshot against what each champion was trained on: the population stability index (PSI)
of every model feature and of the model's score, with bins from training, and the missing-value rates.

At training, :func:`profile` records for each feature (and the score) the decile edges of its training values
(distinct edges only; a categorical feature: its categories) and the share of the training rows in each bin, plus
the share of missing values; it travels with the model (``ScoringModel.reference``). At scoring, :func:`drift`
puts the scored customers of the model's population in the same bins and computes

    PSI = sum over bins of (current share - training share) x ln(current share / training share)

on the non-missing values (each share floored at ``1e-4`` so that an empty bin is finite). A PSI at or above
``scoring.drift_warn_psi`` (0.1) is a warning, at or above ``scoring.drift_alert_psi`` (0.25) an alert (the
conventional reading: below 0.1 stable, 0.1-0.25 a shift worth a look, above 0.25 a major shift).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BINS = 10
FLOOR = 1e-4
PROFILE_ROWS = 200_000  # a deterministic sample of the training rows is enough for deciles
SCORE = "score"


def _column_profile(values: pd.Series) -> dict:
    missing = float(values.isna().mean()) if len(values) else 0.0
    present = values.dropna()
    if present.empty:
        return {"kind": "numeric", "edges": [], "shares": [], "missing": missing}
    if not pd.api.types.is_numeric_dtype(present) or pd.api.types.is_bool_dtype(present):
        shares = present.astype(str).value_counts(normalize=True)
        return {"kind": "categorical", "categories": [str(c) for c in shares.index],
                "shares": [float(s) for s in shares.to_numpy()], "missing": missing}
    numbers = present.to_numpy(dtype=float)
    edges = np.unique(np.quantile(numbers, np.linspace(0, 1, BINS + 1)[1:-1]))
    return {"kind": "numeric", "edges": [float(e) for e in edges],
            "shares": [float(s) for s in _numeric_shares(numbers, edges)], "missing": missing}


def _numeric_shares(numbers: np.ndarray, edges) -> np.ndarray:
    """Shares of ``numbers`` in the bins (-inf, e1], (e1, e2], ..., (ek, inf)."""
    index = np.searchsorted(np.asarray(edges, dtype=float), numbers, side="left")
    return np.bincount(index, minlength=len(edges) + 1) / max(len(numbers), 1)


def profile(frame: pd.DataFrame, features: list[str], score, seed: int = 0) -> dict:
    """The reference distributions of ``features`` and of the model's ``score(rows)`` over the training rows
    ``frame`` (at most :data:`PROFILE_ROWS` of them, a fixed sample)."""
    if len(frame) > PROFILE_ROWS:
        keep = np.sort(np.random.default_rng(seed).choice(len(frame), PROFILE_ROWS, replace=False))
        frame = frame.iloc[keep]
    out = {c: _column_profile(frame[c]) for c in features if c in frame.columns}
    out[SCORE] = _column_profile(pd.Series(np.asarray(score(frame), dtype=float)))
    return out


def psi(reference: list[float], current: list[float]) -> float:
    """The population stability index of two share vectors over the same bins."""
    r = np.maximum(np.asarray(reference, dtype=float), FLOOR)
    c = np.maximum(np.asarray(current, dtype=float), FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def _current(reference: dict, values: pd.Series) -> tuple[list[float], float]:
    missing = float(values.isna().mean()) if len(values) else 0.0
    present = values.dropna()
    if reference["kind"] == "categorical":
        text = present.astype(str)
        shares = [float((text == c).mean()) if len(text) else 0.0 for c in reference["categories"]]
        unseen = float((~text.isin(reference["categories"])).mean()) if len(text) else 0.0
        return shares + [unseen], missing
    return list(_numeric_shares(present.to_numpy(dtype=float), reference["edges"])), missing


def drift(reference: dict, frame: pd.DataFrame, scores: np.ndarray, warn: float, alert: float) -> pd.DataFrame:
    """One row per profiled column (the features, then ``score``): ``column``, ``psi``, ``missing_training``,
    ``missing_now``, ``level`` (``ok``, ``warn``, ``alert``; ``no data`` when either side has no values)."""
    rows = []
    for column, ref in reference.items():
        values = pd.Series(np.asarray(scores, dtype=float)) if column == SCORE else (
            frame[column] if column in frame.columns else pd.Series(np.nan, index=frame.index))
        current, missing = _current(ref, values)
        training = ref["shares"] + ([0.0] if ref["kind"] == "categorical" else [])
        if not ref["shares"] or values.dropna().empty:
            value, level = np.nan, "no data"
        else:
            value = psi(training, current)
            level = "alert" if value >= alert else "warn" if value >= warn else "ok"
        rows.append({"column": column, "psi": value, "missing_training": ref["missing"], "missing_now": missing,
                     "level": level})
    return pd.DataFrame(rows, columns=["column", "psi", "missing_training", "missing_now", "level"])
