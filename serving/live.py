"""Live performance: how the scores of a past scoring run did against what then happened.

Every published scoring run keeps a *score record*: one row per scored customer (everyone the champions scored,
not only those on the lists) with each model's score and, per list, the contact group the customer was published
in (``treatment``, ``control``, or empty: not on the list), plus the backtest figures each champion was promoted
on. The records live under ``<data_dir>/monitoring/scores/as_of=<DATE>/`` (so ``churn forget`` erases the
forgotten customers' rows like every other file with customer ids).

Once a model's label window after the record's as-of date ``D`` has passed in the data (``D + horizon <= last day +
1``: ``horizons.churn_days`` for the churn, win-back, subscription and next-order models, ``horizons.cltv_days`` for
CLTV), the outcome of every scored customer is known. It is computed exactly as the training labels are: the
labeled point-in-time snapshot at ``D`` built from today's validated data (:func:`features.snapshots.build_snapshots`),
the model's population rows with a known label (:meth:`models.catalog.ModelSpec.rows`). Each model then gets the
metrics of its backtest on those customers (:meth:`models.catalog.ModelSpec.metrics`: ROC AUC, PR AUC, Brier, ECE
and top-decile lift for classifiers; normalised Gini, Spearman, decile MAPE and total error for CLTV; the errors
in days for the next-order model) and:

* classifiers: the reliability curve (observed rate per equal-width bin of the published probability) and, for the
  list the model defines, its *precision*: the share of the customers published on the list whose outcome was
  positive (the at-risk list: they churned; the win-back list: they bought again), over the whole list and over
  its control group alone (the treatment group was contacted, which is meant to change its outcome);
* CLTV: the realised net revenue of the scored customers over ``cltv_days`` beside the predicted total;
* every model: its *backtest* value of the promotion metric (ROC AUC, normalised Gini, median absolute error in
  days) and the live value minus it; a classifier whose live ROC AUC, or a CLTV model whose live Gini, is more than
  ``scoring.live_performance_margin`` below its backtest is *flagged*.

Nothing here reads the clock or writes files; :mod:`pipelines.jobs` stores and reads the records.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from common.config import HorizonsConfig
from features.snapshots import latest_labeled_cutoff
from models import metrics as m
from models.catalog import MODELS, ModelSpec
from serving.lists import LISTS

GROUP = "{}_group"
"""Column of a score record holding the customer's contact group on a list (``{}``: the list's name)."""

HISTORY_KEY = ["as_of", "model"]
RELIABILITY_BINS = 10


def score_record(scores: pd.DataFrame, lists: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The record of one scoring run: every scored customer's ``is_active`` and model scores (the columns of
    :func:`serving.scoring.score_snapshot` the catalogue's models write) and, per list, ``<list>_group``."""
    columns = ["customer_id", "is_active", *[s.score_column for s in MODELS if s.score_column in scores.columns]]
    record = scores[columns].reset_index(drop=True)
    for spec in LISTS:
        frame = lists.get(spec.name)
        groups = (frame.set_index("customer_id")["contact_group"] if frame is not None and
                  "contact_group" in frame.columns else pd.Series(dtype="object"))
        record[GROUP.format(spec.name)] = record["customer_id"].map(groups).astype("object")
    return record


def window_closed(spec: ModelSpec, as_of: dt.date, last_day: dt.date, horizons: HorizonsConfig) -> bool:
    """True when the data's ``last_day`` covers the model's whole label window after ``as_of``."""
    return as_of <= latest_labeled_cutoff(last_day, spec.horizon_days(horizons))


def known_from(spec: ModelSpec, as_of: dt.date, horizons: HorizonsConfig) -> dt.date:
    """The first data day on which the model's outcome of ``as_of`` is known (the window's last day)."""
    return as_of + dt.timedelta(days=spec.horizon_days(horizons) - 1)


def primary(spec: ModelSpec) -> str:
    """The metric a model's live figure is compared on: its promotion metric."""
    return spec.promotion.metric


def evaluate(record: pd.DataFrame, meta: dict, labeled: pd.DataFrame, last_day: dt.date, horizons: HorizonsConfig,
             margin: float) -> tuple[list[dict], list[dict]]:
    """The live performance of one score record (``meta``: its ``record.json``) against ``labeled``, the labeled
    snapshot at the record's as-of date built from the current data. Returns the history rows (one per model
    whose window has closed and which scored anyone) and the reliability curve rows of the classifiers."""
    as_of = dt.date.fromisoformat(meta["as_of"])
    rows, curves = [], []
    champions = meta.get("champions", {})
    for spec in MODELS:
        if spec.score_column not in record.columns or record[spec.score_column].isna().all():
            continue  # no champion then (it stepped aside)
        if not window_closed(spec, as_of, last_day, horizons):
            continue
        population = spec.rows(labeled, horizons)
        population = population[population[spec.label].notna()][["customer_id", spec.label]]
        scored = record[record[spec.score_column].notna()]
        joined = scored.merge(population, on="customer_id", how="inner", validate="one_to_one")
        if joined.empty:
            continue
        y, p = spec.outcome(joined), joined[spec.score_column].to_numpy(dtype=float)
        champion = champions.get(spec.name, {})
        backtest = champion.get("backtest", {}).get(primary(spec))
        row = {"as_of": as_of.isoformat(), "model": spec.name, "kind": spec.kind,
               "version": champion.get("version"), "run_id": meta.get("run_id"),
               "known_from": known_from(spec, as_of, horizons).isoformat(),
               "scored": int(len(scored)), "evaluated": int(len(joined)),
               **{k: _number(v) for k, v in spec.metrics(y, p).items()},
               "metric": primary(spec), "backtest": _number(backtest),
               "backtest_as_of": champion.get("backtest", {}).get("eval_as_of")}
        live = row.get(primary(spec))
        row["live_minus_backtest"] = (None if live is None or row["backtest"] is None
                                      else live - row["backtest"])
        row["flagged"] = bool(not spec.promotion.lower_is_better and row["live_minus_backtest"] is not None
                              and row["live_minus_backtest"] < -margin)
        if spec.kind == "classifier":
            mean_p, rate, count = m.calibration_curve(y, np.clip(p, 0, 1), RELIABILITY_BINS)
            curves += [{"as_of": row["as_of"], "model": spec.name, "mean_predicted": float(a),
                        "observed": float(b), "customers": int(c)} for a, b, c in zip(mean_p, rate, count)]
            row.update(_list_precision(spec, joined, y))
        if spec.kind == "regressor":
            row.update(realised_revenue=float(y.sum()), predicted_revenue=float(p.sum()))
        rows.append(row)
    return rows, curves


def _list_precision(spec: ModelSpec, joined: pd.DataFrame, y: np.ndarray) -> dict:
    """Precision of the list ``spec`` defines, over the whole list and over its control group."""
    out: dict = {}
    for listed in LISTS:
        column = GROUP.format(listed.name)
        if listed.model.name != spec.name or column not in joined.columns:
            continue
        group = joined[column]
        on_list = group.notna().to_numpy()
        control = (group == "control").to_numpy()
        out.update(list=listed.name, list_customers=int(on_list.sum()),
                   list_precision=float(y[on_list].mean()) if on_list.any() else None,
                   control_customers=int(control.sum()),
                   control_precision=float(y[control].mean()) if control.any() else None)
    return out


def _number(value) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(number) else number


def pending(metas: list[dict], last_day: dt.date, horizons: HorizonsConfig) -> list[dict]:
    """The records' models whose outcome is not known yet: ``{as_of, model, known_from}``."""
    out = []
    for meta in metas:
        as_of = dt.date.fromisoformat(meta["as_of"])
        for spec in MODELS:
            if spec.name in meta.get("champions", {}) and not window_closed(spec, as_of, last_day, horizons):
                out.append({"as_of": meta["as_of"], "model": spec.name,
                            "known_from": known_from(spec, as_of, horizons).isoformat()})
    return out


def flag_lines(history: pd.DataFrame, margin: float) -> list[str]:
    """One line per flagged model and as-of date (for the flow's log, the CLI and the report)."""
    lines = []
    for row in history[history["flagged"]].itertuples() if len(history) else []:
        lines.append(f"{row.model} (version {row.version}): live {row.metric} {getattr(row, row.metric):.3f} on "
                     f"the scores of {row.as_of} is {-row.live_minus_backtest:.3f} below its backtest "
                     f"{row.backtest:.3f} (more than scoring.live_performance_margin {margin}): look at the drift, "
                     "retrain (`churn train --force`) or compare challengers (`churn backtest`)")
    return lines
