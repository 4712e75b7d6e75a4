"""Temporal backtest: train only on snapshots whose label windows end on or before the as-of date, then evaluate on
the snapshot at that date with its true outcomes, next to the baselines (and the oracle, on generated data).

The leakage guard is :func:`training_rows`: a snapshot at cutoff ``t`` with horizon ``H`` is used for training
only when ``t + H <= as_of``, i.e. its label window ``[t, t + H)`` closes before the evaluation cutoff.

Every model of :data:`models.catalog.MODELS` is backtested the same way. A model with a longer label window (CLTV:
``cltv_days``) whose window at the as-of date is not complete in the data is evaluated at the latest cutoff on or
before it whose window is (``<section>.as_of`` in the report), trained on windows ending on or before that cutoff.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from common.config import HorizonsConfig, ModelsConfig, SnapshotsConfig
from features.snapshots import cutoff_schedule, latest_labeled_cutoff
from models import training as tr
from models.catalog import MODELS, BacktestData, ModelSpec, StepAside, evaluation_cutoff, training_rows

OnModel = Callable[[ModelSpec], "Callable[[int, int], None] | None"]

__all__ = ["BacktestResult", "backtest_data", "cltv_evaluation_cutoff", "needed_cutoffs", "run_backtest",
           "summary_rows", "training_rows"]


def cltv_evaluation_cutoff(as_of: dt.date, last_day: dt.date, cltv_days: int) -> dt.date:
    """``as_of`` when its CLTV window lies inside the data, else the latest cutoff whose window does."""
    return evaluation_cutoff(as_of, last_day, cltv_days)


def needed_cutoffs(as_of: dt.date, last_day: dt.date, horizons: HorizonsConfig,
                   schedule: SnapshotsConfig, models: Sequence[ModelSpec] = MODELS,
                   first_day: dt.date | None = None) -> list[dt.date]:
    """Every cutoff a backtest at ``as_of`` reads: each model's evaluation cutoff and its training schedule, none
    on or before the data's ``first_day`` (a model whose evaluation cutoff would be there steps aside)."""
    def inside(day: dt.date) -> bool:
        return first_day is None or day > first_day

    ends = {e for e in (spec.evaluation_cutoff(as_of, last_day, horizons) for spec in models) if inside(e)}
    ends |= {as_of}
    return sorted({c for end in ends for c in cutoff_schedule(end, schedule, first_day)} | ends)


@dataclass
class BacktestResult:
    report: dict
    # per model section: its evaluation rows with the outcome and the model's ("model"), every baseline's and the
    # oracle's predictions (for plots and inspection); a model that stepped aside has none
    evaluations: dict[str, pd.DataFrame]
    snapshots: pd.DataFrame  # every snapshot row read, with the BG/NBD features added
    models: dict[str, tr.ScoringModel] = field(default_factory=dict)


def _cutoff_rows(snapshots: pd.DataFrame, cutoff: dt.date) -> pd.DataFrame:
    rows = snapshots[snapshots["cutoff"] == cutoff]
    if rows.empty:
        raise ValueError(f"no snapshot rows at cutoff {cutoff}: build the snapshots for the backtest's cutoffs")
    return rows


def backtest_data(spec: ModelSpec, snapshots: pd.DataFrame, as_of: dt.date, last_day: dt.date,
                  horizons: HorizonsConfig, schedule: SnapshotsConfig, btyd_by_cutoff: dict | None = None,
                  first_day: dt.date | None = None) -> BacktestData:
    """``spec``'s training and evaluation rows for a backtest at ``as_of`` (see :class:`BacktestData`);
    ``btyd_by_cutoff`` shares the BG/NBD fits between the models of one backtest. :class:`StepAside` when the
    data cannot backtest the model (its label window does not fit after ``first_day``, no evaluation rows with
    both outcomes)."""
    at = spec.evaluation_cutoff(as_of, last_day, horizons)
    days = spec.horizon_days(horizons)
    if first_day is not None and at <= first_day:
        raise StepAside(spec.name, f"its {days}-day label window (horizons.{spec.horizon}) must end by the data's "
                                   f"last day {last_day}, so its latest evaluation cutoff is {at}, not after the "
                                   f"data's first day {first_day}; the history is too short for this horizon")
    cutoff_rows = _cutoff_rows(snapshots, at)
    allowed = training_rows(snapshots, at, days, cutoff_schedule(at, schedule, first_day))
    train = spec.rows(allowed, horizons)
    evaluation = spec.rows(cutoff_rows, horizons)
    evaluation = evaluation[evaluation[spec.label].notna()].copy()
    if evaluation.empty:
        raise StepAside(spec.name, f"no {spec.population.noun} with a known {spec.label} at its evaluation "
                                   f"cutoff {at}")
    if spec.kind == "classifier" and spec.positives(evaluation).nunique() < 2:
        raise StepAside(spec.name, f"every one of the {len(evaluation):,} {spec.population.noun} at its "
                                   f"evaluation cutoff {at} has {spec.label} = "
                                   f"{bool(spec.positives(evaluation).iloc[0])}; both outcomes are needed")
    return BacktestData(snapshots, at, train, evaluation, cutoff_rows, horizons, schedule,
                        {} if btyd_by_cutoff is None else btyd_by_cutoff)


def run_backtest(snapshots: pd.DataFrame, as_of: dt.date, last_day: dt.date, horizons: HorizonsConfig,
                 schedule: SnapshotsConfig, settings: ModelsConfig,
                 oracle: pd.DataFrame | None = None,
                 models: Sequence[ModelSpec] = MODELS, first_day: dt.date | None = None,
                 on_model: "OnModel | None" = None) -> BacktestResult:
    """Train every model of the catalogue on its allowed snapshots and evaluate it with its baselines at its
    evaluation cutoff (see the module docstring).

    A model that is not required and cannot be trained on this data steps aside: ``report[section]`` is then
    ``{"skipped": reason}`` and it has no evaluation rows.

    Parameters
    ----------
    snapshots
        Labeled snapshots at (at least) :func:`needed_cutoffs`, with ``cutoff`` as a date column.
    last_day
        The data's last day (labels are complete up to it).
    oracle
        The generator's truth at ``as_of`` by ``customer_id`` (generated data only): ``p_no_purchase`` (in the
        churn horizon) and ``next_order_median_days``; each model's ``oracle`` reads what it needs.
    first_day
        The data's first day: an evaluation cutoff on or before it makes its model step aside.
    on_model
        ``on_model(spec)`` before each model is fitted; it returns the ``on_round(done, total)`` callback of
        its boosting rounds (progress bars) or None.
    """
    if as_of > latest_labeled_cutoff(last_day, horizons.churn_days):
        raise ValueError(f"cannot backtest at {as_of}: its {horizons.churn_days}-day churn window ends after the "
                         f"data's last day {last_day}; the latest possible as-of date is "
                         f"{latest_labeled_cutoff(last_day, horizons.churn_days)}")
    btyd_by_cutoff: dict = {}  # one BG/NBD fit per cutoff: the features' fits serve the baselines too
    snapshots = tr.add_btyd_features(snapshots, horizons.churn_days, horizons.cltv_days, btyd_by_cutoff)
    evaluation = _cutoff_rows(snapshots, as_of)
    report: dict = {"as_of": as_of.isoformat(), "data_last_day": last_day.isoformat(),
                    "horizons": horizons.model_dump()}
    baselines: dict[str, dict] = {}
    populations: dict = {"customers": int(len(evaluation))}
    training: dict[str, int] = {}
    oracle_metrics: dict[str, float] = {}
    evaluations: dict[str, pd.DataFrame] = {}
    fitted: dict[str, tr.ScoringModel] = {}
    for spec in models:
        try:
            data = backtest_data(spec, snapshots, as_of, last_day, horizons, schedule, btyd_by_cutoff, first_day)
            model = spec.fit(data.train, settings, on_model(spec) if on_model else None, reference=False)
        except StepAside as exc:
            if spec.required:
                raise
            report[spec.section] = {"skipped": exc.reason}
            continue
        rows, y = data.evaluation, spec.outcome(data.evaluation)
        rows["model"] = model.score(rows)
        report[spec.section] = {**spec.metrics(y, rows["model"].to_numpy(dtype=float)),
                                "as_of": data.as_of.isoformat(), "training_cutoffs": _dates(model.training_cutoffs),
                                "validation_cutoffs": _dates(model.info["validation_cutoffs"]),
                                "best_iteration": model.best_iteration}
        for baseline in spec.baselines:
            values, extra = baseline.score(data, spec.label)
            rows[baseline.name] = values
            baselines.setdefault(baseline.name, {})[spec.section] = {**spec.metrics(y, values), **extra}
        if spec.oracle is not None and oracle is not None and data.as_of == as_of:
            truth = oracle.reindex(rows["customer_id"].to_numpy())
            rows["oracle"] = np.asarray(spec.oracle(truth), dtype=float)
            oracle_metrics.update({f"{spec.section}_{k}": v
                                   for k, v in spec.metrics(y, rows["oracle"].to_numpy(dtype=float)).items()})
        if spec.kind == "classifier":
            populations[spec.population.name] = int(len(rows))
            populations[f"{spec.section}_base_rate"] = float(y.mean())
        else:
            populations[f"{spec.section}_customers"] = int(len(rows))
            populations[f"{spec.section}_mean_actual"] = float(y.mean())
        training[spec.section] = int(len(data.train))
        evaluations[spec.section], fitted[spec.name] = rows, model

    report["baselines"] = baselines
    report["populations"] = {**populations, "training_rows": training}
    if oracle_metrics:
        report["oracle"] = oracle_metrics
    return BacktestResult(report, evaluations, snapshots, fitted)


def _dates(values) -> list[str]:
    return [pd.Timestamp(v).date().isoformat() for v in values]


def summary_rows(report: dict, models: Sequence[ModelSpec] = MODELS) -> list[tuple[str, str, dict[str, float | None]]]:
    """(target, metric, {model or baseline: value}) rows for a side-by-side table: each trained model's table
    metrics next to its baselines and the oracle."""
    trained = [spec for spec in models if "skipped" not in report.get(spec.section, {"skipped": True})]
    baseline_names = list(dict.fromkeys(b.name for spec in trained for b in spec.baselines))
    columns = ["model", *baseline_names, "oracle"]
    rows = []
    for spec in trained:
        for metric in spec.table_metrics:
            values = {"model": report[spec.section][metric],
                      **{b.name: report["baselines"][b.name][spec.section][metric] for b in spec.baselines},
                      "oracle": report.get("oracle", {}).get(f"{spec.section}_{metric}")}
            rows.append((spec.section, metric, {c: values.get(c) for c in columns}))
    return rows
