"""The ``churn`` command line. Orchestration only: every command calls domain functions."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from common.errors import ChurnError

app = typer.Typer(
    name="churn",
    help="Churn and customer-lifetime-value pipeline: data in, point-in-time features, models, retention lists.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 160)  # wide tables stay readable in logs and pipes

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config (default: $CHURN_CONFIG "
                                                                           "or configs/default.yaml)")]
DataDirOpt = Annotated[Optional[Path], typer.Option("--data-dir", help="override data_dir of the config")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="show the full traceback on errors")]


_DEBUG = {"on": False}  # --debug of the running command: flows show Prefect's tracebacks only then


class _WithoutTraceback:
    """A console log formatter that leaves out the traceback of a record (Prefect logs the same exception with its
    whole traceback at each task and flow level); the record keeps it for the other handlers (Prefect's API)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def format(self, record) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _quiet_flow_tracebacks() -> None:
    """Without --debug: Prefect's console handlers print each log line without its traceback."""
    import logging

    if _DEBUG["on"]:
        return
    for name in (None, "prefect", "prefect.flow_runs", "prefect.task_runs"):  # Prefect's console handler: root
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler.formatter, _WithoutTraceback):
                handler.setFormatter(_WithoutTraceback(handler.formatter or logging.Formatter()))


def _run(debug: bool, fn) -> None:
    """Run ``fn``; print user errors as one red line (exit 2) unless --debug."""
    import logging

    _DEBUG["on"] = debug
    logging.raiseExceptions = debug  # a log handler that cannot write is no reason to print a traceback
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # MLflow's INFO lines would drown the progress bars
    try:
        fn()
    except ChurnError as exc:
        if debug:
            raise
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _config(config: Optional[Path], data_dir: Optional[Path], **overrides):
    """The checked configuration with the options every command has (``--config``, ``--data-dir``) and the
    command's own overrides (dotted keys; None = not given)."""
    from common.config import load_config

    return load_config(config, {"data_dir": str(data_dir) if data_dir else None, **overrides})


def _table(title: str | None, columns: list[str], rows: list[dict], right: tuple[str, ...] = ()) -> Table:
    """A rich table of summary rows (:mod:`pipelines.summaries`)."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left")
    for row in rows:
        table.add_row(*[str(row.get(c, "")) for c in columns])
    return table


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def _round_bars(progress):
    """``on_model(spec)`` that shows each model's boosting rounds as a bar of ``progress`` (a rich Progress)."""
    def on_model(spec, stage: str = "backtest"):
        bar = progress.add_task(f"  {spec.name} ({stage}): boosting rounds", total=None)

        def on_round(done: int, total: int) -> None:
            progress.update(bar, completed=done, total=total)
        return on_round
    return on_model


@app.command()
def generate(
    customers: Annotated[Optional[int], typer.Option(help="number of customers (default: generator.customers)")] = None,
    seed: Annotated[Optional[int], typer.Option(help="random seed; same seed, byte-identical files")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="output folder (default: the raw folder "
                                                                 "of the config)")] = None,
    if_missing: Annotated[bool, typer.Option("--if-missing", help="do nothing when every table is already "
                                                                  "there")] = False,
    scenario: Annotated[Optional[str], typer.Option(help="named kind of business (default: generator.scenario); "
                                                         "the list: docs/synthetic.md#scenarios")] = None,
    config: ConfigOpt = None, data_dir: DataDirOpt = None, debug: DebugOpt = False,
) -> None:
    """Generate the synthetic global retailer (the scenario's contract tables, plus ground truth) as Parquet."""

    def body() -> None:
        from features.synthetic.simulate import generate as simulate
        from features.synthetic.simulate import scenario_tables

        cfg = _config(config, data_dir)
        n = customers or cfg.generator.customers
        s = cfg.generator.seed if seed is None else seed
        kind = scenario or cfg.generator.scenario
        target = out_dir or cfg.raw_path
        if if_missing and all((target / f"{table}.parquet").exists() for table in scenario_tables(kind)):
            out.print(f"data already in {target}; not generated again (run `churn generate` to replace it)")
            return
        start = time.perf_counter()
        with _progress() as progress:
            task = progress.add_task(f"simulating {n:,} customers", total=None)
            result = simulate(target, n_customers=n, seed=s, scenario=kind,
                              progress=lambda done, total: progress.update(task, completed=done, total=total))
        table = Table()
        table.add_column("table")
        table.add_column("rows", justify="right")
        for name, count in result.row_counts.items():
            table.add_row(name, f"{count:,}")
        out.print(table)
        out.print(f"generated into {target} in {time.perf_counter() - start:.1f} s (seed {s}, scenario {kind}); "
                  f"data as of {result.params.as_of.isoformat()}; ground truth in {result.truth_dir}")

    _run(debug, body)


@app.command()
def init(
    folder: Annotated[Path, typer.Argument(help="folder for config.yaml, playbooks.yaml and reasons.yaml "
                                                "(created when missing)")],
    force: Annotated[bool, typer.Option("--force", help="overwrite those files when they exist")] = False,
    debug: DebugOpt = False,
) -> None:
    """Start a project for your own data: a commented config.yaml, plus the playbooks and reason texts it uses."""

    def body() -> None:
        from common.starter import next_steps, write_starter

        written = write_starter(folder, force)
        out.print(f"wrote {', '.join(str(p) for p in written)}", highlight=False)
        out.print("next:", highlight=False)
        for line in next_steps(folder):
            out.print(f"  {line}", highlight=False, markup=False)

    _run(debug, body)


@app.command()
def validate(
    config: ConfigOpt = None, data_dir: DataDirOpt = None,
    as_of: Annotated[Optional[dt.datetime], typer.Option("--as-of", formats=["%Y-%m-%d"],
                                                         help="the data's as-of date (default: config, else "
                                                              "today)")] = None,
    max_reject_share: Annotated[Optional[float], typer.Option(help="override validation.max_reject_share")] = None,
    debug: DebugOpt = False,
) -> None:
    """Ingest and validate every configured table; write quarantine files and the validated tables."""

    def body() -> None:
        from pipelines import jobs
        from pipelines.summaries import INGEST_COLUMNS, ingest_row

        cfg = _config(config, data_dir, **{"validation.max_reject_share": max_reject_share})
        as_of_date = jobs.data_as_of(cfg, as_of.date() if as_of else None)
        run_id = jobs.new_run_id()
        rows: list[dict] = []
        with _progress() as progress:
            task = progress.add_task("validating", total=len(cfg.tables))

            unmapped: list[str] = []

            def on_table(name, report) -> None:
                rows.append(ingest_row(name, report))
                if report.unmapped_message:
                    unmapped.append(report.unmapped_message)
                progress.update(task, advance=1, description=f"validated {name}")

            try:
                jobs.validate(cfg, as_of_date, run_id, on_table)
            finally:
                progress.stop()
                out.print(_table(f"validation as of {as_of_date.isoformat()} (run {run_id})", INGEST_COLUMNS, rows,
                                 right=("rows", "kept", "rejected")))
        out.print(f"validated tables in {cfg.validated_dir}; rejected rows (if any) in {cfg.quarantine_dir}")
        for message in unmapped:
            out.print(f"[yellow]note:[/] {escape(message)}")
        _warn_consent(cfg)
        print_preflight(cfg)

    _run(debug, body)


def print_preflight(cfg) -> list:
    """Which models this data can train (and the setting that would make the others possible), then the
    playbooks and reasons it cannot use. Returns the checks."""
    from pipelines import jobs

    checks = jobs.preflight(cfg)
    span = jobs.data_span(cfg)
    rows = [{"model": c.model, "trainable": "yes" if c.ok else ("NO (required)" if c.required else "no: skipped"),
             "detail": c.detail + (f". {c.fix}" if c.fix else "")} for c in checks]
    out.print(_table(f"preflight: models on data from {span.first_day} to {span.last_day}",
                     ["model", "trainable", "detail"], rows))
    for line in jobs.config_warnings(cfg):
        out.print(f"[yellow]note:[/] {escape(line)}")
    return checks


@app.command()
def features(
    as_of: Annotated[Optional[dt.datetime], typer.Option(
        "--as-of", formats=["%Y-%m-%d"],
        help="the snapshot's cutoff: rows before this date count (default: the day after the latest transaction)")] = None,
    with_labels: Annotated[bool, typer.Option("--with-labels", help="add churn, win-back and CLTV outcomes")] = False,
    stack: Annotated[bool, typer.Option("--stack", help="build the training stack instead: labeled snapshots at the "
                                                        "configured cadence up to --as-of (default: the latest "
                                                        "labeled cutoff)")] = False,
    out_file: Annotated[Optional[Path], typer.Option("--out", help="also write the table to this Parquet file")] = None,
    engine: EngineOpt = None,
    config: ConfigOpt = None, data_dir: DataDirOpt = None, debug: DebugOpt = False,
) -> None:
    """Build a point-in-time feature snapshot (or the training stack) from the validated tables."""

    def body() -> None:
        import duckdb
        import pyarrow

        from features.ingest import check_validated
        from features.snapshots import read_snapshots
        from pipelines import jobs

        cfg = _config(config, data_dir, engine=engine)
        check_validated(cfg)  # a damaged validated file is named here, not deep in a DuckDB traceback
        start = time.perf_counter()
        try:
            with _progress() as progress:
                task = progress.add_task("opening the validated tables", total=2)
                span = jobs.data_span(cfg)
                if stack:
                    cutoffs = jobs.stack_cutoffs(cfg, span, as_of.date() if as_of else None)
                    name = "training_stack"
                else:
                    cutoffs = [as_of.date() if as_of else jobs.scoring_cutoff(cfg, span.last_day)]
                    name = f"snapshot_{cutoffs[0].isoformat()}"
                progress.update(task, advance=1, description="computing features")
                folder = jobs.build_snapshot_folder(cfg, name, cutoffs, with_labels or stack, progress=out.print)
                if out_file:
                    out_file.parent.mkdir(parents=True, exist_ok=True)
                    read_snapshots(folder).to_parquet(out_file, index=False)
                progress.update(task, advance=1, description="done")
        except (duckdb.Error, pyarrow.ArrowException, OSError) as exc:
            check_validated(cfg, deep=True)  # names the validated file when one is damaged beyond its footer
            detail = (str(exc).splitlines() or [type(exc).__name__])[0].rstrip(".")
            again = (f"; if {cfg.validated_dir} was changed since, run `churn validate` again"
                     if str(cfg.validated_dir) in str(exc) else "")
            raise ChurnError(f"building the features failed: {type(exc).__name__}: {detail}{again} (--debug shows "
                             "the traceback)") from exc
        meta = json.loads((folder / "metadata.json").read_text())
        out.print(f"{sum(meta['rows_per_cutoff'].values()):,} rows x {len(meta['features'])} features at "
                  f"{len(meta['cutoffs'])} cutoff(s) ({meta['cutoffs'][0]} .. {meta['cutoffs'][-1]}) in "
                  f"{time.perf_counter() - start:.1f} s -> {folder}" + (f" and {out_file}" if out_file else ""))

    _run(debug, body)


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def backtest_populations(report: dict) -> str:
    """One line per model: who it was evaluated on and the base rate or mean outcome, or why it stepped aside."""
    from models.catalog import MODELS

    p, lines = report["populations"], []
    for spec in MODELS:
        section = report.get(spec.section, {})
        if "skipped" in section:
            lines.append(f"{spec.name}: stepped aside ({section['skipped']})")
        elif spec.kind == "classifier":
            lines.append(f"{spec.name}: {p[spec.population.name]:,} {spec.population.noun}, {spec.label} rate "
                         f"{p[f'{spec.section}_base_rate']:.1%}")
        else:
            lines.append(f"{spec.name}: {p[f'{spec.section}_customers']:,} {spec.population.noun}, mean "
                         f"{spec.label} {p[f'{spec.section}_mean_actual']:,.2f}")
    return "\n".join(lines)


def print_backtest(report: dict) -> None:
    """The side-by-side table of a backtest report."""
    from models.backtest import summary_rows

    rows = summary_rows(report)
    columns = [c for c in rows[0][2] if any(r[2][c] is not None for r in rows)]
    later = sorted({f"{k} at {v['as_of']}" for k, v in report.items()
                    if isinstance(v, dict) and v.get("as_of", report["as_of"]) != report["as_of"]})
    table = Table(title=f"backtest as of {report['as_of']}" + (f" ({', '.join(later)})" if later else ""))
    table.add_column("target")
    table.add_column("metric")
    for c in columns:
        table.add_column(c, justify="right")
    for target, metric, values in rows:
        table.add_row(target, metric, *[_fmt(values[c]) for c in columns])
    out.print(table)
    out.print(backtest_populations(report))


@app.command()
def backtest(
    as_of: Annotated[Optional[dt.datetime], typer.Option(
        "--as-of", formats=["%Y-%m-%d"],
        help="evaluation cutoff; training uses only label windows ending on or before it (default: the latest "
             "cutoff with a complete churn window)")] = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="JSON report path (default: "
                                                                    "<outputs>/backtest/as_of=<DATE>/report.json); "
                                                                    "plots are written beside it")] = None,
    config: ConfigOpt = None, data_dir: DataDirOpt = None, debug: DebugOpt = False,
) -> None:
    """Temporal backtest of the churn, win-back, CLTV and next-order models against the baselines."""

    def body() -> None:
        from pipelines import jobs

        cfg = _config(config, data_dir)
        start = time.perf_counter()
        checks = jobs.preflight(cfg)
        for check in checks:
            if not check.ok:
                out.print(f"[yellow]{escape(check.line)}[/]")
        jobs.require_trainable(checks)
        said = {c.model for c in checks if not c.ok}
        with _progress() as progress:
            task = progress.add_task("backtest", total=5)

            def step(message: str) -> None:
                if "steps aside" in message:
                    if message.split(" ", 1)[0] not in said:  # the preflight said it, with the fix
                        progress.console.print(f"[yellow]{escape(message)}[/]")
                else:
                    progress.update(task, advance=1, description=message)

            run = jobs.backtest(cfg, as_of.date() if as_of else None, report, progress=step,
                                on_model=_round_bars(progress))
            progress.update(task, completed=5, description="done")
        print_backtest(jobs.read_report(run.report_path))
        out.print(f"report {run.report_path}; plots {', '.join(p.name for p in run.plots)} "
                  f"({time.perf_counter() - start:.1f} s)")

    _run(debug, body)


@app.command()
def report(
    as_of: Annotated[Optional[dt.datetime], typer.Option(
        "--as-of", formats=["%Y-%m-%d"], help="the report's cutoff: complete periods before it (default: the day "
                                              "after the latest transaction)")] = None,
    period: Annotated[str, typer.Option(help="month or quarter")] = "month",
    periods: Annotated[int, typer.Option(help="how many complete periods", min=1, max=120)] = 12,
    config: ConfigOpt = None, data_dir: DataDirOpt = None, debug: DebugOpt = False,
) -> None:
    """Retention KPIs (churn and retention rates, revenue retention, AOV, frequency, historical CLTV, NPS, CSAT,
    CES, support, referrals) per period, market and RFM segment, and the cohort retention matrix: one HTML file,
    tables and a JSON summary under <outputs>/reports/ (see docs/reports.md)."""

    def body() -> None:
        from pipelines import jobs
        from serving.report import NO_DATA, headline_rows

        cfg = _config(config, data_dir)
        start = time.perf_counter()
        with _progress() as progress:
            task = progress.add_task("report", total=4)
            folder, info = jobs.report(cfg, as_of.date() if as_of else None, period, periods,
                                       progress=lambda message: progress.update(task, advance=1,
                                                                                description=message))
            progress.update(task, completed=4, description="done")
        head = info.get("headline") or {}
        if not head:
            out.print(f"{NO_DATA}: no complete {period} with one before it in the data")
        else:
            rows = [{"KPI": name, "value": text} for name, text in headline_rows(head, info)]
            out.print(_table(f"retention KPIs, {info['latest_period']} (as of {info['as_of']})", ["KPI", "value"],
                             rows, right=("value",)))
        live = info.get("live") or {}
        if live.get("history"):
            def number(value) -> str:
                return "no data" if value is None else f"{value:.3f}"

            rows = [{"scored as of": r["as_of"], "model": r["model"], "customers": f"{r['evaluated']:,}",
                     "metric": r["metric"], "live": number(r.get(r["metric"])), "backtest": number(r["backtest"]),
                     "flag": "FLAGGED" if r["flagged"] else ""} for r in live["history"]]
            out.print(_table("live performance of past scoring runs", list(rows[0]), rows,
                             right=("customers", "live", "backtest")))
        for line in live.get("flagged") or []:
            out.print(f"[bold yellow]live performance:[/] {escape(line)}")
        out.print(f"report {folder / 'report.html'} ({time.perf_counter() - start:.1f} s)")

    _run(debug, body)


def _flows(config: Optional[Path], data_dir: Optional[Path]):
    """The flows module, imported after the offline, quiet settings are in place for this config's data_dir."""
    from pipelines import runtime

    cfg = _config(config, data_dir)
    runtime.configure(cfg.data_dir)
    from pipelines import flows

    return flows


def _flow_args(config: Optional[Path], data_dir: Optional[Path]) -> dict:
    return {"config_path": str(config) if config else None, "data_dir": str(data_dir) if data_dir else None}


UNCHANGED = {
    "scoring": "The previously published lists are unchanged",
    "training": "A model becomes champion only once its version is fully logged",
    "the pipeline": "The previously published lists are unchanged, and a model becomes champion only once its "
                    "version is fully logged",
}


def _call_flow(what: str, fn) -> dict:
    """Run a flow; a failure that is not a user error is reported in one line (the flow run is marked failed,
    Prefect's log has the traceback; the console shows it only with --debug)."""
    _quiet_flow_tracebacks()
    try:
        return fn()
    except ChurnError:
        raise
    except Exception as exc:  # noqa: BLE001 - report any flow failure as one line, the traceback is in the log
        raise ChurnError(f"{what} failed: {type(exc).__name__}: {exc}. {UNCHANGED[what]}; fix the cause and run "
                         "it again (--debug shows the traceback)") from exc


def print_training(result: dict) -> None:
    from pipelines.summaries import TRAINING_COLUMNS, training_rows

    if result.get("dry_run"):
        out.print(f"dry run: backtest report {result['report']}; nothing registered")
        if result.get("unregistered"):
            out.print(f"no champion yet: the dry run scored with {', '.join(result['unregistered'])} trained now "
                      "(what `churn run` would register and promote)")
        return
    title = "models" + (" (unchanged since the last training: not retrained)" if result["cached"] else "")
    out.print(_table(title, TRAINING_COLUMNS, training_rows(result)))


def _warn_consent(cfg) -> None:
    from pipelines import jobs

    warning = jobs.consent_warning(cfg)
    if warning:
        out.print(f"[bold yellow]warning:[/] {escape(warning)}")


def print_scoring(summary: dict, cfg=None) -> None:
    from pipelines.summaries import CAMPAIGN_COLUMNS, campaign_rows, scoring_rows

    out.print(_table(f"batch scoring as of {summary['as_of']} (run {summary['run_id']})", ["measure", "value"],
                     scoring_rows(summary)[1:-1], right=("value",)))
    rows = campaign_rows(summary)
    if rows:
        out.print(_table("campaigns (treatment is contacted; control is withheld to measure uplift)",
                         CAMPAIGN_COLUMNS, rows, right=tuple(CAMPAIGN_COLUMNS[2:])))
    campaigns = summary.get("campaigns", {})
    if campaigns and not sum(c["treatment"] for c in campaigns.values()):
        from pipelines import jobs

        unvalued = ("the CLTV model has no champion (it stepped aside), so value at risk and each contact's "
                    "expected net value are unknown and none is positive: nobody is selected. `churn validate` "
                    "names the setting that would let it train" if summary.get("value_at_risk") is None else None)
        why = (jobs.consent_warning(cfg) if cfg is not None else None) or unvalued or (
            "every candidate was held back (no consent, budgets or playbooks); see the campaigns table")
        out.print(f"[bold yellow]0 targeted:[/] {escape(why)}")
    for name in summary.get("models_without_champion") or []:
        out.print(f"[yellow]{name} has no champion (it stepped aside in training, see `churn backtest`): the columns "
                  "it fills are empty and a list made of its scores has no rows[/]")
    from pipelines.jobs import drift_lines

    for line in drift_lines(summary.get("drift")):
        out.print(f"[yellow]{escape(line)}[/]")
    live = summary.get("live") or {}
    for line in live.get("flagged") or []:
        out.print(f"[bold yellow]live performance:[/] {escape(line)}")
    if live.get("evaluated"):
        out.print(f"live performance of past runs: {live['evaluated']} model(s) x as-of date(s) judged against "
                  "what happened (in the KPI report)")
    for name, path in summary["published"].items():
        out.print(f"{name} list: {path}")
    if summary.get("report"):
        out.print(f"KPI report: {Path(summary['report']) / 'report.html'}")
    elif not summary["dry_run"]:
        out.print("[yellow]the KPI report failed (see the flow's log); the lists are published[/]")
    if summary["dry_run"]:
        out.print("dry run: nothing published")


AsOfOpt = Annotated[Optional[dt.datetime], typer.Option(
    "--as-of", formats=["%Y-%m-%d"], help="scoring cutoff: orders before this date count (default: scoring.as_of, "
                                          "else the day after the latest transaction)")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="compute everything, publish and register nothing")]
ForceAsOfOpt = Annotated[bool, typer.Option("--force-as-of", help="score at an --as-of later than the day after the "
                                                                  "data's last day (refused otherwise)")]
EngineOpt = Annotated[Optional[str], typer.Option(
    "--engine", help="duckdb (in-process) or spark (the config's spark section: local[2] unless it names a "
                     "master); default: the config's engine")]


@app.command()
def run(as_of: AsOfOpt = None, dry_run: DryRunOpt = False, force_as_of: ForceAsOfOpt = False,
        engine: EngineOpt = None, config: ConfigOpt = None, data_dir: DataDirOpt = None,
        debug: DebugOpt = False) -> None:
    """The whole pipeline as one Prefect flow: ingest, build features, train (skipped when nothing changed),
    score and publish the at-risk and win-back lists."""

    def body() -> None:
        cfg = _config(config, data_dir, engine=engine)
        _warn_consent(cfg)  # before a long run: nobody will be contacted
        flows = _flows(config, data_dir)
        start = time.perf_counter()
        result = _call_flow("the pipeline", lambda: flows.churn_pipeline(
            **_flow_args(config, data_dir), as_of=as_of.date() if as_of else None, dry_run=dry_run,
            force_as_of=force_as_of, engine=engine))
        print_training(result["train"])
        print_scoring(result["score"], cfg)
        out.print(f"pipeline finished in {time.perf_counter() - start:.1f} s")

    _run(debug, body)


@app.command()
def train(force: Annotated[bool, typer.Option("--force", help="retrain even when data, code and settings are "
                                                               "unchanged since the last training")] = False,
          dry_run: DryRunOpt = False, engine: EngineOpt = None, config: ConfigOpt = None,
          data_dir: DataDirOpt = None, debug: DebugOpt = False) -> None:
    """Backtest at the latest labeled cutoff, train every model on all labeled snapshots, log them to MLflow and
    promote a challenger to champion only when it beats the champion by the configured margin."""

    def body() -> None:
        _config(config, data_dir, engine=engine)  # a wrong --engine is refused before the flow starts
        flows = _flows(config, data_dir)
        start = time.perf_counter()
        result = _call_flow("training", lambda: flows.train(**_flow_args(config, data_dir), force=force,
                                                            dry_run=dry_run, engine=engine))
        print_training(result)
        out.print(f"finished in {time.perf_counter() - start:.1f} s; `churn models` lists every version")

    _run(debug, body)


@app.command()
def score(as_of: AsOfOpt = None, dry_run: DryRunOpt = False, force_as_of: ForceAsOfOpt = False,
          engine: EngineOpt = None, config: ConfigOpt = None, data_dir: DataDirOpt = None,
          debug: DebugOpt = False) -> None:
    """Score every customer with the champion models and publish the at-risk and win-back lists."""

    def body() -> None:
        from pipelines import jobs

        cfg = _config(config, data_dir, engine=engine,
                      **{"scoring.as_of": as_of.date().isoformat() if as_of else None,
                         "scoring.allow_as_of_after_data": True if force_as_of else None})
        if cfg.scoring.as_of is not None:  # a date the data cannot support: refused before the flow starts
            jobs.scoring_cutoff(cfg, jobs.last_data_day(cfg))
        flows = _flows(config, data_dir)
        start = time.perf_counter()
        summary = _call_flow("scoring", lambda: flows.score(**_flow_args(config, data_dir),
                                                           as_of=as_of.date() if as_of else None, dry_run=dry_run,
                                                           force_as_of=force_as_of, engine=engine))
        print_scoring(summary, cfg)
        out.print(f"finished in {time.perf_counter() - start:.1f} s")

    _run(debug, body)


@app.command()
def schedule(config: ConfigOpt = None, data_dir: DataDirOpt = None, debug: DebugOpt = False) -> None:
    """Serve the scoring (daily) and retraining (monthly) deployments on a Prefect server: PREFECT_API_URL's, or a
    local one started on 127.0.0.1. Schedules are the cron strings under `schedule` in the config."""

    def body() -> None:
        from common.config import config_path
        from pipelines import runtime, scheduling

        cfg = _config(config, data_dir)
        runtime.configure(cfg.data_dir)
        scheduling.serve(cfg, config_path(config), announce=lambda message: console.print(message, highlight=False))

    _run(debug, body)


@app.command()
def forget(
    customer_ids: Annotated[Optional[list[str]], typer.Argument(help="the customers to forget")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="finish an erasure that stopped (a file it could not "
                                                          "erase, or an interruption) from its plan, "
                                                          "<data_dir>/privacy/forget-plan.json")] = False,
    config: ConfigOpt = None, data_dir: DataDirOpt = None, debug: DebugOpt = False,
) -> None:
    """Right to erasure: add customers to the suppression list every later run honours first, and delete their rows
    from the published lists and list tables, validated tables, quarantine and feature snapshots (never from the
    configured sources). It works through a plan it writes first; if it stops, `churn forget --resume` finishes."""

    def show(report) -> None:
        who = f"forgot {len(customer_ids)} customer(s)" if customer_ids else "resumed the erasure"
        table = Table(title=f"{who}; {report.suppressed_total} on the suppression list")
        table.add_column("where")
        table.add_column("rows removed", justify="right")
        for where, rows in report.rows_removed.items():
            table.add_row(where, f"{rows:,}")
        out.print(table)
        if report.remaining:
            remaining = Table(title=f"not erased yet (the plan {report.plan})")
            remaining.add_column("where")
            remaining.add_column("why")
            for where, why in report.remaining.items():
                remaining.add_row(where, why)
            out.print(remaining)
        out.print(f"later runs drop these customers when reading the sources; the sources themselves "
                  f"({', '.join(report.sources)}) are yours to erase", highlight=False)

    def body() -> None:
        from serving.forget import ForgetIncomplete, plan_path
        from serving.forget import forget as erase

        cfg = _config(config, data_dir)
        if not customer_ids and resume and not plan_path(cfg.data_dir).exists():
            out.print("nothing to resume: every `churn forget` so far has completed")
            return
        try:
            report = erase(cfg, customer_ids or [], resume=resume)
        except ForgetIncomplete as exc:
            show(exc.report)
            raise
        show(report)

    _run(debug, body)


@app.command()
def models(config: ConfigOpt = None, data_dir: DataDirOpt = None, debug: DebugOpt = False) -> None:
    """List registered model versions with their aliases, promotion decisions and key metrics."""

    def body() -> None:
        from models.tracking import list_versions

        cfg = _config(config, data_dir)
        rows = list_versions(cfg)
        if not rows:
            out.print("no registered models yet; run `churn train`")
            return
        table = Table(title="model registry")
        for col in ("model", "version", "aliases", "created", "evaluated at", "key metrics", "decision"):
            table.add_column(col)
        for r in rows:
            metrics = r["metrics"]
            keys = [k for k in ("roc_auc", "ece", "normalized_gini", "spearman") if k in metrics]
            table.add_row(r["name"], r["version"], ", ".join(r["aliases"]), r["created"],
                          str(metrics.get("eval_as_of", "")), " ".join(f"{k}={metrics[k]:.4f}" for k in keys),
                          f"{r['decision']}: {r['reason']}" if r["reason"] else r["decision"])
        out.print(table)

    _run(debug, body)


@app.command()
def promote(
    name: Annotated[str, typer.Argument(help="the model's name (see `churn models`)")],
    version: Annotated[str, typer.Argument(help="the version to make champion")],
    reason: Annotated[str, typer.Option(help="recorded on the version")] = "manual",
    config: ConfigOpt = None, data_dir: DataDirOpt = None, debug: DebugOpt = False,
) -> None:
    """Make a version the champion by hand (recorded as tags on the version)."""

    def body() -> None:
        from models.tracking import MODEL_NAMES
        from models.tracking import promote as set_champion

        if name not in MODEL_NAMES:
            raise ChurnError(f"unknown model {name!r}; expected one of {list(MODEL_NAMES)}")
        cfg = _config(config, data_dir)
        set_champion(cfg, name, version, note=reason)
        out.print(f"{name} version {version} is now the champion")

    _run(debug, body)


users_app = typer.Typer(help="API keys of the retention workspace (`churn serve`): add, list, revoke.",
                        no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="who the key is for")],
    role: Annotated[str, typer.Option(help="viewer | marketer | admin")] = "viewer",
    config: ConfigOpt = None, data_dir: DataDirOpt = None, debug: DebugOpt = False,
) -> None:
    """Create a user and print their API key once (only its scrypt hash is stored)."""

    def body() -> None:
        from serving.users import store_for

        cfg = _config(config, data_dir)
        key = store_for(cfg.resolve(cfg.outputs.dir)).add(name, role)
        out.print(f"user {escape(name)} ({role}) added; their key, shown only now:")
        print(key)

    _run(debug, body)


@users_app.command("list")
def users_list(config: ConfigOpt = None, data_dir: DataDirOpt = None, debug: DebugOpt = False) -> None:
    """The users, their roles and whether their key is revoked (keys are never shown again)."""

    def body() -> None:
        from serving.users import store_for

        cfg = _config(config, data_dir)
        rows = store_for(cfg.resolve(cfg.outputs.dir)).list()
        if not rows:
            out.print("no users yet; add one with `churn users add NAME --role admin`")
            return
        out.print(_table("users", ["name", "role", "created", "revoked"],
                         [{**r, "revoked": r["revoked"] or ""} for r in rows]))

    _run(debug, body)


@users_app.command("revoke")
def users_revoke(name: Annotated[str, typer.Argument(help="the user whose key stops working now")],
                 config: ConfigOpt = None, data_dir: DataDirOpt = None, debug: DebugOpt = False) -> None:
    """Revoke a user's key at once."""

    def body() -> None:
        from serving.users import store_for

        cfg = _config(config, data_dir)
        store_for(cfg.resolve(cfg.outputs.dir)).revoke(name)
        out.print(f"the key of {escape(name)} is revoked")

    _run(debug, body)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    config: ConfigOpt = None, data_dir: DataDirOpt = None, debug: DebugOpt = False,
) -> None:
    """The retention workspace: the published lists, customer profiles, campaigns and champions in a browser,
    and the same as an HTTP API under /api (see docs/app.md). Stops on Ctrl-C."""

    def body() -> None:
        import uvicorn

        from serving.app import app_for
        from serving.users import store_for

        cfg = _config(config, data_dir)
        if not store_for(cfg.resolve(cfg.outputs.dir)).list():
            out.print("[yellow]no users yet: add one with `churn users add NAME --role admin` to sign in[/]")
        out.print(f"retention workspace on http://{host}:{port}/ (API: http://{host}:{port}/api/docs)")
        uvicorn.run(app_for(cfg), host=host, port=port, log_level="warning")

    _run(debug, body)


@app.command()
def ui(
    mlflow_port: Annotated[int, typer.Option(help="port of the MLflow UI")] = 5000,
    prefect_port: Annotated[int, typer.Option(help="port of the Prefect UI and its API")] = 4300,
    config: ConfigOpt = None, data_dir: DataDirOpt = None, debug: DebugOpt = False,
) -> None:
    """The MLflow UI and the Prefect UI over the project's own stores (127.0.0.1), until Ctrl-C stops both and
    every process they started."""

    def body() -> None:
        import os
        import shutil
        import signal
        import subprocess
        import urllib.request

        from models.tracking import tracking_uri

        cfg = _config(config, data_dir)
        bin_dir = Path(sys.executable).parent
        prefect_home = os.environ.get("PREFECT_HOME") or str((cfg.data_dir / "prefect").resolve())
        base = {**os.environ, "DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        commands = {
            "MLflow": ([str(bin_dir / "mlflow"), "ui", "--backend-store-uri", tracking_uri(cfg), "--host",
                        "127.0.0.1", "--port", str(mlflow_port)],
                       {**base, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, f"http://127.0.0.1:{mlflow_port}/",
                       f"http://127.0.0.1:{mlflow_port}/health"),
            "Prefect": ([str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                         str(prefect_port)],
                        {**base, "PREFECT_HOME": prefect_home, "PREFECT_UI_ENABLED": "true",
                         "PREFECT_SERVER_UI_ENABLED": "true",  # the flows' quiet settings turn the UI off
                         "PREFECT_UI_API_URL": f"http://127.0.0.1:{prefect_port}/api"},
                        f"http://127.0.0.1:{prefect_port}/", f"http://127.0.0.1:{prefect_port}/api/health"),
        }
        for name, (argv, _, _, _) in commands.items():
            if not Path(argv[0]).exists() and not shutil.which(argv[0]):
                raise ChurnError(f"{argv[0]} is missing: run `make venv`")
        started: dict[str, subprocess.Popen] = {}

        def stop() -> None:
            for process in started.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)  # the server and every child it started
            for name, process in started.items():
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(5)

        try:
            for name, (argv, env, _, _) in commands.items():
                started[name] = subprocess.Popen(argv, env=env, start_new_session=True,
                                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            waiting = dict(commands)
            deadline = time.monotonic() + 180
            with out.status("starting the MLflow and Prefect UIs"):
                while waiting and time.monotonic() < deadline:
                    for name, (_, _, _, health) in list(waiting.items()):
                        if started[name].poll() is not None:
                            error = started[name].stderr.read().decode(errors="replace").strip().splitlines()
                            raise ChurnError(f"the {name} UI stopped at start: {error[-1] if error else 'no output'}")
                        try:
                            with urllib.request.urlopen(health, timeout=2):
                                waiting.pop(name)
                        except OSError:
                            pass
                    time.sleep(0.5)
            if waiting:
                raise ChurnError(f"{', '.join(waiting)} did not answer within 180 s")
            for name, (_, _, address, _) in commands.items():
                out.print(f"{name} UI: {address}")
            out.print("Ctrl-C stops both")
            while all(p.poll() is None for p in started.values()):
                time.sleep(0.5)
            gone = [name for name, p in started.items() if p.poll() is not None]
            raise ChurnError(f"the {', '.join(gone)} UI stopped; the other one is stopped too")
        except KeyboardInterrupt:
            out.print("stopping the UIs")
        finally:
            stop()

    _run(debug, body)


if __name__ == "__main__":  # pragma: no cover
    app()
