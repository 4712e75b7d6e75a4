"""The model stage's jobs, wired from domain functions (features -> models -> tracking); no logic of their own.

The CLI calls them directly and the Prefect flows call them as tasks.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


from features.config import PipelineConfig
from features.errors import ChurnError, DataError
from features.snapshots import build_snapshots, latest_labeled_cutoff, open_sources

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def truth_dir(cfg: PipelineConfig) -> Path | None:
    """The generator's ground truth beside the raw data, when the data came from `churn generate`."""
    folder = cfg.raw_path / "truth"
    return folder if (folder / "params.json").exists() else None


def backtest_folder(cfg: PipelineConfig, as_of: dt.date) -> Path:
    return cfg.resolve(cfg.outputs.dir) / "backtest" / f"as_of={as_of.isoformat()}"


def backtest(cfg: PipelineConfig, as_of: dt.date | None = None, report_path: Path | None = None,
             progress: Progress = _quiet) -> "BacktestRun":
    """Backtest at ``as_of`` (default: the latest cutoff with a complete churn window); write the JSON report and
    the plots beside it."""
    from features.synthetic.oracle import true_no_purchase_probability
    from models.backtest import needed_cutoffs, run_backtest
    from models.plots import write_plots

    progress("opening the validated tables")
    src = open_sources(cfg.validated_dir, memory_limit=cfg.snapshots.duckdb_memory_limit)
    latest = latest_labeled_cutoff(src.last_day, cfg.horizons.churn_days)
    as_of = as_of or latest
    if as_of > latest:
        raise DataError(f"cannot backtest at {as_of}: its {cfg.horizons.churn_days}-day churn window ends after the "
                        f"data's last day {src.last_day}; use --as-of {latest} or earlier")
    cutoffs = needed_cutoffs(as_of, src.last_day, cfg.horizons, cfg.snapshots)
    progress(f"building {len(cutoffs)} labeled snapshots ({cutoffs[0]} .. {cutoffs[-1]})")
    snapshots = build_snapshots(src, cutoffs, cfg.horizons, with_labels=True)
    oracle = None
    truth = truth_dir(cfg)
    if truth is not None:
        progress("computing the oracle's true probabilities")
        oracle = true_no_purchase_probability(truth, as_of, cfg.horizons.churn_days).set_index(
            "customer_id")["p_no_purchase"]
    progress("training and evaluating the models and baselines")
    try:
        result = run_backtest(snapshots, as_of, src.last_day, cfg.horizons, cfg.snapshots, cfg.models, oracle)
    except ValueError as exc:
        raise ChurnError(f"backtest at {as_of}: {exc}") from None
    report_path = Path(report_path) if report_path else backtest_folder(cfg, as_of) / "report.json"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(result.report, indent=2, default=str))
    progress("drawing the plots")
    plots = write_plots(result, report_path.parent)
    return BacktestRun(result, report_path, plots, src.last_day)


@dataclass
class BacktestRun:
    result: object  # models.backtest.BacktestResult (its snapshots carry the BG/NBD features)
    report_path: Path
    plots: list[Path]
    last_day: dt.date


def data_fingerprint(cfg: PipelineConfig, last_day: dt.date) -> dict:
    """Validated source files (name, size, hash), row counts, date range and one combined hash."""
    import hashlib

    import pyarrow.parquet as pq

    from features.snapshots import fingerprint

    files = sorted(cfg.validated_dir.glob("*.parquet"))
    sources = [{**fingerprint(p), "rows": pq.ParquetFile(p).metadata.num_rows} for p in files]
    combined = hashlib.blake2b("".join(s["blake2b"] for s in sources).encode(), digest_size=16).hexdigest()
    return {"sources": sources, "last_day": last_day.isoformat(), "hash": combined}


def train(cfg: PipelineConfig, progress: Progress = _quiet) -> list:
    """Backtest at the latest labeled cutoff, train every model on all labeled snapshots, log each to MLflow,
    register it and decide the champion. Returns the :class:`models.tracking.Registered` versions."""
    from models import metrics as m
    from models import training as tr
    from models import tracking

    run = backtest(cfg, None, progress=progress)
    report, result = run.result.report, run.result
    snapshots = result.snapshots  # BG/NBD features already added by the backtest
    progress("training the final models on every labeled snapshot")
    final = {
        "churn-classifier": tr.fit_classifier(snapshots[snapshots["is_active"] == True], "churned",  # noqa: E712
                                              "churn-classifier", cfg.models),
        "winback-classifier": tr.fit_classifier(snapshots[snapshots["is_active"] == False],  # noqa: E712
                                                "reactivated", "winback-classifier", cfg.models),
        "cltv-regressor": tr.fit_cltv(snapshots, cfg.models),
    }
    fingerprint = data_fingerprint(cfg, run.last_day)
    evaluation_rows = {"churn-classifier": (result.churn, "churned", "churn"),
                       "winback-classifier": (result.winback, "reactivated", "winback"),
                       "cltv-regressor": (result.cltv, "future_net_revenue", "cltv")}
    registered = []
    for name, model in final.items():
        rows, label, section = evaluation_rows[name]
        keys = ("normalized_gini", "spearman", "total_error") if name == "cltv-regressor" else (
            "roc_auc", "pr_auc", "ece", "brier")
        evaluation = {k: report[section][k] for k in keys}
        evaluation.update(eval_as_of=report[section].get("as_of", report["as_of"]), data_hash=fingerprint["hash"])

        def champion_metrics(champion, rows=rows, label=label, name=name):
            y, score = rows[label].astype(float).to_numpy(), champion.score(rows)
            return (m.regression_metrics(y, score) if name == "cltv-regressor"
                    else m.classification_metrics(y, score))

        progress(f"logging {name} to MLflow")
        registered.append(tracking.log_and_register(cfg, model, evaluation, report, fingerprint, run.plots,
                                                    rows, champion_metrics))
    return registered


def read_report(path: Path) -> dict:
    return json.loads(Path(path).read_text())
