"""Temporal backtest: train only on snapshots whose label windows end on or before the as-of date, then evaluate on
the snapshot at that date with its true outcomes, next to the baselines (and the oracle, on generated data).

The leakage guard is :func:`training_rows`: a snapshot at cutoff ``t`` with horizon ``H`` is used for training
only when ``t + H <= as_of``, i.e. its label window ``[t, t + H)`` closes before the evaluation cutoff.

CLTV needs a longer window (``cltv_days``). When the as-of date's CLTV window is not complete in the data, CLTV
is evaluated at the latest cutoff on or before it whose window is (``cltv.as_of`` in the report), trained on
windows ending on or before that cutoff.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from common.config import HorizonsConfig, ModelsConfig, SnapshotsConfig
from features.snapshots import cutoff_schedule, latest_labeled_cutoff
from models import metrics as m
from models import training as tr


def training_rows(snapshots: pd.DataFrame, as_of: dt.date, horizon_days: int,
                  cutoffs: Sequence[dt.date]) -> pd.DataFrame:
    """Rows at ``cutoffs`` whose label window ``[t, t + horizon_days)`` ends on or before ``as_of``."""
    allowed = {c for c in cutoffs if c + dt.timedelta(days=horizon_days) <= as_of}
    return snapshots[snapshots["cutoff"].isin(allowed)]


def cltv_evaluation_cutoff(as_of: dt.date, last_day: dt.date, cltv_days: int) -> dt.date:
    """``as_of`` when its CLTV window lies inside the data, else the latest cutoff whose window does."""
    return min(as_of, latest_labeled_cutoff(last_day, cltv_days))


def needed_cutoffs(as_of: dt.date, last_day: dt.date, horizons: HorizonsConfig,
                   schedule: SnapshotsConfig) -> list[dt.date]:
    """Every cutoff a backtest at ``as_of`` reads: the training schedules of both horizons and the two
    evaluation cutoffs."""
    cltv_at = cltv_evaluation_cutoff(as_of, last_day, horizons.cltv_days)
    return sorted({*cutoff_schedule(as_of, schedule), *cutoff_schedule(cltv_at, schedule), as_of, cltv_at})


@dataclass
class BacktestResult:
    report: dict
    # evaluation rows with outcomes and every model's and baseline's prediction (for plots and inspection)
    churn: pd.DataFrame
    winback: pd.DataFrame
    cltv: pd.DataFrame
    snapshots: pd.DataFrame  # every snapshot row read, with the BG/NBD features added
    models: dict[str, tr.ScoringModel] = field(default_factory=dict)


def _cutoff_rows(snapshots: pd.DataFrame, cutoff: dt.date) -> pd.DataFrame:
    rows = snapshots[snapshots["cutoff"] == cutoff]
    if rows.empty:
        raise ValueError(f"no snapshot rows at cutoff {cutoff}: build the snapshots for the backtest's cutoffs")
    return rows


def run_backtest(snapshots: pd.DataFrame, as_of: dt.date, last_day: dt.date, horizons: HorizonsConfig,
                 schedule: SnapshotsConfig, settings: ModelsConfig,
                 oracle_p_no_purchase: pd.Series | None = None) -> BacktestResult:
    """Train every model on the allowed snapshots and evaluate at ``as_of`` (CLTV: see the module docstring).

    Parameters
    ----------
    snapshots
        Labeled snapshots at (at least) :func:`needed_cutoffs`, with ``cutoff`` as a date column.
    last_day
        The data's last day (labels are complete up to it).
    oracle_p_no_purchase
        True P(no purchase in the churn horizon) at ``as_of`` by ``customer_id`` (generated data only).
    """
    if as_of > latest_labeled_cutoff(last_day, horizons.churn_days):
        raise ValueError(f"cannot backtest at {as_of}: its {horizons.churn_days}-day churn window ends after the "
                         f"data's last day {last_day}; the latest possible as-of date is "
                         f"{latest_labeled_cutoff(last_day, horizons.churn_days)}")
    H = horizons.churn_days
    snapshots = tr.add_btyd_features(snapshots, H)
    schedule_churn = cutoff_schedule(as_of, schedule)
    train = training_rows(snapshots, as_of, H, schedule_churn)
    evaluation = _cutoff_rows(snapshots, as_of)
    btyd = tr.btyd_predictions(evaluation, H, horizons.cltv_days)

    # churn: active customers
    active_train = train[train["is_active"] == True]  # noqa: E712 (nullable booleans)
    churn_model = tr.fit_classifier(active_train, "churned", "churn-classifier", settings)
    active = evaluation[evaluation["is_active"] == True].copy()  # noqa: E712
    y_churn = active["churned"].astype(int).to_numpy()
    recency_churn = tr.fit_rule(active_train, "churned", tr.RECENCY_RULE)
    rfm_churn = tr.fit_rule(active_train, "churned", tr.RFM_COLUMNS)
    active["model"] = churn_model.score(active)
    active["btyd"] = btyd.loc[active.index, "p_no_purchase"]
    active["recency_rule"] = recency_churn.score(active)
    active["logistic_rfm"] = rfm_churn.score(active)

    # win-back: lapsed customers
    lapsed_train = train[train["is_active"] == False]  # noqa: E712
    winback_model = tr.fit_classifier(lapsed_train, "reactivated", "winback-classifier", settings)
    lapsed = evaluation[evaluation["is_active"] == False].copy()  # noqa: E712
    y_winback = lapsed["reactivated"].astype(int).to_numpy()
    lapsed["model"] = winback_model.score(lapsed)
    lapsed["btyd"] = 1 - btyd.loc[lapsed.index, "p_no_purchase"]
    lapsed["recency_rule"] = tr.fit_rule(lapsed_train, "reactivated", tr.RECENCY_RULE).score(lapsed)

    # next order date: active customers whose next order falls inside the churn window
    active["next_order_btyd"] = btyd.loc[active.index, "next_order_days"]
    active["next_order_typical_gap"] = tr.typical_gap_next_order_days(active)
    actual_days = active["days_to_next_order"].astype(float).to_numpy()

    # CLTV: every customer with an order before the CLTV evaluation cutoff
    cltv_at = cltv_evaluation_cutoff(as_of, last_day, horizons.cltv_days)
    schedule_cltv = cutoff_schedule(cltv_at, schedule)
    cltv_train = training_rows(snapshots, cltv_at, horizons.cltv_days, schedule_cltv)
    cltv_model = tr.fit_cltv(cltv_train, settings)
    cltv_eval = _cutoff_rows(snapshots, cltv_at).copy()
    y_cltv = cltv_eval["future_net_revenue"].to_numpy(dtype=float)
    cltv_eval["model"] = cltv_model.score(cltv_eval)
    cltv_eval["btyd"] = tr.btyd_predictions(cltv_eval, H, horizons.cltv_days)["expected_cltv"]
    churn_rate = tr.annual_churn_rate(training_rows(snapshots, cltv_at, H, schedule_cltv), H)
    cltv_eval["historical_formula"] = tr.historical_cltv(cltv_eval, horizons.cltv_days, churn_rate)

    def clf(frame, y, column):
        return m.classification_metrics(y, frame[column].to_numpy(dtype=float))

    def reg(column):
        return m.regression_metrics(y_cltv, cltv_eval[column].to_numpy(dtype=float))

    def next_order(column):
        known = ~np.isnan(actual_days)
        return {"median_abs_error_days": m.median_abs_error_days(actual_days, active[column].to_numpy(dtype=float)),
                "n": int(known.sum())}

    report = {
        "as_of": as_of.isoformat(),
        "data_last_day": last_day.isoformat(),
        "horizons": horizons.model_dump(),
        "churn": {**clf(active, y_churn, "model"), "training_cutoffs": _dates(churn_model.training_cutoffs),
                  "validation_cutoffs": _dates(churn_model.info["validation_cutoffs"]),
                  "best_iteration": churn_model.best_iteration},
        "winback": {**clf(lapsed, y_winback, "model"), "training_cutoffs": _dates(winback_model.training_cutoffs),
                    "best_iteration": winback_model.best_iteration},
        "cltv": {**reg("model"), "as_of": cltv_at.isoformat(), "training_cutoffs": _dates(cltv_model.training_cutoffs),
                 "best_iteration": cltv_model.best_iteration},
        "next_order": {**next_order("next_order_btyd"), "method": "BG/NBD median time to next order given alive"},
        "baselines": {
            "btyd": {"churn": clf(active, y_churn, "btyd"), "winback": clf(lapsed, y_winback, "btyd"),
                     "cltv": reg("btyd")},
            "recency_rule": {"churn": clf(active, y_churn, "recency_rule"),
                             "winback": clf(lapsed, y_winback, "recency_rule")},
            "logistic_rfm": {"churn": clf(active, y_churn, "logistic_rfm")},
            "historical_formula": {"cltv": {**reg("historical_formula"), "annual_churn_rate": churn_rate}},
            "typical_gap": {"next_order": next_order("next_order_typical_gap")},
        },
        "populations": {"customers": int(len(evaluation)), "active": int(len(active)), "lapsed": int(len(lapsed)),
                        "churn_base_rate": float(y_churn.mean()), "winback_base_rate": float(y_winback.mean()),
                        "cltv_customers": int(len(cltv_eval)), "cltv_mean_actual": float(y_cltv.mean()),
                        "training_rows": {"churn": int(len(active_train)), "winback": int(len(lapsed_train)),
                                          "cltv": int(len(cltv_train))}},
    }
    if oracle_p_no_purchase is not None:
        truth = active["customer_id"].map(oracle_p_no_purchase)
        active["oracle"] = truth.to_numpy(dtype=float)
        lapsed["oracle"] = 1 - lapsed["customer_id"].map(oracle_p_no_purchase).to_numpy(dtype=float)
        oracle_churn = clf(active, y_churn, "oracle")
        report["oracle"] = {"churn_roc_auc": oracle_churn["roc_auc"], "churn_ece": oracle_churn["ece"],
                            "churn_brier": oracle_churn["brier"],
                            "winback_roc_auc": clf(lapsed, y_winback, "oracle")["roc_auc"]}
    models = {"churn-classifier": churn_model, "winback-classifier": winback_model, "cltv-regressor": cltv_model}
    return BacktestResult(report, active, lapsed, cltv_eval, snapshots, models)


def _dates(values) -> list[str]:
    return [pd.Timestamp(v).date().isoformat() for v in values]


def summary_rows(report: dict) -> list[tuple[str, str, dict[str, float | None]]]:
    """(target, metric, {model or baseline: value}) rows for a side-by-side table."""
    b = report["baselines"]
    columns = ["model", "btyd", "recency_rule", "logistic_rfm", "historical_formula", "typical_gap", "oracle"]
    rows = []

    def add(target, metric, values):
        rows.append((target, metric, {c: values.get(c) for c in columns}))

    for metric in ("roc_auc", "pr_auc", "brier", "ece", "top_decile_lift", "top_decile_capture"):
        add("churn", metric, {"model": report["churn"][metric],
                              **{name: b[name]["churn"][metric] for name in ("btyd", "recency_rule", "logistic_rfm")},
                              "oracle": report.get("oracle", {}).get(f"churn_{metric}")})
    for metric in ("roc_auc", "pr_auc", "ece"):
        add("winback", metric, {"model": report["winback"][metric],
                                **{name: b[name]["winback"][metric] for name in ("btyd", "recency_rule")},
                                "oracle": report.get("oracle", {}).get(f"winback_{metric}")})
    for metric in ("normalized_gini", "spearman", "decile_mape", "total_error"):
        add("cltv", metric, {"model": report["cltv"][metric],
                             **{name: b[name]["cltv"][metric] for name in ("btyd", "historical_formula")}})
    add("next_order", "median_abs_error_days",
        {"btyd": report["next_order"]["median_abs_error_days"],
         "typical_gap": b["typical_gap"]["next_order"]["median_abs_error_days"]})
    return rows
