"""The pipeline's jobs: each operation (validate, build snapshots, backtest, train, score, publish) wired once from
the domain functions of features/, models/ and serving/. The CLI calls them directly and the Prefect flows call
them as tasks, so every operation has one path. What a cached step depends on is in :mod:`pipelines.keys`; the
summaries people read are in :mod:`pipelines.summaries`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from common.config import PipelineConfig
from common.errors import ChurnError, ConfigError, DataError
from features.snapshots import build_snapshots, latest_labeled_cutoff, open_sources
from pipelines import keys

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def round_log(say: Progress, every_seconds: float = 10.0):
    """``on_model(spec, stage)`` for :func:`fit_final` that reports a model's boosting rounds through ``say`` (a
    log line when it starts, then at most one every ``every_seconds``): the flows' steady progress lines."""
    import time

    def on_model(spec, stage: str = "backtest"):
        said = {"at": time.monotonic()}
        say(f"{spec.name} ({stage}): boosting")

        def on_round(done: int, total: int) -> None:
            now = time.monotonic()
            if now - said["at"] >= every_seconds:
                said["at"] = now
                say(f"{spec.name} ({stage}): round {done:,} of at most {total:,}")
        return on_round
    return on_model


def new_run_id(now: dt.datetime | None = None) -> str:
    """A sortable, unique run id: UTC time plus a short random suffix."""
    import uuid

    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def data_as_of(cfg: PipelineConfig, explicit: dt.date | None = None) -> dt.date:
    """The data's as-of date (rows after it are rejected as future rows): ``explicit``, else ``as_of`` of the
    config, else today."""
    return explicit or cfg.as_of or dt.date.today()


def validate(cfg: PipelineConfig, as_of: dt.date, run_id: str, on_table=None) -> None:
    """Read and validate every configured table (rejected rows to quarantine, validated tables swapped in
    together); ``on_table(name, report)`` after each table."""
    from features.ingest import ingest

    ingest(cfg, as_of, run_id, on_table=on_table)


def truth_dir(cfg: PipelineConfig) -> Path | None:
    """The generator's ground truth beside the raw data, when the data came from `churn generate`."""
    folder = cfg.raw_path / "truth"
    return folder if (folder / "params.json").exists() else None


def backtest_folder(cfg: PipelineConfig, as_of: dt.date) -> Path:
    return cfg.resolve(cfg.outputs.dir) / "backtest" / f"as_of={as_of.isoformat()}"


def backtest(cfg: PipelineConfig, as_of: dt.date | None = None, report_path: Path | None = None,
             progress: Progress = _quiet, snapshots: pd.DataFrame | None = None, on_model=None) -> "BacktestRun":
    """Backtest at ``as_of`` (default: the latest cutoff with a complete churn window); write the JSON report and
    the plots beside it. ``snapshots`` (labeled, at least at :func:`models.backtest.needed_cutoffs`) are built
    when not given; ``on_model`` is :func:`models.backtest.run_backtest`'s (progress of the boosting rounds). A
    model that steps aside says so through ``progress``; a required one that cannot be trained stops the run."""
    from features.synthetic.oracle import true_no_purchase_probability
    from models.backtest import needed_cutoffs, run_backtest
    from models.catalog import MODELS, StepAside

    progress("opening the validated tables")
    src = open_sources(cfg.validated_dir, memory_limit=cfg.snapshots.duckdb_memory_limit)
    latest = latest_labeled_cutoff(src.last_day, cfg.horizons.churn_days)
    as_of = as_of or latest
    if as_of > latest:
        raise DataError(f"cannot backtest at {as_of}: its {cfg.horizons.churn_days}-day churn window ends after the "
                        f"data's last day {src.last_day}; use --as-of {latest} or earlier")
    if snapshots is None:
        cutoffs = needed_cutoffs(as_of, src.last_day, cfg.horizons, cfg.snapshots, first_day=src.first_day)
        progress(f"building {len(cutoffs)} labeled snapshots ({cutoffs[0]} .. {cutoffs[-1]})")
        snapshots = build_snapshots(src, cutoffs, cfg.horizons, with_labels=True)
    oracle = None
    truth = truth_dir(cfg)
    if truth is not None:
        progress("computing the oracle's true probabilities")
        oracle = true_no_purchase_probability(truth, as_of, cfg.horizons.churn_days).set_index("customer_id")
    progress("training and evaluating the models and baselines")
    try:
        result = run_backtest(snapshots, as_of, src.last_day, cfg.horizons, cfg.snapshots, cfg.models, oracle,
                              first_day=src.first_day, on_model=on_model)
    except StepAside as exc:
        raise ChurnError(required_missing(exc)) from None
    except ValueError as exc:
        raise ChurnError(f"backtest at {as_of}: {exc}") from None
    for spec in MODELS:
        section = result.report.get(spec.section, {})
        if "skipped" in section:
            progress(f"{spec.name} steps aside: {section['skipped']}")
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


def required_missing(exc) -> str:
    """The message of a required model (:class:`models.catalog.StepAside`) that the data cannot train."""
    return (f"{exc.model} cannot be trained on this data: {exc.reason}. It is required (the at-risk list is made "
            "of its scores); `churn validate` prints what the data allows and the settings that would make it "
            "possible")


def fit_final(cfg: PipelineConfig, progress: Progress = _quiet, snapshots: pd.DataFrame | None = None,
              on_model=None) -> tuple["BacktestRun", dict]:
    """Backtest at the latest labeled cutoff, then train every model of the catalogue on all labeled snapshots.
    Returns the backtest and ``{model name: ScoringModel}``; a model that stepped aside is left out (the progress
    messages say why, once). Nothing is logged or registered.

    ``snapshots``: the labeled snapshots at :func:`training_cutoffs` when already built (else built here);
    ``on_model(spec, stage)`` returns the ``on_round`` callback of that model's boosting rounds (stage
    ``backtest`` or ``final``) or None."""
    from models.catalog import MODELS, StepAside

    def stage(name: str):
        return (lambda spec: on_model(spec, name)) if on_model else None

    run = backtest(cfg, None, progress=progress, snapshots=snapshots, on_model=stage("backtest"))
    report, result = run.result.report, run.result
    snapshots = result.snapshots  # BG/NBD features already added by the backtest
    final = {}
    for spec in MODELS:
        if spec.section not in result.evaluations:
            continue  # stepped aside in the backtest (said there)
        progress(f"training {spec.name} on every labeled snapshot")
        try:
            final[spec.name] = spec.fit(spec.rows(snapshots, cfg.horizons), cfg.models,
                                        on_model(spec, "final") if on_model else None)
        except StepAside as exc:
            if spec.required:
                raise ChurnError(required_missing(exc)) from None
            progress(str(exc))
            report[spec.section] = {"skipped": exc.reason}
    return run, final


def train(cfg: PipelineConfig, progress: Progress = _quiet, snapshots: pd.DataFrame | None = None,
          on_model=None) -> list:
    """:func:`fit_final`, then log each model to MLflow, register it and decide the champion. Returns the
    :class:`models.tracking.Registered` versions."""
    from models import tracking
    from models.catalog import get
    from models.plots import write_shap_plots

    run, final = fit_final(cfg, progress, snapshots, on_model)
    report, result = run.result.report, run.result
    fingerprint = keys.data_fingerprint(cfg, run.last_day)
    registered = []
    for name, model in final.items():
        spec = get(name)
        rows = result.evaluations[spec.section]
        evaluation = {k: report[spec.section][k] for k in spec.logged_metrics}
        evaluation.update(eval_as_of=report[spec.section]["as_of"], data_hash=fingerprint["hash"])

        def champion_metrics(champion, rows=rows, spec=spec):
            return spec.metrics(spec.outcome(rows), champion.score(rows))

        shap_plots = write_shap_plots(model, rows, run.report_path.parent, seed=cfg.models.seed)
        progress(f"logging {name} to MLflow")
        registered.append(tracking.log_and_register(cfg, model, evaluation, report, fingerprint, run.plots,
                                                    rows, champion_metrics, shap_plots))
    return registered


def default_report_path(cfg: PipelineConfig) -> Path:
    """Where :func:`backtest` without an as-of date writes its report (the latest cutoff with a complete churn
    window)."""
    return backtest_folder(cfg, latest_labeled_cutoff(last_data_day(cfg), cfg.horizons.churn_days)) / "report.json"


def read_report(path: Path) -> dict:
    return json.loads(Path(path).read_text())


@dataclass(frozen=True)
class Span:
    """The validated transactions' first and last day."""

    first_day: dt.date
    last_day: dt.date


def data_span(cfg: PipelineConfig) -> Span:
    """The first and latest transaction day of the validated data."""
    src = open_sources(cfg.validated_dir, memory_limit=cfg.snapshots.duckdb_memory_limit)
    return Span(src.first_day, src.last_day)


def last_data_day(cfg: PipelineConfig) -> dt.date:
    """The latest transaction day of the validated data."""
    return data_span(cfg).last_day


def training_cutoffs(cfg: PipelineConfig, span: Span) -> list[dt.date]:
    """The labeled cutoffs `train` reads: those of a backtest at the latest labeled cutoff (none on or before the
    data's first day)."""
    from models.backtest import needed_cutoffs

    return needed_cutoffs(latest_labeled_cutoff(span.last_day, cfg.horizons.churn_days), span.last_day,
                          cfg.horizons, cfg.snapshots, first_day=span.first_day)


def scoring_cutoff(cfg: PipelineConfig, last_day: dt.date) -> dt.date:
    """``scoring.as_of``, else the day after the latest transaction (so that the latest day counts).

    A ``scoring.as_of`` later than that is refused (unless ``scoring.allow_as_of_after_data``): the data says
    nothing about the days in between, so every customer would look silent for them and the lists would be made
    of that gap, not of behaviour."""
    latest = last_day + dt.timedelta(days=1)
    as_of = cfg.scoring.as_of or latest
    if as_of > latest and not cfg.scoring.allow_as_of_after_data:
        raise ChurnError(f"cannot score as of {as_of}: the data ends on {last_day}, so the latest as-of date it "
                         f"supports is {latest} ({(as_of - latest).days} days earlier); without data for the days "
                         "in between every customer would look silent for them. Load newer data, use an earlier "
                         "--as-of, or pass --force-as-of (scoring.allow_as_of_after_data: true) to score anyway")
    return as_of


def build_snapshot_folder(cfg: PipelineConfig, name: str, cutoffs: list[dt.date], with_labels: bool,
                          inputs_key: str | None = None, engine: str | None = None,
                          progress: Progress = _quiet) -> Path:
    """Build the snapshots at ``cutoffs`` on ``engine`` (default: ``cfg.engine``) and write them to
    ``<data_dir>/features/<name>``; ``inputs_key`` (:func:`pipelines.keys.snapshot_key`) is recorded in its
    metadata. The engine writes the partitions itself (:func:`features.snapshots.write_snapshots_in_engine`: a
    large stack never passes through one pandas frame, nor Spark's driver); on Spark (``cfg.spark``) a labeled stack
    holds only ``spark.training_sample_customers`` customers when that is set (the sample's size is in the metadata
    and said through ``progress``)."""
    from features.snapshots import spark_session, write_snapshots_in_engine

    engine = engine or cfg.engine
    if engine not in ("duckdb", "spark"):
        raise ChurnError(f"the engine must be 'duckdb' or 'spark', got {engine!r}")
    spark = spark_session(cfg.spark) if engine == "spark" else None
    src = open_sources(cfg.validated_dir, engine, spark, memory_limit=cfg.snapshots.duckdb_memory_limit)
    extra = {"engine": engine, "with_labels": with_labels, "data_last_day": src.last_day.isoformat(),
             "horizons": cfg.horizons.model_dump(), "inputs_key": inputs_key}
    sample = cfg.spark.training_sample_customers if engine == "spark" and with_labels else None
    folder = write_snapshots_in_engine(src, cutoffs, cfg.horizons, with_labels, cfg, name, cfg.validated_dir,
                                       extra, sample_customers=sample)
    if sample is not None:
        drawn = json.loads((folder / "metadata.json").read_text())["sample"]
        progress(f"{name}: a sample of {drawn['customers']:,} customers ({drawn['rows']:,} rows; "
                 f"spark.training_sample_customers: {sample:,})")
    return folder


def stack_cutoffs(cfg: PipelineConfig, span: Span, end: dt.date | None = None) -> list[dt.date]:
    """The training stack's cutoffs: the configured cadence up to ``end`` (default: the latest labeled cutoff),
    none on or before the data's first day."""
    from features.snapshots import cutoff_schedule

    return cutoff_schedule(end or latest_labeled_cutoff(span.last_day, cfg.horizons.churn_days), cfg.snapshots,
                           span.first_day)


# ---- scoring ------------------------------------------------------------------------------------------------------


def load_champions(cfg: PipelineConfig, unregistered: dict | None = None) -> dict:
    """The ``champion`` of every model, as :class:`serving.scoring.Champion`. A required model without one is a
    clear error, unless ``unregistered`` (model name -> a model trained by a dry run, never registered) has it: a
    dry run scores with what a real run would promote when there is no champion yet. A model that is not required
    and has neither (it stepped aside) is left out."""
    from models.catalog import MODELS
    from models.tracking import champion_versions, load_champion
    from serving.scoring import Champion

    versions, unregistered = champion_versions(cfg), unregistered or {}
    champions = {}
    for spec in MODELS:
        if versions[spec.name] is None and spec.name in unregistered:
            champions[spec.name] = Champion(spec.name, "unregistered", unregistered[spec.name])
        elif spec.required or versions[spec.name] is not None:
            champions[spec.name] = Champion(spec.name, *load_champion(cfg, spec.name))
    return champions


def reasons_path(cfg: PipelineConfig) -> Path:
    """``scoring.reasons_file`` (relative to data_dir), else the shipped ``configs/reasons.yaml``."""
    from serving.reasons import DEFAULT_REASONS

    return cfg.resolve(cfg.scoring.reasons_file) if cfg.scoring.reasons_file else DEFAULT_REASONS


def playbooks_path(cfg: PipelineConfig) -> Path:
    """``targeting.playbooks_file`` (relative to data_dir), else the shipped playbooks."""
    from serving.targeting import DEFAULT_PLAYBOOKS

    return cfg.resolve(cfg.targeting.playbooks_file) if cfg.targeting.playbooks_file else DEFAULT_PLAYBOOKS


def score(cfg: PipelineConfig, snapshot: pd.DataFrame, champions: dict, run_id: str,
          folder: str | Path | None = None) -> tuple[dict, dict, pd.DataFrame]:
    """Score one snapshot with the champions; returns the lists, their summary and the run's score record
    (:func:`serving.live.score_record`: every scored customer, for the live performance once outcomes are known).
    With ``engine: spark`` the scores and the reasons are computed on Spark's executors from the snapshot's
    ``folder`` (:mod:`serving.spark`); the lists are the same."""
    from common.faults import checkpoint
    from serving.reasons import load_reasons
    from serving.scoring import (add_purchase_history, add_reasons, build_lists, in_currency, score_drift,
                                 score_snapshot, summarize, target_lists)
    from serving.targeting import check_budgets, load_playbooks, marketing_consent

    catalog, explain = load_reasons(reasons_path(cfg)), None
    if cfg.engine == "spark":
        from features.snapshots import spark_session
        from serving.spark import SparkScorer

        if folder is None:
            raise ValueError("scoring on Spark reads the snapshot's folder: pass folder=")
        scorer = SparkScorer(spark_session(cfg.spark), folder, snapshot, cfg.horizons, cfg.spark.score_partitions)
        scores, inputs = scorer.score(champions, cfg.scoring.next_order_date_max_churn)
        explain = scorer.explainer(catalog, cfg.base_currency)
    else:
        scores, inputs = score_snapshot(snapshot, champions, cfg.horizons, with_inputs=True,
                                        next_order_max_churn=cfg.scoring.next_order_date_max_churn)
    checkpoint("score.after_scoring")
    ranked = build_lists(scores, champions, run_id)
    playbooks = load_playbooks(playbooks_path(cfg))
    as_of = pd.Timestamp(snapshot["cutoff"].iloc[0]).date()
    check_budgets(cfg.targeting.budgets)
    lists, campaigns = target_lists(ranked, inputs, marketing_consent(cfg.validated_dir), cfg.targeting,
                                    playbooks, as_of, catalog)
    audit: dict = {}
    lists = add_reasons(lists, inputs, champions, catalog, cfg.base_currency, cfg.horizons, audit,
                        playbooks, explain)  # only the published customers are explained
    lists = add_purchase_history(lists, cfg.validated_dir / "transactions.parquet", as_of)
    lists = in_currency(lists, cfg.base_currency)
    summary = summarize(scores, lists, champions, cfg.targeting.at_risk_threshold, campaigns)
    drift = score_drift(scores, inputs, champions, cfg.horizons, cfg.scoring.drift_warn_psi,
                        cfg.scoring.drift_alert_psi)
    from serving.live import score_record

    return lists, {**summary, "reason_audit": audit, "drift": drift}, score_record(scores, lists)


# ---- live performance ---------------------------------------------------------------------------------------------


def records_dir(cfg: PipelineConfig) -> Path:
    """Where the score records of the published runs are kept (under data_dir: `churn forget` erases in them)."""
    return Path(cfg.data_dir) / "monitoring" / "scores"


def live_dir(cfg: PipelineConfig) -> Path:
    """The live-performance history: ``live_performance`` and ``reliability`` (Parquet and CSV)."""
    return cfg.resolve(cfg.outputs.dir) / "monitoring"


def keep_record(cfg: PipelineConfig, record: pd.DataFrame, as_of: dt.date, run_id: str, champions: dict,
                backtests: dict | None = None) -> Path:
    """Keep a published run's score record with the backtest figures its champions were promoted on
    (``<data_dir>/monitoring/scores/as_of=<DATE>/``: ``scores.parquet`` and ``record.json``; a later run at the
    same date replaces it, as it replaces the lists). ``backtests`` (model name -> metrics): those figures when
    known already, else read from the registry."""
    from common.files import replace_folder

    if backtests is None:
        from models.tracking import champion_backtests

        registered = {name: c.version for name, c in champions.items() if c.version != "unregistered"}
        backtests = champion_backtests(cfg, registered) if registered else {}
    meta = {"as_of": as_of.isoformat(), "run_id": run_id, "customers": int(len(record)),
            "champions": {name: {"version": c.version, "backtest": backtests.get(name, {})}
                          for name, c in sorted(champions.items())}}

    def fill(tmp: Path) -> None:
        record.to_parquet(tmp / "scores.parquet", index=False)
        (tmp / "record.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")

    folder = records_dir(cfg) / f"as_of={as_of.isoformat()}"
    return replace_folder(folder, fill)


@dataclass
class LivePerformance:
    history: pd.DataFrame  # one row per scored as-of date and model whose outcome is known
    reliability: pd.DataFrame  # the classifiers' reliability curves, per as-of date
    new: list[dict]  # the history rows computed by this call (not kept from an earlier one)
    pending: list[dict]  # {as_of, model, known_from} of the records whose outcome is not known yet
    margin: float

    def lines(self) -> list[str]:
        from serving.live import flag_lines

        return flag_lines(self.history, self.margin)


def _read_frame(path: Path) -> pd.DataFrame | None:
    """The table at ``path``; None when there is none or it has no rows (nothing judged yet)."""
    frame = pd.read_parquet(path) if path.exists() else None
    return frame if frame is not None and len(frame) else None


def _kept_and_new(old: pd.DataFrame | None, kept: set[str], rows: list[dict]) -> pd.DataFrame:
    """The rows of ``old`` at the ``kept`` as-of dates, then the new ``rows``."""
    parts = [old[old["as_of"].isin(kept)]] if old is not None else []
    return pd.concat([*parts, pd.DataFrame(rows)], ignore_index=True) if parts or rows else pd.DataFrame()


def live_performance(cfg: PipelineConfig, progress: Progress = _quiet) -> LivePerformance:
    """The live performance of every kept score record whose outcome the data now shows (:mod:`serving.live`),
    written to ``<outputs>/monitoring/`` all or nothing. A record already evaluated with the same run, the same
    customers and the same closed windows keeps its rows; the others get one labeled snapshot build for all."""
    import pyarrow.parquet as pq

    from common.files import replace_folder
    from models.catalog import MODELS
    from serving.live import HISTORY_KEY, evaluate, pending, window_closed

    margin = cfg.scoring.live_performance_margin
    metas = [json.loads(p.read_text()) for p in sorted(records_dir(cfg).glob("as_of=*/record.json"))]
    src = open_sources(cfg.validated_dir, memory_limit=cfg.snapshots.duckdb_memory_limit)
    last_day = src.last_day
    old = _read_frame(live_dir(cfg) / "live_performance.parquet")
    old_curves = _read_frame(live_dir(cfg) / "reliability.parquet")
    done_file = live_dir(cfg) / "evaluated.json"
    done = json.loads(done_file.read_text()) if done_file.exists() else {}
    kept, todo, evaluated = set(), [], {}
    for meta in metas:
        as_of = dt.date.fromisoformat(meta["as_of"])
        due = sorted(spec.name for spec in MODELS
                     if spec.name in meta["champions"] and window_closed(spec, as_of, last_day, cfg.horizons))
        if not due:
            continue
        rows = pq.ParquetFile(records_dir(cfg) / f"as_of={meta['as_of']}" / "scores.parquet").metadata.num_rows
        key = {"run_id": meta["run_id"], "customers": rows, "models": due}  # fewer after an erasure
        if old is not None and done.get(meta["as_of"]) == key:
            kept.add(meta["as_of"])
        else:
            todo.append(meta)
        evaluated[meta["as_of"]] = key
    new, curves = [], []
    if todo:
        dates = [dt.date.fromisoformat(meta["as_of"]) for meta in todo]
        progress(f"live performance: outcomes of the scores of {', '.join(d.isoformat() for d in dates)}")
        labeled = build_snapshots(src, dates, cfg.horizons, with_labels=True)
        for meta, as_of in zip(todo, dates):
            record = pd.read_parquet(records_dir(cfg) / f"as_of={meta['as_of']}" / "scores.parquet")
            rows, curve = evaluate(record, meta, labeled[labeled["cutoff"] == as_of], last_day, cfg.horizons,
                                   margin)
            new += rows
            curves += curve
    history, reliability = _kept_and_new(old, kept, new), _kept_and_new(old_curves, kept, curves)
    if len(history):
        history = history.sort_values(HISTORY_KEY, kind="stable").reset_index(drop=True)
    if evaluated != done or not (live_dir(cfg) / "live_performance.parquet").exists():
        def fill(tmp: Path) -> None:
            for name, frame in (("live_performance", history), ("reliability", reliability)):
                frame.to_parquet(tmp / f"{name}.parquet", index=False)
                frame.to_csv(tmp / f"{name}.csv", index=False, lineterminator="\n")
            (tmp / "evaluated.json").write_text(json.dumps(evaluated, indent=2) + "\n")

        replace_folder(live_dir(cfg), fill)
    return LivePerformance(history, reliability, new, pending(metas, last_day, cfg.horizons), margin)


def drift_lines(drift: dict | None) -> list[str]:
    """One line per model with drift warnings or alerts, or without a training profile (for the flow's log and
    the CLI)."""
    lines = []
    for name, state in (drift or {}).get("models", {}).items():
        if not state["reference"]:
            if state["rows"]:
                lines.append(f"{name}: no training profile to measure drift against (trained before the "
                             "current drift profiles): `churn train --force` gives it one")
            continue
        by_column = {c["column"]: c["psi"] for c in state["columns"]}
        for level, columns in (("drift alert", state["alerts"]), ("drift warning", state["warnings"])):
            if columns:
                shown = ", ".join(f"{c} (PSI {by_column[c]:.2f})" for c in columns[:8])
                more = f" and {len(columns) - 8} more" if len(columns) > 8 else ""
                lines.append(f"{name}: {level} on {shown}{more}")
    return lines


def refuse_on_drift(cfg: PipelineConfig, drift: dict | None) -> None:
    """With ``scoring.block_on_drift``, refuse to publish when any drift alert fired."""
    from serving.scoring import drift_alerts

    alerts = drift_alerts(drift)
    if cfg.scoring.block_on_drift and alerts:
        raise ChurnError(f"drift alert on {'; '.join(alerts[:6])}{' ...' if len(alerts) > 6 else ''} at or above "
                         f"PSI {cfg.scoring.drift_alert_psi}: not published (scoring.block_on_drift is true); the "
                         "last published lists are unchanged. Look at the data, retrain (`churn train --force`) or "
                         "set scoring.block_on_drift: false to publish anyway")


def publish(cfg: PipelineConfig, lists: dict, as_of: dt.date, run_meta: dict) -> dict[str, Path]:
    """Publish the lists under the outputs directory, all or nothing."""
    from serving.publish import publish_lists, sql_url

    outputs = cfg.resolve(cfg.outputs.dir)
    if cfg.outputs.include_contact:
        lists = with_contacts(cfg, lists)
    unknown = {n for t in (cfg.exports or {}).values() for n in (t.lists or []) if n not in lists}
    if unknown:
        raise ConfigError(f"exports name unknown list(s) {sorted(unknown)}; the lists are {sorted(lists)}")
    return publish_lists(lists, outputs, as_of, run_meta, sql=sql_url(outputs, cfg.outputs.sql_url),
                         lock_timeout=cfg.outputs.sql_lock_timeout_seconds, exports=cfg.exports)


def preflight(cfg: PipelineConfig) -> list:
    """:func:`models.preflight.preflight` on the validated data: one check per model."""
    from features.populations import PurchaseDays
    from models.preflight import preflight as check

    return check(PurchaseDays.read(cfg.validated_dir), cfg.horizons, cfg.snapshots, cfg.models, set(cfg.tables))


def require_trainable(checks: list) -> None:
    """Stop (a clear error) when a required model cannot be trained; the others may step aside."""
    blocked = [c for c in checks if c.required and not c.ok]
    if blocked:
        raise ChurnError("; ".join(c.line for c in blocked) + ". `churn validate` prints every model's preflight")


def data_columns(cfg: PipelineConfig) -> tuple[set[str], set[str]]:
    """What this data and config provide, from the validated tables (nothing is computed: the snapshot's schema):
    the model features, and every column a playbook condition can read (snapshot columns, the scores of the
    models whose population the data has, the list columns, risk tier and consent)."""
    from features.snapshots import snapshot_expr
    from models.catalog import MODELS
    from models.training import BTYD_FEATURES, feature_columns
    from serving.lists import LISTS

    src = open_sources(cfg.validated_dir, memory_limit=cfg.snapshots.duckdb_memory_limit)
    snapshot = set(snapshot_expr(src, [src.last_day + dt.timedelta(days=1)], cfg.horizons).columns)
    snapshot |= set(BTYD_FEATURES)
    features = set(feature_columns(pd.DataFrame(columns=sorted(snapshot))))
    absent_scores = {spec.score_column for spec in MODELS if not set(spec.population.needs) <= snapshot}
    listed = {c for spec in LISTS for c in spec.list_columns} - absent_scores
    return features, snapshot | listed | {"risk_tier", "marketing_consent"}


def config_warnings(cfg: PipelineConfig) -> list[str]:
    """The playbooks that can never match and the reasons that can never be written on this data (one line
    each): reported by `churn validate` and before a run, so a config is checked against the data before anything
    is trained or registered. Neither stops a run."""
    from serving.reasons import load_reasons, unwritable
    from serving.targeting import load_playbooks, unmatchable

    features, columns = data_columns(cfg)
    playbooks, catalog = load_playbooks(playbooks_path(cfg)), load_reasons(reasons_path(cfg))
    return [*unmatchable(playbooks, columns), *playbooks.untranslated(catalog.languages),
            *unwritable(catalog, features, columns - {"risk_tier", "marketing_consent"})]


def consent_warning(cfg: PipelineConfig) -> str | None:
    """Why nobody will be contacted when consent is unknown and required (None when consent can be known)."""
    if not cfg.targeting.require_consent:
        return None
    if "customers" not in cfg.tables:
        missing = "no customers table is configured"
    elif "marketing_consent" not in cfg.tables["customers"].columns and _validated_lacks(cfg, "marketing_consent"):
        missing = "the customers table has no marketing_consent column"
    else:
        return None
    return (f"{missing}, so nobody's marketing consent is known and targeting.require_consent is true: the lists "
            "are scored but nobody is selected for contact (0 targeted). Add marketing_consent to a customers "
            "table (tables.customers.columns.marketing_consent names the column), or set "
            "targeting.require_consent: false if consent is checked downstream")


def _validated_lacks(cfg: PipelineConfig, column: str) -> bool:
    path = cfg.validated_dir / "customers.parquet"
    if not path.exists():
        return False  # not validated yet: nothing to say
    import pyarrow.parquet as pq

    return column not in pq.ParquetFile(path).schema_arrow.names


def recover_outputs(cfg: PipelineConfig) -> list[str]:
    """Repair what an interrupted publish or erasure left under the outputs (one line per repair)."""
    from serving.publish import recover, sql_url

    outputs = cfg.resolve(cfg.outputs.dir)
    return recover(outputs, sql_url(outputs, cfg.outputs.sql_url), cfg.outputs.sql_lock_timeout_seconds)


def with_contacts(cfg: PipelineConfig, lists: dict) -> dict:
    """``publish.include_contact``: e-mail, name and phone joined at publish time (never earlier)."""
    path = cfg.validated_dir / "customer_contacts.parquet"
    if not path.exists():
        raise DataError(f"outputs.include_contact is true but {path} is missing: configure a customers table with "
                        "email, name or phone, or set it to false")
    contacts = pd.read_parquet(path).set_index("customer_id")
    return {name: frame.join(contacts, on="customer_id") for name, frame in lists.items()}


def report(cfg: PipelineConfig, as_of: dt.date | None = None, period: str = "month", periods: int = 12,
           progress: Progress = _quiet) -> tuple[Path, dict]:
    """The KPI report (:mod:`features.kpis`, :mod:`serving.report`) of the ``periods`` complete periods before
    ``as_of`` (default: the scoring cutoff), written to ``<outputs>/reports/as_of=<DATE>/`` all or nothing.
    Returns the folder and the JSON summary."""
    from common.files import replace_folder
    from features.contract import CONTRACT
    from features.kpis import PERIODS, boundaries, boundary_status, cohort_matrix, kpi_table
    from serving.lists import LISTS
    from serving.publish import list_folder
    from serving.report import live_info, report_folder, summary, write_report

    if period not in PERIODS:
        raise ChurnError(f"the report's period must be one of {', '.join(PERIODS)}, got {period!r}")
    src = open_sources(cfg.validated_dir, memory_limit=cfg.snapshots.duckdb_memory_limit)
    as_of = as_of or scoring_cutoff(cfg, src.last_day)
    tables = {}
    for name, columns in (("transactions", ["customer_id", "ts", "amount"]), ("customers", None),
                          ("surveys", None), ("support_tickets", None)):
        path = cfg.validated_dir / f"{name}.parquet"
        if path.exists():
            frame = pd.read_parquet(path, columns=columns)
            if name != "customers":  # the events before the cutoff (every customer record is kept)
                frame = frame[frame[CONTRACT[name].time_column] < pd.Timestamp(as_of)]
            tables[name] = frame
    edges = boundaries(as_of, src.first_day, period, periods)
    progress(f"customers at {len(edges)} period boundaries")
    status = boundary_status(src, edges, cfg.horizons) if len(edges) > 1 else None
    progress("KPIs per period, market and segment")
    kpis = kpi_table(status, tables["transactions"], edges, period, customers=tables.get("customers"),
                     surveys=tables.get("surveys"), tickets=tables.get("support_tickets"))
    progress("cohort retention matrix")
    countries = (tables["customers"][["customer_id", "country"]] if "customers" in tables
                 and "country" in tables["customers"].columns else None)
    cohorts = cohort_matrix(tables["transactions"], as_of, countries)
    run = list_folder(cfg.resolve(cfg.outputs.dir), LISTS[0].name, as_of) / "run.json"
    scored = json.loads(run.read_text()) if run.exists() else {}
    info = summary(kpis, cohorts, as_of, period, cfg.base_currency, scored.get("mean_predicted_cltv"),
                   cfg.horizons.cltv_days)
    info["drift"] = scored.get("drift")  # the scoring run's, when one published lists at this date
    live = live_performance(cfg, progress)  # kept by the scoring run before it; computed here when new
    info["live"] = live_info(live.history, live.reliability, live.pending, live.lines(), live.margin)
    note = (f"A customer is active on a day when their last order is at most {cfg.horizons.activity_window_days} "
            "days before it (the labels' rule); periods are complete calendar "
            f"{period}s before {as_of.isoformat()}; formulas in docs/reports.md.")
    folder = report_folder(cfg.resolve(cfg.outputs.dir), as_of)
    progress("writing the report")
    replace_folder(folder, lambda tmp: write_report(tmp, kpis, cohorts, info, note))
    return folder, info
