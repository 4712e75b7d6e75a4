"""Build point-in-time snapshots and training stacks from the validated tables, on DuckDB or Spark.

A snapshot at cutoff ``t`` has one row per customer with at least one order before ``t`` (rows at ``t`` or later
never count), keyed by ``(customer_id, cutoff)``. A training stack is many snapshots computed in one pass
(see :mod:`features.definitions`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow.parquet as pq

from features import definitions as d
from features.contract import CONTRACT
from common.config import HorizonsConfig, PipelineConfig, SnapshotsConfig
from common.errors import DataError
from common.files import replace_folder

Engine = Literal["duckdb", "spark"]
KEY = ["customer_id", "cutoff"]
_TABLE_FILES = ("transactions", "customers", "support_tickets", "surveys", "web_sessions", "email_events",
                "subscriptions")


@dataclass
class Sources:
    """Validated tables opened on one engine, plus what the definitions need to know about them."""

    backend: ibis.BaseBackend
    tables: dict[str, ir.Table]
    last_day: dt.date  # the last day with transactions
    channels: list[str]
    has_discount: bool
    days: ir.Table | None = None  # the stored per-customer-day rows (see write_purchase_days), when current
    first_day: dt.date | None = None  # the first day with transactions (no cutoff on or before it is scheduled)


LOCAL_SPARK = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}  # loopback only
SPARK_DEFAULTS = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
                  "spark.sql.session.timeZone": "UTC", "spark.sql.shuffle.partitions": "4",
                  "spark.sql.ansi.enabled": "false"}


def spark_session(settings=None):
    """The Spark session of ``settings`` (:class:`common.config.SparkConfig`; default: local[2]), quiet, with no
    UI; a local master is bound to loopback (shared/ENVIRONMENT.md) and its Python workers run this interpreter.
    ``settings.conf`` wins over these defaults. An existing session of this process is reused (Spark allows one
    per process)."""
    from pyspark.sql import SparkSession

    master = settings.master if settings is not None else "local[2]"
    conf = {**SPARK_DEFAULTS, **(settings.conf if settings is not None else {})}
    if master.startswith("local"):  # the workers run this interpreter (its venv), not the first python3 on PATH
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # what the SparkContext hands its workers
        conf = {**LOCAL_SPARK, **conf}
    builder = SparkSession.builder.master(master).appName("churn-pipeline")
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")  # its warnings about plans and native libraries are not ours
    return session


def open_sources(validated_dir: str | Path, engine: Engine = "duckdb", spark=None,
                 memory_limit: str | None = "4GB", temp_dir: str | Path | None = None,
                 stored_days: bool = True) -> Sources:
    """Open the validated Parquet tables found in ``validated_dir`` on ``engine``.

    DuckDB runs in-process with at most ``memory_limit`` of memory, spilling to ``temp_dir`` (default: ``tmp``
    beside ``validated_dir``) beyond it. The per-customer-day rows that ``churn validate`` stored beside the
    transactions (:func:`write_purchase_days`) are used when they were computed from the transactions file as it
    is now and ``stored_days`` is true; otherwise every snapshot computes them from the transactions.
    """
    folder = Path(validated_dir)
    if not (folder / "transactions.parquet").exists():
        raise DataError(f"no validated transactions in {folder}; run `churn validate` first")
    if engine == "duckdb":
        backend = ibis.duckdb.connect()
        backend.raw_sql("SET TimeZone = 'UTC'")
        if memory_limit:
            spill = Path(temp_dir) if temp_dir else folder.parent / "tmp" / "duckdb"
            spill.mkdir(parents=True, exist_ok=True)
            backend.raw_sql(f"SET memory_limit = '{memory_limit}'")
            backend.raw_sql(f"SET temp_directory = '{spill}'")
    elif engine == "spark":
        backend = ibis.pyspark.connect(spark or spark_session())
    else:
        raise ValueError(f"engine must be 'duckdb' or 'spark', got {engine!r}")
    tables = {name: backend.read_parquet(folder / f"{name}.parquet", table_name=f"validated_{name}")
              for name in _TABLE_FILES if (folder / f"{name}.parquet").exists()}
    src = _sources(backend, tables, where=str(folder / "transactions.parquet"))
    if stored_days and stored_days_current(folder):
        days = backend.read_parquet(folder / DAYS_FILE, table_name="validated_purchase_days")
        src.days = days.mutate(day=days.day.cast("date"))
    return src


def sources_from_frames(frames: dict[str, pd.DataFrame], backend: ibis.BaseBackend | None = None) -> Sources:
    """Sources from in-memory validated tables (tests, notebooks); DuckDB unless ``backend`` is given."""
    backend = backend or ibis.duckdb.connect()
    tables = {name: backend.create_table(f"frame_{name}", frame, overwrite=True)
              for name, frame in frames.items()}
    return _sources(backend, tables, where="transactions")


def _sources(backend: ibis.BaseBackend, tables: dict[str, ir.Table], where: str) -> Sources:
    for name, table in list(tables.items()):
        dates = [c.name for c in CONTRACT[name].columns if c.kind == "date" and c.name in table.columns]
        if dates:
            tables[name] = table.mutate(**{c: table[c].cast("date") for c in dates})
    tx = tables["transactions"]
    stats = tx.aggregate(first=tx.ts.min(), last=tx.ts.max()).to_pandas()
    if pd.isna(stats["last"].iloc[0]):
        raise DataError(f"{where} has no rows; run `churn validate` on data with transactions")
    channels = []
    if "channel" in tx.columns:
        channels = sorted(str(c) for c in tx.select("channel").distinct().to_pandas()["channel"].dropna())
    return Sources(backend, tables, pd.Timestamp(stats["last"].iloc[0]).date(), channels,
                   "discount" in tx.columns, first_day=pd.Timestamp(stats["first"].iloc[0]).date())


DAYS_FILE = "purchase_days.parquet"
DAYS_RECORD = "purchase_days.json"


def _transactions_stamp(folder: Path) -> dict:
    """Size and row count of the transactions file (its footer only): what the stored per-day rows came from."""
    path = folder / "transactions.parquet"
    return {"bytes": path.stat().st_size, "rows": pq.ParquetFile(path).metadata.num_rows}


def write_purchase_days(validated_dir: str | Path, memory_limit: str | None = "4GB") -> Path:
    """Store :func:`features.definitions.purchase_days` of the validated transactions as ``purchase_days.parquet``.

    The reduction to one row per customer and day (with the gap to the previous purchase day) does not depend on
    the cutoff, so ``churn validate`` computes it once and every snapshot reads it (it is most of a snapshot's
    work; ``bench/bench_features.py`` measures both). ``purchase_days.json`` records the transactions file it came
    from; :func:`stored_days_current` ignores a stored table that no longer matches. DuckDB spills beyond
    ``memory_limit``.
    """
    folder = Path(validated_dir)
    src = open_sources(folder, stored_days=False, memory_limit=memory_limit)
    try:
        src.backend.to_parquet(d.purchase_days(src.tables["transactions"], src.channels), folder / DAYS_FILE)
    finally:
        src.backend.disconnect()
    (folder / DAYS_RECORD).write_text(json.dumps({"transactions": _transactions_stamp(folder)}, indent=2))
    return folder / DAYS_FILE


def source_files(validated_dir: str | Path) -> list[Path]:
    """The validated tables (sorted), without the per-day rows derived from them: what data fingerprints hash.
    (The derived file's bytes differ from one `churn validate` to the next in row order only.)"""
    return sorted(p for p in Path(validated_dir).glob("*.parquet") if p.name != DAYS_FILE)


def stored_days_current(validated_dir: str | Path) -> bool:
    """True when ``purchase_days.parquet`` was computed from the transactions file now in ``validated_dir`` (same
    size and row count). A transactions file rewritten since (``churn forget`` does) makes the stored rows stale:
    snapshots compute the per-day rows themselves until the next ``churn validate``."""
    folder = Path(validated_dir)
    if not (folder / DAYS_FILE).exists() or not (folder / DAYS_RECORD).exists():
        return False
    record = json.loads((folder / DAYS_RECORD).read_text())
    return record.get("transactions") == _transactions_stamp(folder)


Stage = Callable[[str, ir.Table], ir.Table]
# DuckDB builds the hash tables of a run of joins at once; past about five large families they spill to disk, so
# the joined result is staged every few joins (the figures behind this number are in the commit that set it).
JOINS_PER_STAGE = 5


def _lazy(name: str, expr: ir.Table) -> ir.Table:
    return expr


@contextmanager
def staged(src: Sources) -> Iterator[Stage]:
    """A ``stage(name, expr)`` function for :func:`snapshot_expr`: on DuckDB it computes ``expr`` into a temporary
    table (dropped when the block ends), so every join afterwards sees exact sizes and joins stored columns; on
    other engines it leaves ``expr`` lazy. One plan of many joins over grouped joins spills heavily on DuckDB;
    staged, each step fits in memory.
    """
    if src.backend.name != "duckdb":
        yield _lazy
        return
    made: list[str] = []
    prefix = f"_stage_{uuid.uuid4().hex[:12]}_"

    def stage(name: str, expr: ir.Table) -> ir.Table:
        made.append(prefix + name)
        return src.backend.create_table(made[-1], expr, temp=True)

    try:
        yield stage
    finally:
        for table in made:
            src.backend.drop_table(table, force=True)


def snapshot_expr(src: Sources, cutoffs: Sequence[dt.date], horizons: HorizonsConfig,
                  with_labels: bool = False, stage: Stage = _lazy) -> ir.Table:
    """The whole snapshot (features, RFM scores and, optionally, labels) for every cutoff, as one expression.

    Every family (the RFM scores and labels too) is keyed by ``(customer_id, cutoff)`` and left-joined to the
    transaction features. ``stage`` (see :func:`staged`) is applied to the transaction features, to each family,
    to the joined result after every :data:`JOINS_PER_STAGE` joins and, when labels are wanted or there are many
    cutoffs, to the per-customer-day rows (unless they were stored by ``churn validate``).
    """
    cut, days, snap = _transaction_base(src, cutoffs, stage, with_labels)
    t = src.tables
    families: list[tuple[ir.Table, dict]] = []
    if "category" in t["transactions"].columns:
        families.append((d.category_features(t["transactions"], cut), {"distinct_categories": 0}))
    if "customers" in t:
        families.append((d.customer_attributes(t["customers"], cut), {}))
    optional = {"support_tickets": (d.support_features, {"tickets_90d": 0, "open_tickets": 0}),
                "surveys": (d.survey_features, {}),
                "web_sessions": (d.web_features, {"web_sessions_7d": 0, "web_sessions_30d": 0,
                                                    "web_sessions_prev_30d": 0}),
                "email_events": (d.email_features, {"email_sent_90d": 0, "email_opens_90d": 0,
                                                    "email_clicks_90d": 0, "email_opens_prev_90d": 0,
                                                    "email_opens_30d": 0,
                                                    "unsubscribed": False}),
                "subscriptions": (d.subscription_features, {"recent_downgrade": False})}
    families += [(build(t[name], cut), fill) for name, (build, fill) in optional.items() if name in t]
    families.append((d.rfm_scores(snap), {}))
    if with_labels:
        inputs = d.LabelInputs(snap, days, cut, t, horizons, src.last_day)
        families += [(family.expression(inputs), {}) for family in d.LABEL_FAMILIES
                     if family.needs is None or family.needs in t]
    out = snap
    for i, (family, fill) in enumerate(families, start=1):
        out = _left(out, stage(f"family{i}", family), fill=fill)
        if i % JOINS_PER_STAGE == 0 and i < len(families):
            out = stage(f"joined{i}", out)
    return out


STATUS_COLUMNS = ["customer_id", "cutoff", "days_since_last_purchase", "rfm_segment", "country"]


def build_status(src: Sources, cutoffs: Sequence[dt.date]) -> pd.DataFrame:
    """Of each customer at each cutoff, only :data:`STATUS_COLUMNS` (``country`` when there is a customers table),
    by the snapshot's own definitions but without the other families: the transaction features, the RFM scores
    and the customer attributes are all they read. Same rows and values as those columns of
    :func:`build_snapshots` (a test compares them), sorted the same way."""
    with staged(src) as stage:
        cut, _, snap = _transaction_base(src, cutoffs, stage)
        out = _left(snap, stage("rfm", d.rfm_scores(snap)))
        if "customers" in src.tables:
            out = _left(out, d.customer_attributes(src.tables["customers"], cut))
        frame = out.select(*[c for c in STATUS_COLUMNS if c in out.columns]).to_pandas()
    frame["cutoff"] = pd.to_datetime(frame["cutoff"]).dt.date
    return frame.sort_values(KEY, kind="stable").reset_index(drop=True)


def _transaction_base(src: Sources, cutoffs: Sequence[dt.date], stage: Stage,
                      with_labels: bool = False) -> tuple[ir.Table, ir.Table, ir.Table]:
    """The cutoffs table, the per-customer-day rows (stored ones when current) and the transaction features that
    every family is joined to, for :func:`snapshot_expr` and :func:`build_status`."""
    cut = d.cutoffs_table(cutoffs)
    if src.days is not None:
        days = src.days
    else:
        days = d.purchase_days(src.tables["transactions"], src.channels)
        if with_labels or len(set(cutoffs)) > 1:  # read twice, or joined to many cutoffs: computed once
            days = stage("days", days)
    return cut, days, stage("transactions", d.transaction_features(days, cut, src.channels, src.has_discount))


def _left(left: ir.Table, right: ir.Table, fill: dict | None = None) -> ir.Table:
    """Left join on (customer_id, cutoff); counts absent on the right are zero (no rows = none happened)."""
    joined = left.left_join(right, KEY).select(left, *[c for c in right.columns if c not in KEY])
    return joined.mutate(**{c: joined[c].fill_null(v) for c, v in (fill or {}).items()}) if fill else joined


def build_snapshots(src: Sources, cutoffs: Sequence[dt.date], horizons: HorizonsConfig,
                    with_labels: bool = False, sample_customers: int | None = None) -> pd.DataFrame:
    """Compute the snapshot(s) as a DataFrame (cutoff as a date column, sorted by customer_id and cutoff).

    ``sample_customers``: only the rows of that many customers, those with the smallest hash of ``customer_id``
    (the engine's own hash, so the same customers on every run), every cutoff of each; the sample is drawn in the
    engine, before anything is collected."""
    if with_labels:
        _check_labelable(src, cutoffs, horizons)
    with staged(src) as stage:
        expr = snapshot_expr(src, cutoffs, horizons, with_labels, stage)
        if sample_customers is not None:
            expr = expr.semi_join(customer_sample(expr, sample_customers), "customer_id")
        frame = expr.to_pandas()
    frame["cutoff"] = pd.to_datetime(frame["cutoff"]).dt.date
    return frame.sort_values(KEY, kind="stable").reset_index(drop=True)


def customer_sample(expr: ir.Table, size: int) -> ir.Table:
    """The ``size`` customers of ``expr`` with the smallest hash of ``customer_id`` (ties by id): a sample drawn
    without collecting the ids, the same on every run."""
    ids = expr.select("customer_id").distinct()
    return ids.mutate(_h=ids.customer_id.hash()).order_by(["_h", "customer_id"]).limit(size).select("customer_id")


def _check_labelable(src: Sources, cutoffs: Sequence[dt.date], horizons: HorizonsConfig) -> None:
    latest = latest_labeled_cutoff(src.last_day, horizons.churn_days)
    late = [c for c in cutoffs if c > latest]
    if late:
        raise DataError(f"cannot label cutoff {late[0]}: its {horizons.churn_days}-day churn window ends after "
                        f"the data's last day {src.last_day}; the latest labeled cutoff is {latest}")


def latest_labeled_cutoff(last_day: dt.date, horizon_days: int) -> dt.date:
    """The latest cutoff whose label window ``[t, t + H)`` lies inside the data (``t + H <= last_day + 1``)."""
    return last_day + dt.timedelta(days=1 - horizon_days)


def cutoff_schedule(end: dt.date, cfg: SnapshotsConfig, first_day: dt.date | None = None) -> list[dt.date]:
    """Cutoffs at the configured cadence going back ``lookback_months`` from ``end`` (inclusive), oldest first.

    Monthly cutoffs are first days of months (the first one on or before ``end``); weekly ones are Mondays. With
    ``first_day`` (the data's first transaction day) no cutoff on or before it is scheduled: a snapshot there has
    no customers (a customer is someone with an order before the cutoff).
    """
    start = (pd.Timestamp(end) - pd.DateOffset(months=cfg.lookback_months)).date()
    if cfg.cadence == "monthly":
        dates = pd.date_range(start, end, freq="MS")
    else:
        dates = pd.date_range(start, end, freq="W-MON")
    return [x.date() for x in dates if x.date() <= end and (first_day is None or x.date() > first_day)]


def fingerprint(path: Path) -> dict:
    """Name, size and blake2b hash of a file (hashed once per version of the file: a rewritten file has a new
    inode or modification time)."""
    stat = Path(path).stat()
    digest = _file_digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    return {"file": Path(path).name, "bytes": stat.st_size, "blake2b": digest}


@lru_cache(maxsize=512)
def _file_digest(path: str, size: int, mtime_ns: int, inode: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def code_version() -> str:
    """Hash of the feature definitions and this module: changes whenever a feature's meaning can change."""
    h = hashlib.blake2b(digest_size=8)
    for module in (d.__file__, __file__):
        h.update(Path(module).read_bytes())
    return h.hexdigest()


def _metadata(name: str, rows_per_cutoff: dict[str, int], features: list[str], validated_dir: Path,
              extra: dict | None) -> str:
    return json.dumps({
        "name": name, "cutoffs": sorted(rows_per_cutoff), "rows_per_cutoff": dict(sorted(rows_per_cutoff.items())),
        "features": [c for c in features if c not in KEY],
        "sources": [fingerprint(p) for p in source_files(validated_dir)],
        "code_version": code_version(), **(extra or {}),
    }, indent=2)


def write_snapshots_in_engine(src: Sources, cutoffs: Sequence[dt.date], horizons: HorizonsConfig,
                              with_labels: bool, cfg: PipelineConfig, name: str, validated_dir: Path,
                              extra: dict | None = None, sample_customers: int | None = None) -> Path:
    """Write the snapshots at ``cutoffs`` as ``<data_dir>/features/<name>/cutoff=<date>/*.parquet`` plus
    ``metadata.json``, replaced at once (written aside, then renamed: readers never see half a stack). The engine
    writes the Parquet partitions itself (DuckDB's COPY ... PARTITION_BY, Spark's partitioned writer on its
    executors), so a large stack never passes through one pandas frame, nor through Spark's driver.
    ``sample_customers``: see :func:`build_snapshots` (the metadata's ``sample`` says how many customers and rows
    it holds)."""
    if with_labels:
        _check_labelable(src, cutoffs, horizons)

    def fill(tmp: Path) -> None:
        with staged(src) as stage:
            expr = snapshot_expr(src, cutoffs, horizons, with_labels, stage)
            if sample_customers is not None:
                expr = expr.semi_join(customer_sample(expr, sample_customers), "customer_id")
            partition = {"partition_by": "cutoff"} if src.backend.name == "duckdb" else {"partitionBy": "cutoff"}
            src.backend.to_parquet(expr, tmp / "data", **partition)
        rows = {}
        for folder in sorted((tmp / "data").glob("cutoff=*")):
            for mark in folder.glob(".*.crc"):  # Spark's checksums of its local files
                mark.unlink()
            os.replace(folder, tmp / folder.name)
            rows[folder.name.split("=", 1)[1]] = sum(pq.ParquetFile(f).metadata.num_rows
                                                     for f in (tmp / folder.name).glob("*.parquet"))
        shutil.rmtree(tmp / "data")  # empty, or Spark's _SUCCESS marker
        more = dict(extra or {})
        if sample_customers is not None:  # the sample's size, as drawn
            ids = pq.ParquetDataset(sorted(str(p) for p in tmp.glob("cutoff=*/*.parquet"))).read(["customer_id"])
            more["sample"] = {"customers": len(ids["customer_id"].unique()), "asked": sample_customers,
                              "rows": ids.num_rows}
        (tmp / "metadata.json").write_text(_metadata(name, rows, list(expr.columns), validated_dir, more))

    return replace_folder(cfg.data_dir / "features" / name, fill)


def read_snapshots(folder: str | Path) -> pd.DataFrame:
    """Read a snapshot folder written by :func:`write_snapshots_in_engine` back (cutoff as a date column), sorted."""
    import pyarrow.dataset as ds

    files = sorted(str(p) for p in Path(folder).glob("cutoff=*/*.parquet"))
    if not files:
        raise DataError(f"no snapshot partitions (cutoff=<date>/*.parquet) in {folder}; run `churn features`")
    dataset = ds.dataset(files, format="parquet", partitioning=ds.partitioning(flavor="hive"),
                         partition_base_dir=str(folder))
    frame = dataset.to_table().to_pandas()
    frame["cutoff"] = pd.to_datetime(frame["cutoff"].astype("str")).dt.date
    return frame[["customer_id", "cutoff", *[c for c in frame.columns if c not in KEY]]].sort_values(
        KEY, kind="stable").reset_index(drop=True)
