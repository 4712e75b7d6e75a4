"""The model stage's jobs, wired from domain functions (features -> models -> tracking); no logic of their own.

The CLI calls them directly and the Prefect flows call them as tasks.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from common.config import PipelineConfig
from common.errors import ChurnError, DataError
from features.snapshots import build_snapshots, latest_labeled_cutoff, open_sources

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def new_run_id(now: dt.datetime | None = None) -> str:
    """A sortable, unique run id: UTC time plus a short random suffix."""
    import uuid

    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def truth_dir(cfg: PipelineConfig) -> Path | None:
    """The generator's ground truth beside the raw data, when the data came from `churn generate`."""
    folder = cfg.raw_path / "truth"
    return folder if (folder / "params.json").exists() else None


def backtest_folder(cfg: PipelineConfig, as_of: dt.date) -> Path:
    return cfg.resolve(cfg.outputs.dir) / "backtest" / f"as_of={as_of.isoformat()}"


def backtest(cfg: PipelineConfig, as_of: dt.date | None = None, report_path: Path | None = None,
             progress: Progress = _quiet, snapshots: pd.DataFrame | None = None) -> "BacktestRun":
    """Backtest at ``as_of`` (default: the latest cutoff with a complete churn window); write the JSON report and
    the plots beside it. ``snapshots`` (labeled, at least at :func:`models.backtest.needed_cutoffs`) are built
    when not given."""
    from features.synthetic.oracle import true_no_purchase_probability
    from models.backtest import needed_cutoffs, run_backtest

    progress("opening the validated tables")
    src = open_sources(cfg.validated_dir, memory_limit=cfg.snapshots.duckdb_memory_limit)
    latest = latest_labeled_cutoff(src.last_day, cfg.horizons.churn_days)
    as_of = as_of or latest
    if as_of > latest:
        raise DataError(f"cannot backtest at {as_of}: its {cfg.horizons.churn_days}-day churn window ends after the "
                        f"data's last day {src.last_day}; use --as-of {latest} or earlier")
    if snapshots is None:
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
    from models.plots import write_plots

    plots = write_plots(result, report_path.parent)
    return BacktestRun(result, report_path, plots, src.last_day)


@dataclass
class BacktestRun:
    result: object  # models.backtest.BacktestResult (its snapshots carry the BG/NBD features)
    report_path: Path
    plots: list[Path]
    last_day: dt.date


def data_fingerprint(cfg: PipelineConfig, last_day: dt.date | None) -> dict:
    """Validated source files (name, size, hash), row counts, date range and one combined hash."""
    import hashlib

    import pyarrow.parquet as pq

    from features.snapshots import fingerprint, source_files

    files = source_files(cfg.validated_dir)
    if not files:
        raise DataError(f"no validated tables in {cfg.validated_dir}; run `churn validate` first")
    sources = [{**fingerprint(p), "rows": pq.ParquetFile(p).metadata.num_rows} for p in files]
    combined = hashlib.blake2b("".join(s["blake2b"] for s in sources).encode(), digest_size=16).hexdigest()
    return {"sources": sources, "last_day": last_day.isoformat() if last_day else None, "hash": combined}


def train(cfg: PipelineConfig, progress: Progress = _quiet, snapshots: pd.DataFrame | None = None) -> list:
    """Backtest at the latest labeled cutoff, train every model on all labeled snapshots, log each to MLflow,
    register it and decide the champion. Returns the :class:`models.tracking.Registered` versions.

    ``snapshots``: the labeled snapshots at :func:`training_cutoffs` when already built (else built here)."""
    from models import metrics as m
    from models import training as tr
    from models import tracking
    from models.plots import write_shap_plots

    run = backtest(cfg, None, progress=progress, snapshots=snapshots)
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

        shap_plots = write_shap_plots(model, rows, run.report_path.parent, seed=cfg.models.seed)
        progress(f"logging {name} to MLflow")
        registered.append(tracking.log_and_register(cfg, model, evaluation, report, fingerprint, run.plots,
                                                    rows, champion_metrics, shap_plots))
    return registered


def read_report(path: Path) -> dict:
    return json.loads(Path(path).read_text())


# ---- inputs, fingerprints and caching keys --------------------------------------------------------------------------


def _digest(value) -> str:
    import hashlib

    return hashlib.blake2b(json.dumps(value, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()


def source_version(*packages: str) -> str:
    """Hash of every Python file of ``packages`` (changes whenever the code that produces an output can)."""
    import hashlib
    import importlib

    h = hashlib.blake2b(digest_size=8)
    for package in packages:
        root = Path(importlib.import_module(package).__file__).parent
        for path in sorted(root.rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def last_data_day(cfg: PipelineConfig) -> dt.date:
    """The latest transaction day of the validated data."""
    return open_sources(cfg.validated_dir, memory_limit=cfg.snapshots.duckdb_memory_limit).last_day


def training_cutoffs(cfg: PipelineConfig, last_day: dt.date) -> list[dt.date]:
    """The labeled cutoffs `train` reads: those of a backtest at the latest labeled cutoff."""
    from models.backtest import needed_cutoffs

    return needed_cutoffs(latest_labeled_cutoff(last_day, cfg.horizons.churn_days), last_day, cfg.horizons,
                          cfg.snapshots)


def scoring_cutoff(cfg: PipelineConfig, last_day: dt.date) -> dt.date:
    """``scoring.as_of``, else the day after the latest transaction (so that the latest day counts)."""
    return cfg.scoring.as_of or last_day + dt.timedelta(days=1)


def folder_inputs_key(folder: Path) -> str | None:
    """The :func:`snapshot_key` a snapshot folder was built for (None when absent or unknown)."""
    meta = Path(folder) / "metadata.json"
    return json.loads(meta.read_text()).get("inputs_key") if meta.exists() else None


def snapshot_key(cfg: PipelineConfig, cutoffs: list[dt.date], with_labels: bool) -> str:
    """What a snapshot depends on, hashed: the validated sources, the feature definitions' code version, the
    horizons, the cutoffs."""
    from features.snapshots import code_version

    fingerprint = data_fingerprint(cfg, None)
    return _digest({"data": fingerprint["hash"], "code": code_version(),
                    "horizons": cfg.horizons.model_dump(), "cutoffs": cutoffs, "with_labels": with_labels})


def training_key(cfg: PipelineConfig) -> str:
    """What the trained models depend on, hashed: data, feature and model code, and the settings that shape them."""
    return _digest({"data": data_fingerprint(cfg, None)["hash"], "code": source_version("features", "models"),
                    "horizons": cfg.horizons.model_dump(), "snapshots": cfg.snapshots.model_dump(),
                    "models": cfg.models.model_dump()})


def build_snapshot_folder(cfg: PipelineConfig, name: str, cutoffs: list[dt.date], with_labels: bool,
                          inputs_key: str | None = None) -> Path:
    """Build the snapshots at ``cutoffs`` and write them to ``<data_dir>/features/<name>`` (see
    :func:`features.snapshots.write_snapshots_in_engine`); ``inputs_key`` (:func:`snapshot_key`) is recorded in
    its metadata."""
    from features.snapshots import write_snapshots_in_engine

    src = open_sources(cfg.validated_dir, memory_limit=cfg.snapshots.duckdb_memory_limit)
    extra = {"engine": "duckdb", "with_labels": with_labels, "data_last_day": src.last_day.isoformat(),
             "horizons": cfg.horizons.model_dump(), "inputs_key": inputs_key}
    return write_snapshots_in_engine(src, cutoffs, cfg.horizons, with_labels, cfg, name, cfg.validated_dir, extra)


# ---- scoring ------------------------------------------------------------------------------------------------------


def load_champions(cfg: PipelineConfig) -> dict:
    """The ``champion`` of every model, as :class:`serving.scoring.Champion` (a clear error when one is
    missing)."""
    from models.tracking import MODEL_NAMES, load_champion
    from serving.scoring import Champion

    return {name: Champion(name, *load_champion(cfg, name)) for name in MODEL_NAMES}


def reasons_path(cfg: PipelineConfig) -> Path:
    """``scoring.reasons_file`` (relative to data_dir), else the shipped ``configs/reasons.yaml``."""
    from serving.reasons import DEFAULT_REASONS

    return cfg.resolve(cfg.scoring.reasons_file) if cfg.scoring.reasons_file else DEFAULT_REASONS


def scoring_run_id(snapshot_fingerprint: str, champions: dict, cfg: PipelineConfig) -> str:
    """A run id derived from the inputs (snapshot, champion versions, scoring settings, reason texts, code): the
    same inputs give the same id, so an unchanged re-run publishes byte-identical lists."""
    return _digest({"snapshot": snapshot_fingerprint, "scoring": cfg.scoring.model_dump(),
                    "horizons": cfg.horizons.model_dump(), "currency": cfg.base_currency,
                    "reasons": _digest(reasons_path(cfg).read_text(encoding="utf-8")),
                    "code": source_version("serving"),
                    "champions": {n: c.version for n, c in sorted(champions.items())}})[:16]


def score(cfg: PipelineConfig, snapshot: pd.DataFrame, champions: dict, run_id: str) -> tuple[dict, dict]:
    """Score one snapshot with the champions; returns the lists and their summary."""
    from common.faults import checkpoint
    from serving.reasons import load_reasons
    from serving.scoring import add_reasons, build_lists, score_snapshot, summarize, target_lists
    from serving.targeting import DEFAULT_PLAYBOOKS, load_playbooks

    scores, inputs = score_snapshot(snapshot, champions, cfg.horizons, with_inputs=True)
    checkpoint("score.after_scoring")
    ranked = build_lists(scores, champions, run_id)
    playbooks = load_playbooks(cfg.resolve(cfg.targeting.playbooks_file) if cfg.targeting.playbooks_file
                               else DEFAULT_PLAYBOOKS)
    as_of = pd.Timestamp(snapshot["cutoff"].iloc[0]).date()
    lists, campaigns = target_lists(ranked, inputs, marketing_consent(cfg), cfg.targeting, playbooks, as_of)
    lists = add_reasons(lists, inputs, champions, load_reasons(reasons_path(cfg)), cfg.base_currency,
                        cfg.horizons.churn_days)  # only the published customers are explained
    return lists, summarize(scores, lists, champions, cfg.scoring.at_risk_probability, campaigns)


def marketing_consent(cfg: PipelineConfig) -> pd.Series | None:
    """customer_id -> marketing consent from the validated customers table (None when there is none)."""
    path = cfg.validated_dir / "customers.parquet"
    if not path.exists():
        return None
    consent = pd.read_parquet(path, columns=["customer_id", "marketing_consent"])
    return consent.set_index("customer_id")["marketing_consent"].astype("boolean").fillna(False).astype(bool)


def publish(cfg: PipelineConfig, lists: dict, as_of: dt.date, run_meta: dict) -> dict[str, Path]:
    """Publish the lists under the outputs directory, all or nothing."""
    from serving.publish import publish_lists, sql_url

    outputs = cfg.resolve(cfg.outputs.dir)
    if cfg.outputs.include_contact:
        lists = with_contacts(cfg, lists)
    return publish_lists(lists, outputs, as_of, run_meta, sql=sql_url(outputs, cfg.outputs.sql_url))


def with_contacts(cfg: PipelineConfig, lists: dict) -> dict:
    """``publish.include_contact``: e-mail, name and phone joined at publish time (never earlier)."""
    path = cfg.validated_dir / "customer_contacts.parquet"
    if not path.exists():
        raise DataError(f"outputs.include_contact is true but {path} is missing: configure a customers table with "
                        "email, name or phone, or set it to false")
    contacts = pd.read_parquet(path).set_index("customer_id")
    return {name: frame.join(contacts, on="customer_id") for name, frame in lists.items()}
