"""Drift of the scored snapshot against the snapshots each champion was trained on: the population stability index
(PSI) of every model feature and of the model's score, with bins from training, overall and within each market,
and the missing-value rates.

At training, :func:`profile` takes the model's population at every one of its training cutoffs and records, for
each feature (and the score), the decile edges of the pooled training values (distinct edges only; a categorical
feature: its categories, and a bin for a category never seen), and then how many training rows fall in each bin
at each cutoff, for everyone and for each market (``country``), plus the missing values. It travels with the model
(``ScoringModel.reference``). At scoring, :func:`drift` puts the scored customers of the model's population in the
same bins and compares them with each training cutoff,

    PSI = sum over bins of (share now - share at the cutoff) x ln(share now / share at the cutoff)

on the non-missing values. The whole population is compared with its *nearest* training cutoff (the smallest
PSI), each market with its own customers at the cutoff the markets are nearest to (:func:`_calendar_cutoff`). A
PSI at or above ``scoring.drift_warn_psi`` (0.1) is a warning, at or above ``scoring.drift_alert_psi`` (0.25) an
alert (the conventional reading: below 0.1 stable, 0.1-0.25 a shift worth a look, above 0.25 a major shift).

Why each part is there (docs/reports.md has the figures):

- The nearest training snapshot, not the pooled rows: a snapshot is one date, and some features follow the
  calendar (a newsletter every 14 days sends every subscribed customer 6 or 7 mails in 90 days, depending on the
  date; seasons; a growing customer base). Against the pool of all training dates every single snapshot, each
  training snapshot included, looks drifted. A column alerts only when the scored customers are unlike the
  population at every date the model was trained on.
- Within each market: a change confined to one market moves the whole population's shares by that market's share
  of the customers, and PSI by about its square (a market of 28% whose prices triple moves the overall 90-day
  spend by a PSI of 0.03, its own customers' by 0.4). A market is not compared with its own nearest date: with
  few customers it can be read at only some dates, and the nearest of those can be the wrong phase of the
  calendar (an alert on nothing), while a market-wide change can hide behind a different season. The calendar
  moves every market alike, so the markets are compared at the one cutoff where the median market is closest to
  its own best; a change in one market cannot move that median.
- Too few values: two samples of one distribution have a PSI of about ``(1/n + 1/m) x chi2(bins - 1)``
  (Yurdakul 2018, "Statistical properties of the population stability index"). A column is judged against a
  training cutoff only when that noise stays below :data:`NOISE_PSI` (0.1, the conventional bound of a stable
  population, whatever thresholds are configured) with probability :data:`NOISE_QUANTILE`: with ten bins about
  560 values on each side. With fewer (a small market, few subscribers) its level is ``too few`` and its PSI is
  shown, not judged. The PSI reported is that of :func:`shares`, with half a row added to every bin, so that a
  rare bin which happens to be empty in a small group does not swing it; the cutoff compared with is chosen on
  the plain PSI (shares floored at :data:`FLOOR`), which does not depend on how many rows a cutoff has.
- Clock features (:data:`CLOCK_FEATURES`): days since a fixed event of the customer's past grow one for one with
  the calendar, so their distance to the newest training snapshot is the time since it (a full ``cltv_days`` for
  the CLTV model, whose labels need that window) in any business that is not as old as its customers' lives. Their
  PSI is reported with level ``trend`` and never warns; a change in who the customers are still shows in their
  orders, spend and recency.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BINS = 10
FLOOR = 1e-4
PROFILE_ROWS = 200_000  # a deterministic sample of the training rows is enough for deciles and per-cutoff shares
SCORE = "score"
MARKET = "country"  # drift is measured overall and within each value of this column
FORMAT = 2  # the profile layout drift() reads; a model with an older profile is measured once it is retrained
NOISE_QUANTILE, NOISE_PSI = 0.999, 0.1  # a PSI is read when sampling noise stays below 0.1 with this probability
PSEUDO_COUNT = 0.5  # added to every bin's rows before shares are taken (see shares)
# days (or months) since a fixed event of the customer's past: they grow with the calendar (see the docstring)
CLOCK_FEATURES = ("T", "days_since_first_purchase", "tenure_days", "months_subscribed")
COLUMNS = ["column", "market", "psi", "cutoff", "rows_now", "rows_training", "missing_training", "missing_now",
           "level"]


def _bins(values: pd.Series) -> dict:
    """The bins of a column from its pooled training values: decile edges, or categories by frequency."""
    present = values.dropna()
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        categories = present.astype(str).value_counts().index
        return {"kind": "categorical", "categories": [str(c) for c in categories]}
    numbers = present.to_numpy(dtype=float)
    edges = np.unique(np.quantile(numbers, np.linspace(0, 1, BINS + 1)[1:-1])) if len(numbers) else []
    return {"kind": "numeric", "edges": [float(e) for e in edges]}


def _bin_index(spec: dict, values: pd.Series) -> tuple[np.ndarray, np.ndarray, int]:
    """Per value, its bin (numeric: (-inf, e1], (e1, e2], ..., (ek, inf); categorical: the category's position, the
    last bin for a category never seen in training), whether it is present, and the number of bins."""
    present = values.notna().to_numpy()
    if spec["kind"] == "categorical":
        codes = _codes(_text(values), spec["categories"])
        n_bins = len(spec["categories"]) + 1
        return np.where(codes < 0, n_bins - 1, codes), present, n_bins
    numbers = values.to_numpy(dtype=float, na_value=np.nan)
    index = np.searchsorted(np.asarray(spec["edges"], dtype=float), np.nan_to_num(numbers), side="left")
    return index, present, len(spec["edges"]) + 1


def _codes(values: pd.Series, known: list) -> np.ndarray:
    """Position of each value in ``known`` (-1: missing or unknown)."""
    return pd.Index(known, dtype=object).get_indexer(values.astype(object).where(values.notna(), None)).astype(np.int64)


def _market_codes(frame: pd.DataFrame, markets: list[str]) -> np.ndarray:
    """Position of each row's market in ``markets`` (-1: none, or one not in the list)."""
    if MARKET not in frame.columns:
        return np.full(len(frame), -1, np.int64)
    return _codes(_text(frame[MARKET]), markets)


def _text(values: pd.Series) -> pd.Series:
    """``values`` as text, missing ones as None."""
    return values.astype(str).where(values.notna(), None)


def profile(frame: pd.DataFrame, features: list[str], score, seed: int = 0) -> dict:
    """The reference distributions of ``features`` and of the model's ``score(rows)`` over the training rows
    ``frame`` (the model's population at its training cutoffs; at most :data:`PROFILE_ROWS` of them, a fixed
    sample).

    Returns ``format`` (:data:`FORMAT`), ``cutoffs`` (ISO dates of the ``cutoff`` column, or ``[None]`` without
    one), ``markets`` (the values of ``country``, sorted) and ``columns``: per column (the features found in
    ``frame``, then :data:`SCORE`) its ``kind`` and ``edges`` (numeric) or ``categories``, ``counts`` (rows per
    group, cutoff and bin; group 0 is everyone, group ``1 + i`` the customers of ``markets[i]``) and ``missing``
    (rows without a value per group and cutoff).
    """
    if len(frame) > PROFILE_ROWS:
        keep = np.sort(np.random.default_rng(seed).choice(len(frame), PROFILE_ROWS, replace=False))
        frame = frame.iloc[keep]
    cutoffs = sorted(frame["cutoff"].unique()) if "cutoff" in frame.columns else [None]
    cut = _codes(frame["cutoff"], cutoffs) if "cutoff" in frame.columns else np.zeros(len(frame), np.int64)
    markets = sorted(frame[MARKET].dropna().astype(str).unique()) if MARKET in frame.columns else []
    market = _market_codes(frame, markets)
    groups, n_cut = 1 + len(markets), len(cutoffs)
    columns = {}
    values_of = {c: frame[c] for c in features if c in frame.columns}
    values_of[SCORE] = pd.Series(np.asarray(score(frame), dtype=float), index=frame.index)
    for column, values in values_of.items():
        spec = _bins(values)
        index, present, n_bins = _bin_index(spec, values)
        # one count over (market + 1, cutoff, bin), market + 1 = 0 for rows without a known market; everyone's
        # counts are the sum over all of them
        place = (market + 1) * n_cut + cut
        by_market = np.bincount(place[present] * n_bins + index[present],
                                minlength=groups * n_cut * n_bins).reshape(groups, n_cut, n_bins)
        absent = np.bincount(place[~present], minlength=groups * n_cut).reshape(groups, n_cut)
        counts = np.concatenate([by_market.sum(axis=0, keepdims=True), by_market[1:]])
        missing = np.concatenate([absent.sum(axis=0, keepdims=True), absent[1:]])
        columns[column] = {**spec, "counts": counts, "missing": missing}
    return {"format": FORMAT, "cutoffs": [None if c is None else pd.Timestamp(c).date().isoformat()
                                          for c in cutoffs],
            "markets": markets, "columns": columns}


def readable(reference: dict | None) -> bool:
    """Whether ``reference`` is a profile :func:`drift` can read (models trained before it have an older one)."""
    return bool(reference) and reference.get("format") == FORMAT


def psi(reference: list[float], current: list[float]) -> float:
    """The population stability index of two share vectors over the same bins."""
    r = np.maximum(np.asarray(reference, dtype=float), FLOOR)
    c = np.maximum(np.asarray(current, dtype=float), FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def noise_bound(rows_now: np.ndarray, rows_training: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """The :data:`NOISE_QUANTILE` quantile of the PSI of two samples of these sizes from one distribution over
    ``bins`` non-empty bins: ``(1/n + 1/m) x chi2_{bins - 1}`` (Yurdakul 2018)."""
    from scipy.stats import chi2

    with np.errstate(divide="ignore"):
        scale = 1 / np.asarray(rows_now, dtype=float) + 1 / np.asarray(rows_training, dtype=float)
    return scale * chi2.ppf(NOISE_QUANTILE, np.maximum(np.asarray(bins) - 1, 1))


def shares(counts: np.ndarray) -> np.ndarray:
    """The shares of rows per bin with half a row added to every bin (Jeffreys): an empty bin has a small share,
    not none, that shrinks as the group grows, so one customer more or less in a rare bin of a small market does
    not swing the PSI (a fixed floor of 1e-4 turns a 2% bin that happens to be empty into a PSI of 0.12)."""
    counts = np.asarray(counts, dtype=float)
    return (counts + PSEUDO_COUNT) / (counts.sum() + PSEUDO_COUNT * len(counts))


def _against_cutoffs(counts_now: np.ndarray, counts_training: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One group's ``counts_now`` (rows per bin) against each training cutoff's ``counts_training`` (rows per
    cutoff and bin), NaN where either side has no values: ``distance``, the plain PSI (shares floored at
    :data:`FLOOR`), which chooses the cutoff compared with because it does not depend on how many rows a cutoff
    has (the smoothed share of an empty bin does, and would make the oldest, smallest cutoff look nearest to a new
    category); ``values``, the PSI of the smoothed :func:`shares`, reported and judged; and ``readable_at``:
    sampling noise below :data:`NOISE_PSI` (:func:`noise_bound`)."""
    n_now, n_training = counts_now.sum(), counts_training.sum(axis=1)
    both = (n_training > 0) & (n_now > 0)

    def _psi(r: np.ndarray, c: np.ndarray) -> np.ndarray:  # psi() of each row, vectorised
        return np.where(both, np.sum((c - r) * np.log(c / r), axis=1), np.nan)

    distance = _psi(np.maximum(counts_training / np.maximum(n_training, 1)[:, None], FLOOR),
                    np.maximum(counts_now / max(n_now, 1), FLOOR))
    values = _psi((counts_training + PSEUDO_COUNT) / (n_training + PSEUDO_COUNT * counts_training.shape[1])[:, None],
                  shares(counts_now))
    bins = ((counts_training > 0) | (counts_now > 0)).sum(axis=1)
    readable_at = both & (noise_bound(max(n_now, 1), np.maximum(n_training, 1), bins) < NOISE_PSI)
    return distance, values, readable_at


def _newest_smallest(values: np.ndarray, candidates: np.ndarray) -> int | None:
    """The candidate cutoff with the smallest value, the latest one among equals (a feature that was the same at
    every cutoff is compared with the newest, which in a growing business has the most customers)."""
    later_first = np.flatnonzero(candidates)[::-1]
    return int(later_first[np.argmin(values[later_first])]) if len(later_first) else None


def _level(value: float, warn: float, alert: float) -> str:
    return "alert" if value >= alert else "warn" if value >= warn else "ok"


def _nearest(distance: np.ndarray, values: np.ndarray, readable_at: np.ndarray, clock: bool, warn: float,
             alert: float) -> tuple[float, int | None, str]:
    """``(psi, cutoff index, level)`` of the whole population: against its nearest readable cutoff."""
    if np.isnan(values).all():
        return np.nan, None, "no data"
    if clock or not readable_at.any():
        at = _newest_smallest(distance, ~np.isnan(values))
        return float(values[at]), at, "trend" if clock else "too few"
    at = _newest_smallest(distance, readable_at)
    return float(values[at]), at, _level(values[at], warn, alert)


def _calendar_cutoff(distance: np.ndarray, readable_at: np.ndarray) -> int | None:
    """The training cutoff the markets are compared at (``distance``, ``readable_at``: market x cutoff): the one
    where the median market is closest to its own nearest readable cutoff (each market's distance less its
    smallest, so that markets far from every cutoff weigh like the others). The calendar (newsletters, seasons)
    moves every market alike, a change in one market cannot move a median over several, and a market that cannot
    be read at that cutoff is not judged (compared at another, it would show the calendar, not a change)."""
    candidates = readable_at.any(axis=0)
    if not candidates.any():
        return None
    own_best = np.min(np.where(readable_at, distance, np.inf), axis=1, keepdims=True)
    excess = distance - own_best
    medians = np.array([np.median(excess[readable_at[:, k], k]) if candidates[k] else np.inf
                        for k in range(distance.shape[1])])
    return _newest_smallest(medians, candidates)


def drift(reference: dict, frame: pd.DataFrame, scores: np.ndarray, warn: float, alert: float) -> pd.DataFrame:
    """One row per profiled column (the features, then ``score``) for the whole of ``frame``, then, with two
    markets or more, one per column and market (``column`` reads ``<column> in <market>``; not the market column
    itself).

    Columns: ``column``, ``market`` (None for everyone), ``psi``, ``cutoff`` (the training cutoff compared with,
    ISO; None without cutoffs): for everyone the nearest, for a market its own customers at the cutoff the markets
    are nearest to (:func:`_calendar_cutoff`); ``rows_now`` and ``rows_training`` (non-missing values compared),
    ``missing_training`` (share over every training row), ``missing_now`` and ``level``: ``ok``, ``warn``,
    ``alert``, ``trend`` (a clock feature, not judged), ``too few`` (too few values for the PSI to stand out from
    sampling noise, :func:`_against_cutoffs`) or ``no data`` (no values on one side).
    """
    if not readable(reference):
        raise ValueError("this training profile predates the current drift measurement; retrain the model")
    markets = reference["markets"] if len(reference["markets"]) > 1 else []
    market = _market_codes(frame, markets)
    groups = [(None, np.ones(len(frame), bool))] + [(m, market == i) for i, m in enumerate(markets)]
    rows_of: list[list[dict]] = [[] for _ in groups]
    for column, ref in reference["columns"].items():
        values = (pd.Series(np.asarray(scores, dtype=float), index=frame.index) if column == SCORE else
                  frame[column] if column in frame.columns else pd.Series(np.nan, index=frame.index))
        index, present, n_bins = _bin_index(ref, values)
        clock = column in CLOCK_FEATURES
        judged = []
        for g, (name, rows) in enumerate(groups):
            if name is not None and column == MARKET:
                continue  # one market has one value
            counts_now = np.bincount(index[rows & present], minlength=n_bins)
            judged.append((g, name, rows, counts_now, *_against_cutoffs(counts_now, ref["counts"][g])))
        if len(judged) > 1:
            at_markets = _calendar_cutoff(np.array([j[4] for j in judged[1:]]), np.array([j[6] for j in judged[1:]]))
        for g, name, rows, counts_now, distance, psis, readable_at in judged:
            if name is None:
                value, at, level = _nearest(distance, psis, readable_at, clock, warn, alert)
            else:
                at = at_markets
                value = np.nan if at is None else psis[at]
                level = ("no data" if np.isnan(psis).all() else "trend" if clock else
                         "too few" if at is None or not readable_at[at] else _level(value, warn, alert))
            n_rows = int(rows.sum())
            total_training = int(ref["counts"][g].sum() + ref["missing"][g].sum())
            rows_of[g].append({
                "column": column if name is None else f"{column} in {name}", "market": name,
                "psi": float(value), "cutoff": None if at is None else reference["cutoffs"][at],
                "rows_now": int(counts_now.sum()),
                "rows_training": 0 if at is None else int(ref["counts"][g][at].sum()),
                "missing_training": float(ref["missing"][g].sum() / total_training) if total_training else 0.0,
                "missing_now": float(1 - counts_now.sum() / n_rows) if n_rows else 0.0,
                "level": level})
    return pd.DataFrame([row for group in rows_of for row in group], columns=COLUMNS)
