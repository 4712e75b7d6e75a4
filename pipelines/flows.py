"""Prefect flows: ingest, build-features, train, score (with the KPI report after publishing) and the parent
churn-pipeline. Orchestration only.

Every task calls a job of :mod:`pipelines.jobs` (which calls the domain code in features/, models/, serving/).
Retries with back-off are on the I/O tasks only (reading sources, the tracking store, publishing), never on a
user error or an injected test failure. The feature build and the training are cached on fingerprints of their
inputs (validated data, code, settings): an unchanged re-run skips them. Cache records live under
``<data_dir>/prefect/results``.

With no ``PREFECT_API_URL`` the flows run against Prefect's temporary local API (:mod:`pipelines.runtime` keeps
it quiet and offline); with it set they report to that server unchanged. Import :mod:`pipelines.runtime` and call
``configure`` before importing this module.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from common.config import PipelineConfig, load_config
from common.errors import ChurnError
from common.faults import InjectedFailure
from models.catalog import MODELS
from pipelines import jobs, keys
from pipelines.summaries import (INGEST_COLUMNS, TRAINING_COLUMNS, backtest_markdown, ingest_row, markdown,
                                 score_markdown)


def _retry_io_only(task, task_run, state) -> bool:
    """Retry transient I/O errors; a user error or an injected failure fails at once."""
    error = state.result(raise_on_failure=False)
    return not isinstance(error, (ChurnError, InjectedFailure, ValueError))


IO = dict(retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=_retry_io_only, cache_policy=NO_CACHE)


def _config(config_path: str | None, data_dir: str | None, as_of: dt.date | None = None,
            force_as_of: bool = False, engine: str | None = None) -> PipelineConfig:
    """The validated config with the flow's overrides (a bad value fails the flow with a message naming it)."""
    return load_config(config_path, {"data_dir": data_dir, "scoring.as_of": as_of.isoformat() if as_of else None,
                                     "scoring.allow_as_of_after_data": True if force_as_of else None,
                                     "engine": engine})


def _results(cfg: PipelineConfig) -> Path:
    return (cfg.data_dir / "prefect" / "results").resolve()


# ---- tasks ----------------------------------------------------------------------------------------------------


@task(name="ingest-tables", **IO)
def ingest_tables(cfg: PipelineConfig) -> tuple[dict, list[dict]]:
    """Read and validate every configured table; quarantine rejected rows; write the validated tables. Returns the
    counts per table and the summary rows."""
    logger = get_run_logger()
    counts, rows = {}, []

    def on_table(name, report) -> None:
        rows.append(ingest_row(name, report))
        counts[name] = {"rows": report.rows_in, "kept": report.rows_ok, "rejected": report.rejected}
        logger.info(f"{name}: {report.rows_in:,} rows, {report.rows_ok:,} kept, {report.rejected:,} rejected "
                    f"({rows[-1]['reasons']}), {report.suppressed:,} of forgotten customers dropped")

    jobs.validate(cfg, jobs.data_as_of(cfg), jobs.new_run_id(), on_table)
    return counts, rows


@task(name="preflight", cache_policy=NO_CACHE)
def preflight_check(cfg: PipelineConfig) -> list[str]:
    """Which models this data can train (one log line each, the reason and the fixing setting for those that
    cannot) and the playbooks and reasons it cannot use; fails only when a required model cannot be trained."""
    logger = get_run_logger()
    checks = jobs.preflight(cfg)
    for check in checks:
        (logger.info if check.ok else logger.warning)(check.line)
    for line in jobs.config_warnings(cfg):
        logger.warning(line)
    jobs.require_trainable(checks)
    return [c.line for c in checks]


@task(name="build-snapshots", cache_key_fn=lambda context, parameters: parameters["key"], persist_result=True)
def build_snapshots(cfg: PipelineConfig, name: str, cutoffs: list[dt.date], with_labels: bool, key: str) -> str:
    """Build the snapshots at ``cutoffs`` into ``<data_dir>/features/<name>``; cached on ``key``."""
    say = get_run_logger().info
    say(f"building {name} on {cfg.engine}: {len(cutoffs)} cutoff(s) {cutoffs[0]} .. {cutoffs[-1]}")
    return str(jobs.build_snapshot_folder(cfg, name, cutoffs, with_labels, key, progress=say))


@task(name="champion-versions", **IO)
def champion_versions(cfg: PipelineConfig) -> dict[str, str | None]:
    from models.tracking import champion_versions as versions

    return versions(cfg)


@task(name="train-models", cache_key_fn=lambda context, parameters: parameters["key"], persist_result=True)
def train_models(cfg: PipelineConfig, snapshots_folder: str, key: str) -> list[dict]:
    """Backtest, train, log and register every model; cached on ``key`` (data, code and settings)."""
    from features.snapshots import read_snapshots

    logger = get_run_logger()
    registered = jobs.train(cfg, progress=logger.info, snapshots=read_snapshots(snapshots_folder),
                            on_model=jobs.round_log(logger.info))
    return [{"model": r.name, "version": r.version, "decision": "champion" if r.decision.promote else "challenger",
             "reason": r.decision.reason} for r in registered]


@task(name="backtest", cache_policy=NO_CACHE)
def backtest_only(cfg: PipelineConfig, snapshots_folder: str) -> str:
    from features.snapshots import read_snapshots

    say = get_run_logger().info
    run = jobs.backtest(cfg, None, progress=say, snapshots=read_snapshots(snapshots_folder),
                        on_model=jobs.round_log(say))
    return str(run.report_path)


@task(name="train-unregistered", cache_policy=NO_CACHE)
def train_unregistered(cfg: PipelineConfig, snapshots_folder: str) -> tuple[str, dict]:
    """Backtest and train every model as `train-models` does, registering nothing (a dry run without champions)."""
    from features.snapshots import read_snapshots

    say = get_run_logger().info
    run, models = jobs.fit_final(cfg, progress=say, snapshots=read_snapshots(snapshots_folder),
                                 on_model=jobs.round_log(say))
    return str(run.report_path), models


@task(name="load-champions", **IO)
def load_champions(cfg: PipelineConfig, unregistered: dict | None = None) -> dict:
    return jobs.load_champions(cfg, unregistered)


@task(name="score-customers", cache_policy=NO_CACHE)
def score_customers(cfg: PipelineConfig, snapshot_folder: str, champions: dict, run_id: str) -> tuple:
    from features.snapshots import read_snapshots

    return jobs.score(cfg, read_snapshots(snapshot_folder), champions, run_id, snapshot_folder)


@task(name="publish-lists", **IO)
def publish_lists(cfg: PipelineConfig, lists: dict, as_of: dt.date, run_meta: dict) -> dict[str, str]:
    return {name: str(path) for name, path in jobs.publish(cfg, lists, as_of, run_meta).items()}


@task(name="log-monitoring", **IO)
def monitoring_run(cfg: PipelineConfig, as_of: str, run_id: str, drift: dict, live: list) -> str:
    """The run's drift and the live performance known so far as an MLflow monitoring run
    (:func:`models.tracking.log_monitoring`)."""
    from models.tracking import log_monitoring

    return log_monitoring(cfg, as_of, run_id, drift, live)


@task(name="live-performance", cache_policy=NO_CACHE)
def live_performance(cfg: PipelineConfig) -> dict:
    """How the scores of past runs did once their outcome is known (:func:`pipelines.jobs.live_performance`);
    monitoring, never a reason not to publish: a failure is logged as an error."""
    logger = get_run_logger()
    try:
        live = jobs.live_performance(cfg, progress=logger.info)
    except Exception as exc:  # noqa: BLE001 - recorded; the lists are still published
        logger.error(f"the live performance could not be computed ({type(exc).__name__}: {exc}); the previous "
                     "history is unchanged")
        return {"history": [], "flagged": [], "evaluated": None, "pending": []}
    for row in live.new:
        value, backtest = row.get(row["metric"]), row["backtest"]
        logger.info(f"live {row['model']} on the scores of {row['as_of']}: {row['metric']} "
                    f"{'unknown' if value is None else f'{value:.4f}'} (backtest "
                    f"{'unknown' if backtest is None else f'{backtest:.4f}'}), {row['evaluated']:,} customers")
    flagged = live.lines()
    for line in flagged:
        logger.warning(line)
    return {"history": live.history.to_dict("records"), "flagged": flagged, "evaluated": int(len(live.history)),
            "pending": live.pending}


@task(name="keep-score-record", **IO)
def keep_record(cfg: PipelineConfig, record, as_of: dt.date, run_id: str, champions: dict) -> str:
    return str(jobs.keep_record(cfg, record, as_of, run_id, champions))


@task(name="kpi-report", cache_policy=NO_CACHE)
def kpi_report(cfg: PipelineConfig, as_of: dt.date) -> str | None:
    """The KPI report of the scoring cutoff (:func:`pipelines.jobs.report`) with its headline numbers as an
    artifact. The lists are already published: a report that fails is logged as an error and leaves the previous
    report, not the scoring run, failed."""
    from serving.report import markdown as report_markdown

    logger = get_run_logger()
    try:
        folder, info = jobs.report(cfg, as_of, progress=logger.info)
    except (ChurnError, OSError, ValueError) as exc:
        logger.error(f"the KPI report failed ({type(exc).__name__}: {exc}); the previous report is unchanged")
        return None
    create_markdown_artifact(report_markdown(info), key="kpi-report", description="retention KPIs of the latest "
                                                                                  "complete period")
    logger.info(f"KPI report -> {folder / 'report.html'}")
    return str(folder)


def _snapshot(cfg: PipelineConfig, name: str, cutoffs: list[dt.date], with_labels: bool) -> tuple[str, str]:
    """The snapshot folder (built, or reused from the cache when its inputs are unchanged) and its key."""
    key = keys.snapshot_key(cfg, cutoffs, with_labels)
    stale = keys.folder_inputs_key(cfg.data_dir / "features" / name) != key  # gone or rebuilt since: not cached
    built = build_snapshots.with_options(result_storage=_results(cfg), refresh_cache=stale)(
        cfg, name, cutoffs, with_labels, key)
    return built, key


# ---- flows ----------------------------------------------------------------------------------------------------


@flow(name="ingest")
def ingest(config_path: str | None = None, data_dir: str | None = None) -> dict:
    """Read and validate every configured table (rejected rows to quarantine)."""
    counts, rows = ingest_tables(_config(config_path, data_dir))
    create_markdown_artifact(f"## Ingestion\n\n{markdown(INGEST_COLUMNS, rows)}\n",
                             key="ingest-summary", description="rows read, kept and rejected per table")
    return counts


@flow(name="build-features")
def build_features(config_path: str | None = None, data_dir: str | None = None, as_of: dt.date | None = None,
                   force_as_of: bool = False, engine: str | None = None) -> dict[str, str]:
    """The training snapshots (labeled, at the backtest's cutoffs) and the scoring snapshot at ``as_of``
    (``force_as_of``: even when it is after the day after the data's last day; ``engine``: instead of the
    config's)."""
    cfg = _config(config_path, data_dir, as_of, force_as_of, engine)
    span = jobs.data_span(cfg)
    cutoff = jobs.scoring_cutoff(cfg, span.last_day)
    training, _ = _snapshot(cfg, "training_snapshots", jobs.training_cutoffs(cfg, span), True)
    scoring, _ = _snapshot(cfg, f"snapshot_{cutoff.isoformat()}", [cutoff], False)
    built = {"training": training, "scoring": scoring}
    rows = []
    for role, folder in built.items():
        meta = json.loads((Path(folder) / "metadata.json").read_text())
        rows.append({"snapshots": role, "folder": f"`{folder}`", "features": len(meta["features"]),
                     "cutoffs": f"{meta['cutoffs'][0]} .. {meta['cutoffs'][-1]}",
                     "rows": f"{sum(meta['rows_per_cutoff'].values()):,}"})
    table = markdown(["snapshots", "folder", "cutoffs", "rows", "features"], rows)
    create_markdown_artifact(f"## Features\n\n{table}\n", key="features-summary",
                             description="snapshots built or reused")
    return built


def _run_name() -> str:
    """A dry run says so in its flow run's name (``dry-run-elite-manatee``); other runs get Prefect's kind of name."""
    from prefect.runtime import flow_run
    from prefect.utilities.names import generate_slug

    return ("dry-run-" if flow_run.parameters.get("dry_run") else "") + generate_slug(2)


def _tag_dry_run(dry_run: bool) -> None:
    """Tag the running flow run ``dry-run`` as well (the Prefect UI filters runs by tag)."""
    if not dry_run:
        return
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run.id, tags=sorted({*flow_run.tags, "dry-run"}))


@flow(name="train", flow_run_name=_run_name)
def train(config_path: str | None = None, data_dir: str | None = None, force: bool = False,
          dry_run: bool = False, checked: bool = False, engine: str | None = None) -> dict:
    """Backtest at the latest labeled cutoff, train on every labeled snapshot, log to MLflow, decide champions.

    Skipped (cached) when data, code and settings are unchanged since the last training and every model has a
    champion, unless ``force``. ``dry_run``: the backtest report only, nothing registered. The preflight runs
    first unless ``checked`` (the parent flow ran it). ``engine``: instead of the config's (where the stack is
    built).
    """
    cfg = _config(config_path, data_dir, engine=engine)
    _tag_dry_run(dry_run)
    if not checked:
        preflight_check(cfg)
    if dry_run:
        return _dry_train(cfg)[0]
    logger = get_run_logger()
    folder, _ = _snapshot(cfg, "training_snapshots", jobs.training_cutoffs(cfg, jobs.data_span(cfg)), True)
    before = champion_versions(cfg)
    refresh = force or any(before[spec.name] is None for spec in MODELS if spec.required)
    state = train_models.with_options(result_storage=_results(cfg), refresh_cache=refresh)(
        cfg, folder, keys.training_key(cfg), return_state=True)
    models = state.result()
    cached = state.is_completed() and state.name == "Cached"
    after = champion_versions(cfg)
    if cached:
        logger.info("data, code and settings unchanged since the last training: models not retrained")
    rows = [{**m, "champion": after[m["model"]]} for m in models]
    table = markdown(TRAINING_COLUMNS, rows)
    report = jobs.default_report_path(cfg)
    backtest = (f"\n\n### Backtest ({report})\n\n{backtest_markdown(jobs.read_report(report))}"
                if report.exists() else "")
    create_markdown_artifact(f"## Training\n\n{'Cached: nothing changed since the last training.' if cached else ''}"
                             f"\n\n{table}{backtest}\n", key="train-summary",
                             description="models trained, champions and the backtest they were judged on")
    return {"dry_run": False, "cached": cached, "models": rows, "champions": after}


@flow(name="score", flow_run_name=_run_name)
def score(config_path: str | None = None, data_dir: str | None = None, as_of: dt.date | None = None,
          dry_run: bool = False, force_as_of: bool = False, engine: str | None = None) -> dict:
    """Score active and lapsed customers with the champions as of ``as_of`` (default: the day after the latest
    data) and publish the at-risk and win-back lists (``dry_run``: score and summarise, publish nothing;
    ``force_as_of``: score even when ``as_of`` is after the day after the data's last day; ``engine``: instead of
    the config's)."""
    _tag_dry_run(dry_run)
    return _score(_config(config_path, data_dir, as_of, force_as_of, engine), dry_run)


def _dry_train(cfg: PipelineConfig) -> tuple[dict, dict]:
    """A dry run's training: the backtest report, and, when a required model has no champion yet, every model
    trained but not registered (what a real run would promote), for the dry run's scoring."""
    logger = get_run_logger()
    folder, _ = _snapshot(cfg, "training_snapshots", jobs.training_cutoffs(cfg, jobs.data_span(cfg)), True)
    before = champion_versions(cfg)
    if all(before[spec.name] is not None for spec in MODELS if spec.required):
        report, models = backtest_only(cfg, folder), {}
    else:
        report, models = train_unregistered(cfg, folder)
        logger.info(f"dry run: no champion yet; scoring with {', '.join(models)} trained now, not registered")
    logger.info(f"dry run: backtest report {report}; nothing registered")
    return {"dry_run": True, "report": report, "models": [], "unregistered": sorted(models)}, models


def _score(cfg: PipelineConfig, dry_run: bool, unregistered: dict | None = None) -> dict:
    """The scoring steps (see :func:`score`); ``unregistered``: a dry run's models for those without a champion."""
    logger = get_run_logger()
    for line in jobs.recover_outputs(cfg):  # before anything reads or writes the published lists
        logger.warning(line)
    champions = load_champions(cfg, unregistered)
    cutoff = jobs.scoring_cutoff(cfg, jobs.last_data_day(cfg))
    folder, key = _snapshot(cfg, f"snapshot_{cutoff.isoformat()}", [cutoff], False)
    run_id = keys.scoring_run_id(key, champions, cfg, jobs.reasons_path(cfg), jobs.playbooks_path(cfg))
    lists, summary, record = score_customers(cfg, folder, champions, run_id)
    for line in jobs.drift_lines(summary.get("drift")):
        logger.warning(line)
    paths = {}
    if not dry_run:
        jobs.refuse_on_drift(cfg, summary.get("drift"))
        live = live_performance(cfg)
        summary["live"] = {k: v for k, v in live.items() if k != "history"}
        try:
            monitoring_run(cfg, cutoff.isoformat(), run_id, summary.get("drift") or {}, live["history"])
        except Exception as exc:  # noqa: BLE001 - monitoring is recorded, never a reason not to publish
            logger.warning(f"the drift could not be logged to MLflow ({type(exc).__name__}: {exc}); it is in the "
                           "lists' run.json")
    if dry_run:
        logger.info("dry run: lists not published")
    else:
        from prefect.runtime import flow_run

        run_meta = {"run_id": run_id, "flow_run_id": str(flow_run.id), "flow_run_name": flow_run.name,
                    "published_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "snapshot": folder, "snapshot_key": key, **summary}
        paths = publish_lists(cfg, lists, cutoff, run_meta)
        for name, path in paths.items():
            logger.info(f"published {name}: {len(lists[name]):,} customers -> {path}")
        try:  # after the lists: only published scores are judged later
            keep_record(cfg, record, cutoff, run_id, champions)
        except Exception as exc:  # noqa: BLE001 - the lists are published; this run's live performance is lost
            logger.error(f"the score record could not be kept ({type(exc).__name__}: {exc}); the lists are "
                         "published, but their live performance will not be measured")
    report = None if dry_run else kpi_report(cfg, cutoff)
    summary = {**summary, "as_of": cutoff.isoformat(), "run_id": run_id, "published": paths,
               "dry_run": dry_run, "report": report}
    create_markdown_artifact(score_markdown(summary), key="score-summary", description="batch scoring summary")
    return summary


@flow(name="churn-pipeline", flow_run_name=_run_name)
def churn_pipeline(config_path: str | None = None, data_dir: str | None = None, as_of: dt.date | None = None,
                   dry_run: bool = False, force_as_of: bool = False, engine: str | None = None) -> dict:
    """ingest -> build-features -> train -> score. ``dry_run``: the lists are scored but not published and no model
    is registered; without champions the models trained by the dry run score the lists. ``engine``: where
    features are built and customers scored, instead of the config's."""
    _tag_dry_run(dry_run)
    ingest(config_path, data_dir)
    preflight_check(_config(config_path, data_dir))
    build_features(config_path, data_dir, as_of, force_as_of, engine)
    if dry_run:  # in this flow run: the unregistered models are handed to scoring in memory
        cfg = _config(config_path, data_dir, as_of, force_as_of, engine)
        trained, unregistered = _dry_train(cfg)
        scored = _score(cfg, True, unregistered)
    else:
        trained = train(config_path, data_dir, checked=True, engine=engine)
        scored = score(config_path, data_dir, as_of, force_as_of=force_as_of, engine=engine)
    training = "backtest only (dry run)" if trained["dry_run"] else (
        "not retrained: nothing changed" if trained["cached"] else "retrained; " + ", ".join(
            f"{m['model']} v{m['version']} {m['decision']}" for m in trained["models"]))
    create_markdown_artifact(f"{score_markdown(scored)}\nTraining: {training}\n", key="churn-pipeline-summary",
                             description="the whole pipeline's outcome")
    return {"train": trained, "score": scored}
