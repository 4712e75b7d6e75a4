"""Publishing the lists: one commit point that survives ``kill -9`` anywhere, versioned by as-of date.

Layout under the outputs directory::

    lists -> .lists/<publish id>                    the pointer: one symbolic link, flipped by one atomic rename
    .lists/<publish id>/publish.json                what this version holds: per list, its as-of dates and rows
    .lists/<publish id>/<list>/as_of=<DATE>/<list>.parquet   typed columns (money as scoring rounded it)
    .lists/<publish id>/<list>/as_of=<DATE>/<list>.csv       for CRM imports: UTF-8, header, comma, ISO dates
    .lists/<publish id>/<list>/as_of=<DATE>/run.json         run metadata: when, which flow run, rows, inputs
    .lists/<publish id>/<list>/latest.json          the as-of date this list was last published for
    <list> -> lists/<list>                          fixed links, so ``<outputs>/<list>/as_of=<DATE>/`` keeps working

A publish writes a complete new version aside (the files of earlier as-of dates are hard links to the current
version's, so nothing is copied), writes the SQL rows inside one transaction that holds the database's write lock,
flips the pointer, then commits. Every reader goes through the pointer (``lists``, or the fixed links through it),
so it sees one whole version or the previous one, never a mix. What an interruption can leave behind is repaired
by :func:`recover` on the next start (every publish and every erasure runs it first):

- killed before the flip: the half-written version is unreferenced and deleted; the SQL transaction never committed;
- killed between the flip and the SQL commit: the files are the new version, the database rolled itself back;
  the SQL tables are rebuilt from the files the pointer names (``list_publish`` records which version they hold);
- killed after the commit: the previous version is garbage and deleted.

The SQL target refusing its lock within ``outputs.sql_lock_timeout_seconds`` (another process reading or writing)
fails the publish before the flip: nothing is visible. A commit that fails after the flip flips the pointer back.
The list files hold no timestamps, so the same inputs publish byte-identical files; what differs is in
``run.json``. The SQL side: one table per list (every as-of date), the pointer table ``list_latest`` and one view
``<list>_latest`` per list; plain SQL through SQLAlchemy, SQLite by default, PostgreSQL unchanged.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from common.errors import ChurnError, shown_url
from common.files import exclusive, fsync_path, umask
from common.faults import checkpoint
from models.catalog import MODELS
from serving.lists import LISTS, MONEY_COLUMNS
from serving.lists import get as get_list

PROBABILITY_COLUMNS = (*(spec.score_column for spec in MODELS if spec.kind == "classifier"), "p_alive")
POINTER = "lists"  # the symbolic link every reader goes through
STORE = ".lists"  # the versions, one folder each
MANIFEST = "publish.json"
POINTER_TABLE = "list_latest"
VERSION_TABLE = "list_publish"  # one row: the publish id whose files the SQL tables hold
DEFAULT_LOCK_TIMEOUT = 30.0

log = logging.getLogger("churn.publish")


class PublishError(ChurnError):
    """The lists could not be published; the previously published lists are unchanged."""


def _engine(url: str, lock_timeout: float):
    """An engine whose transactions take the write lock at BEGIN (SQLite: ``BEGIN EXCLUSIVE``, waiting at most
    ``lock_timeout`` for other connections; PostgreSQL: ``lock_timeout``), so that a commit cannot then fail on a
    lock held elsewhere."""
    import sqlalchemy as sa

    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": lock_timeout})

        @sa.event.listens_for(engine, "connect")
        def _manual_transactions(dbapi_connection, _record) -> None:
            dbapi_connection.isolation_level = None  # the driver would BEGIN lazily, without the lock

        @sa.event.listens_for(engine, "begin")
        def _beginexclusive(connection) -> None:
            connection.exec_driver_sql("BEGIN EXCLUSIVE")
    else:
        engine = sa.create_engine(url)
        if engine.dialect.name == "postgresql":
            @sa.event.listens_for(engine, "begin")
            def _pg_lock_timeout(connection) -> None:
                connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms'")
    return engine


def _locked_message(url: str, exc: Exception, lock_timeout: float) -> str:
    detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    return (f"the list database {_safe_url(url)} is busy ({detail}; waited {lock_timeout:g} s): nothing was "
            "published and the previously published lists are unchanged. Close the program reading or writing it, "
            "or raise outputs.sql_lock_timeout_seconds, and run again")


def _safe_url(url: str) -> str:
    return shown_url(url, "<sql target>")


@contextlib.contextmanager
def transaction(url: str | None, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator:
    """A connection inside one transaction on ``url`` holding its write lock (committed on exit, rolled back on
    error); None without a url. A lock not granted in time raises :class:`PublishError`."""
    if url is None:
        yield None
        return
    import sqlalchemy as sa

    engine = _engine(url, lock_timeout)
    try:
        try:
            connection = engine.connect()
            transaction_ = connection.begin()
        except sa.exc.OperationalError as exc:
            raise PublishError(_locked_message(url, exc, lock_timeout)) from None
        try:
            yield connection
        except BaseException:
            transaction_.rollback()
            raise
        else:
            transaction_.commit()
        finally:
            connection.close()
    finally:
        engine.dispose()


def list_folder(outputs_dir: Path, name: str, as_of: dt.date) -> Path:
    """Where readers find one list's files for ``as_of`` (through the pointer)."""
    return Path(outputs_dir) / name / f"as_of={as_of.isoformat()}"


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """The CRM-import CSV: money rounded to the minor unit of its ``currency`` (cents without one), probabilities to
    6 decimals, dates as YYYY-MM-DD."""
    from babel.numbers import get_currency_precision

    currencies = set(frame["currency"].dropna()) if "currency" in frame else set()
    digits = get_currency_precision(currencies.pop()) if len(currencies) == 1 else 2
    rounded = frame.round({**{c: digits for c in MONEY_COLUMNS if c in frame},
                           **{c: 6 for c in PROBABILITY_COLUMNS if c in frame}})
    return rounded.to_csv(index=False, lineterminator="\n").encode("utf-8")


def sql_url(outputs_dir: Path, configured: str | None) -> str:
    return configured or f"sqlite:///{(Path(outputs_dir) / 'lists.db').resolve()}"


sql_url_for = sql_url  # for functions with a parameter named sql_url


# ---- the versioned store --------------------------------------------------------------------------------------


def current_version(outputs_dir: Path) -> Path | None:
    """The folder of the published version the pointer names, or None before the first publish."""
    pointer = Path(outputs_dir) / POINTER
    if not pointer.is_symlink():
        return None
    target = Path(outputs_dir) / os.readlink(pointer)
    return target if target.is_dir() else None


def manifest(outputs_dir: Path) -> dict:
    """The current version's ``publish.json`` (``{"publish_id", "lists": {name: {"latest", "dates"}}}``)."""
    version = current_version(outputs_dir)
    if version is None:
        return {"publish_id": None, "lists": {}}
    return json.loads((version / MANIFEST).read_text())


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copy2(source, target)


def _stage(outputs_dir: Path, base: Path | None, changes: dict[str, bytes | None], meta: dict) -> Path:
    """A complete new version: every file of ``base`` (hard links) with ``changes`` applied (relative path ->
    bytes, None deletes), plus its manifest; written to ``.lists/<new id>`` and flushed to disk."""
    store = Path(outputs_dir) / STORE
    store.mkdir(parents=True, exist_ok=True)
    publish_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    staging = store / f".staging-{publish_id}"
    staging.mkdir()
    try:
        return _fill(staging, store / publish_id, base, changes, meta)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # (after a kill -9 the next start deletes it)
        raise


def _fill(staging: Path, final: Path, base: Path | None, changes: dict[str, bytes | None], meta: dict) -> Path:
    publish_id = final.name
    # a folder whose list file is written anew is replaced whole (exports/ included): nothing stale survives
    replaced_dirs = {Path(rel).parent for rel, data in changes.items() if data is not None
                     and Path(rel).parent.name.startswith("as_of=") and rel.endswith(".parquet")}
    if base is not None:
        for source in sorted(base.rglob("*")):
            rel = str(source.relative_to(base))
            if (source.is_dir() or rel == MANIFEST or rel in changes
                    or any(parent in replaced_dirs for parent in Path(rel).parents)):
                continue
            _link_or_copy(source, staging / rel)
    for number, (rel, data) in enumerate(changes.items()):
        if data is not None:
            _write(staging / rel, data)
        if number == 0:
            checkpoint("publish.while_staging")
    lists: dict[str, dict] = {}
    previous = json.loads((base / MANIFEST).read_text())["lists"] if base is not None else {}
    for spec in LISTS:
        folder = staging / spec.name
        if not folder.is_dir():
            continue
        dates = {}
        for run_json in sorted(folder.glob("as_of=*/run.json")):
            dates[run_json.parent.name.removeprefix("as_of=")] = int(json.loads(run_json.read_text())["rows"])
        latest = folder / "latest.json"
        lists[spec.name] = {"latest": json.loads(latest.read_text())["as_of"] if latest.exists()
                            else previous.get(spec.name, {}).get("latest"), "dates": dates}
    _write(staging / MANIFEST, (json.dumps({"publish_id": publish_id, **meta, "lists": lists}, indent=2,
                                           default=str) + "\n").encode())
    mode = 0o777 & ~umask()
    for folder in [staging, *(p for p in staging.rglob("*") if p.is_dir())]:
        folder.chmod(mode)  # readable by the CRM import, not private
        fsync_path(folder)
    os.rename(staging, final)
    fsync_path(final.parent)
    return final


def _flip(outputs_dir: Path, version: Path | None) -> None:
    """Point ``lists`` at ``version`` (None removes the pointer) with one atomic rename."""
    outputs_dir = Path(outputs_dir)
    pointer = outputs_dir / POINTER
    if version is None:
        if pointer.is_symlink():
            pointer.unlink()
    else:
        tmp = outputs_dir / f".{POINTER}-{uuid.uuid4().hex[:8]}"
        os.symlink(os.path.relpath(version, outputs_dir), tmp)
        os.replace(tmp, pointer)
    fsync_path(outputs_dir)


def _ensure_links(outputs_dir: Path) -> None:
    """The fixed links ``<list> -> lists/<list>``; a folder of the layout before the store is replaced (its files
    are in the current version by then, see :func:`_adopt_old_layout`)."""
    for spec in LISTS:
        link = Path(outputs_dir) / spec.name
        if link.is_symlink():
            continue
        if link.is_dir():
            aside = Path(outputs_dir) / STORE / f".old-layout-{spec.name}-{uuid.uuid4().hex[:6]}"
            os.rename(link, aside)
            shutil.rmtree(aside)
        tmp = Path(outputs_dir) / f".{spec.name}-{uuid.uuid4().hex[:8]}"
        os.symlink(os.path.join(POINTER, spec.name), tmp)
        os.replace(tmp, link)


def _adopt_old_layout(outputs_dir: Path) -> dict[str, bytes]:
    """Files of lists published before the store (real folders ``<list>/as_of=...``), as changes to stage."""
    changes = {}
    for spec in LISTS:
        folder = Path(outputs_dir) / spec.name
        if folder.is_dir() and not folder.is_symlink():
            for path in sorted(folder.rglob("*")):  # not the leftovers of the old swaps (hidden names)
                if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts):
                    changes[str(path.relative_to(outputs_dir))] = path.read_bytes()
    return changes


def recover(outputs_dir: Path, url: str | None = None, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> list[str]:
    """Repair what an interrupted publish or erasure left: delete unreferenced versions and temporary links, move
    lists of the old layout into the store, and rebuild the SQL tables from the files when they hold another
    version. Returns one line per repair (empty when there was nothing to do). Takes the publish lock."""
    outputs_dir = Path(outputs_dir)
    if not outputs_dir.exists():
        return []
    with exclusive(outputs_dir / ".publish.lock"):
        return _recover(outputs_dir, url, lock_timeout)


def _recover(outputs_dir: Path, url: str | None, lock_timeout: float) -> list[str]:
    done = []
    old = _adopt_old_layout(outputs_dir)
    if old:
        version = _stage(outputs_dir, current_version(outputs_dir), old, {"adopted": "lists of the layout before "
                                                                                    "the versioned store"})
        _flip(outputs_dir, version)
        done.append(f"moved the lists published in the old layout into the versioned store ({version.name})")
    current = current_version(outputs_dir)
    for path in sorted(outputs_dir.glob(f".{POINTER}-*")) + sorted(outputs_dir.glob(".*-????????")):
        if path.is_symlink():
            path.unlink()
    store = outputs_dir / STORE
    leftovers = [p for p in sorted(store.iterdir()) if p != current] if store.is_dir() else []
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()
    if leftovers:
        done.append(f"removed {len(leftovers)} leftover(s) of an interrupted or finished publish: "
                    + ", ".join(p.name for p in leftovers))
    if current is not None:
        _ensure_links(outputs_dir)
        if url is not None and _sql_version(url) != current.name:
            with transaction(url, lock_timeout) as connection:
                _rebuild_sql(connection, current)
            done.append(f"the SQL list tables did not hold the published version {current.name} (an interrupted "
                        "publish or erasure): rebuilt them from its files")
    for line in done:
        log.warning(line)
    return done


def _commit(outputs_dir: Path, url: str | None, lock_timeout: float, changes: dict[str, bytes | None], meta: dict,
            sql_work: Callable[[object, str], None], after_stage: Callable[[], None] = lambda: None) -> Path:
    """Stage a new version, do ``sql_work(connection, publish_id)`` in one transaction holding the write lock,
    flip the pointer, commit; then delete the old version. Anything before the flip changes nothing visible."""
    base = current_version(outputs_dir)
    version = _stage(outputs_dir, base, changes, meta)
    try:
        after_stage()
        with transaction(url, lock_timeout) as connection:
            if connection is not None:
                sql_work(connection, version.name)
                _set_sql_version(connection, version.name)
            checkpoint("publish.after_sql_written")
            _flip(outputs_dir, version)  # the commit point of the files
            checkpoint("publish.after_pointer")
        # leaving the block committed the SQL transaction; a commit that fails raises into the handler below
    except BaseException as exc:
        if current_version(outputs_dir) == version:
            _flip(outputs_dir, base)
        shutil.rmtree(version, ignore_errors=True)
        if isinstance(exc, Exception) and not isinstance(exc, ChurnError) and _is_sql_error(exc):
            detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise PublishError(f"writing the list database {_safe_url(url or '')} failed ({detail}): nothing was "
                               "published and the previously published lists are unchanged") from None
        raise
    checkpoint("publish.after_commit")
    _ensure_links(outputs_dir)
    for path in sorted((Path(outputs_dir) / STORE).iterdir()):
        if path != version:
            checkpoint("publish.during_cleanup")
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()
    return version


def _is_sql_error(exc: Exception) -> bool:
    try:
        import sqlalchemy as sa
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, sa.exc.OperationalError)


# ---- publishing -----------------------------------------------------------------------------------------------


def publish_lists(lists: dict[str, pd.DataFrame], outputs_dir: Path, as_of: dt.date, run_meta: dict,
                  sql: str | None = None, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
                  exports: dict | None = None) -> dict[str, Path]:
    """Publish every list of one run at once, as files and (when ``sql`` names a database) as SQL tables; returns
    each list's folder (through the pointer).

    All or nothing, whatever stops it (see the module docstring). ``run_meta`` (JSON-serialisable) is written to
    each folder's ``run.json`` together with the list's row count. ``exports`` (target name ->
    :class:`common.config.ExportTarget`; None: :data:`common.config.READY_EXPORTS`) are written under
    ``exports/`` with the targets themselves (``exports/targets.json``, what ``churn forget`` rewrites them with),
    and ``changes.csv`` compares each list with its previous as-of date (:mod:`serving.exports`).
    """
    from common.config import READY_EXPORTS

    outputs_dir = Path(outputs_dir)
    targets = READY_EXPORTS if exports is None else exports
    version = current_version(outputs_dir)
    changes: dict[str, bytes | None] = {}
    for name, frame in lists.items():
        folder = f"{name}/as_of={as_of.isoformat()}"
        meta = {**run_meta, "list": name, "rows": int(len(frame)), "as_of": as_of.isoformat()}
        changes[f"{folder}/{name}.parquet"] = frame.to_parquet(index=False)
        changes[f"{folder}/{name}.csv"] = to_csv_bytes(frame)
        changes.update(_derived_files(folder, name, frame, targets, _previous_list(version, name, as_of)))
        changes[f"{folder}/run.json"] = (json.dumps(meta, indent=2, default=str) + "\n").encode()
        changes[f"{name}/latest.json"] = (json.dumps({
            "list": name, "as_of": as_of.isoformat(), "folder": f"as_of={as_of.isoformat()}", "rows": int(len(frame)),
            "run_id": run_meta.get("run_id")}, indent=2) + "\n").encode()
        if name == next(iter(lists)):
            checkpoint("publish.after_first_list")

    def after_stage() -> None:
        checkpoint("publish.after_staging")

    with exclusive(outputs_dir / ".publish.lock"):  # one publisher at a time (a scheduled and a manual run)
        _recover(outputs_dir, sql, lock_timeout)
        _commit(outputs_dir, sql, lock_timeout, changes, {"run_id": run_meta.get("run_id"),
                                                          "as_of": as_of.isoformat()},
                lambda connection, _id: write_sql(connection, lists, as_of, run_meta.get("run_id")), after_stage)
    return {name: list_folder(outputs_dir, name, as_of) for name in lists}


# ---- SQL ----------------------------------------------------------------------------------------------------


def _ensure_pointer_table(connection) -> None:
    import sqlalchemy as sa

    if not sa.inspect(connection).has_table(POINTER_TABLE):
        connection.execute(sa.text(f"CREATE TABLE {POINTER_TABLE} (list VARCHAR(32) PRIMARY KEY, "
                                   "as_of VARCHAR(10) NOT NULL, run_id VARCHAR(64), row_count INTEGER)"))


def _set_sql_version(connection, publish_id: str) -> None:
    import sqlalchemy as sa

    if not sa.inspect(connection).has_table(VERSION_TABLE):
        connection.execute(sa.text(f"CREATE TABLE {VERSION_TABLE} (publish_id VARCHAR(64) NOT NULL)"))
    connection.execute(sa.text(f"DELETE FROM {VERSION_TABLE}"))
    connection.execute(sa.text(f"INSERT INTO {VERSION_TABLE} (publish_id) VALUES (:id)"), {"id": publish_id})


def _sql_version(url: str) -> str | None:
    """The publish id the SQL tables hold (None when the database or the table does not exist)."""
    import sqlalchemy as sa

    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table(VERSION_TABLE):
                return None
            return connection.execute(sa.text(f"SELECT publish_id FROM {VERSION_TABLE}")).scalar()
    finally:
        engine.dispose()


def _write_rows(connection, name: str, frame: pd.DataFrame, as_of: str) -> None:
    import sqlalchemy as sa

    table = get_list(name).table
    rows = frame.assign(as_of=as_of, **{c: frame[c].astype("string") for c in frame.columns if c.endswith("_date")})
    if sa.inspect(connection).has_table(table):
        _add_missing_columns(connection, table, rows)
        connection.execute(sa.text(f"DELETE FROM {table} WHERE as_of = :as_of"), {"as_of": as_of})
    rows.to_sql(table, connection, if_exists="append", index=False)
    _ensure_indexes(connection, table, rows)
    if connection.dialect.name == "postgresql":  # fresh planner statistics now, not an autovacuum under load later
        connection.execute(sa.text(f"ANALYZE {table}"))


def _ensure_indexes(connection, table: str, rows: pd.DataFrame) -> None:
    """The indexes the workspace's reads need (a profile by customer, a list page in rank order of one date)."""
    import sqlalchemy as sa

    for name, columns in ((f"ix_{table}_customer", ("customer_id", "as_of")), (f"ix_{table}_rank", ("as_of", "rank"))):
        if set(columns) <= set(rows.columns):
            connection.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({', '.join(columns)})"))


def _add_missing_columns(connection, table: str, rows: pd.DataFrame) -> None:
    """A list that gained a column since the table was created (a new model, a new setting): the column is added
    (earlier as-of dates hold NULL in it); columns the list no longer has stay, NULL from now on."""
    import sqlalchemy as sa

    existing = {c["name"] for c in sa.inspect(connection).get_columns(table)}
    for column in (c for c in rows.columns if c not in existing):
        kind = rows[column].dtype.kind
        sql_type = {"i": "BIGINT", "u": "BIGINT", "f": "FLOAT", "b": "BOOLEAN", "M": "TIMESTAMP"}.get(kind, "TEXT")
        quoted = connection.dialect.identifier_preparer.quote(column)
        connection.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {quoted} {sql_type}"))


def _point(connection, name: str, as_of: str, run_id: str | None, rows: int) -> None:
    import sqlalchemy as sa

    spec = get_list(name)
    connection.execute(sa.text(f"DELETE FROM {POINTER_TABLE} WHERE list = :list"), {"list": name})
    connection.execute(sa.text(f"INSERT INTO {POINTER_TABLE} (list, as_of, run_id, row_count) "
                               "VALUES (:list, :as_of, :run_id, :rows)"),
                       {"list": name, "as_of": as_of, "run_id": run_id, "rows": rows})
    connection.execute(sa.text(f"DROP VIEW IF EXISTS {spec.latest_view}"))
    connection.execute(sa.text(f"CREATE VIEW {spec.latest_view} AS SELECT * FROM {spec.table} WHERE as_of = "
                               f"(SELECT as_of FROM {POINTER_TABLE} WHERE list = '{name}')"))


def write_sql(connection, lists: dict[str, pd.DataFrame], as_of: dt.date, run_id: str) -> None:
    """Inside the caller's transaction: replace each list's rows for ``as_of`` in the table named after the list
    (one table per list, every as-of date kept), point ``list_latest`` at them and (re)create the view
    ``<list>_latest``."""
    _ensure_pointer_table(connection)
    for name, frame in lists.items():
        _write_rows(connection, name, frame, as_of.isoformat())
        if name == next(iter(lists)):
            checkpoint("publish.sql_after_first_list")
        _point(connection, name, as_of.isoformat(), run_id, int(len(frame)))


def _rebuild_sql(connection, version: Path) -> None:
    """Make the SQL tables hold exactly the files of ``version``: every list's every as-of date."""
    import sqlalchemy as sa

    _ensure_pointer_table(connection)
    published = json.loads((version / MANIFEST).read_text())["lists"]
    for spec in LISTS:
        if sa.inspect(connection).has_table(spec.table):
            connection.execute(sa.text(f"DELETE FROM {spec.table}"))
        entry = published.get(spec.name)
        if not entry:
            continue
        for as_of in sorted(entry["dates"]):
            _write_rows(connection, spec.name, pd.read_parquet(version / spec.name / f"as_of={as_of}" /
                                                               f"{spec.name}.parquet"), as_of)
        latest = json.loads((version / spec.name / "latest.json").read_text())
        _point(connection, spec.name, latest["as_of"], latest.get("run_id"), int(latest["rows"]))
    _set_sql_version(connection, version.name)


# ---- erasure ------------------------------------------------------------------------------------------------


def owned_paths(outputs_dir: Path) -> list[Path]:
    """The files and folders the publisher owns under ``outputs_dir``: :func:`remove_customers` erases in them,
    nothing else may rewrite them."""
    outputs_dir = Path(outputs_dir)
    return [outputs_dir / spec.name for spec in LISTS] + [outputs_dir / POINTER, outputs_dir / STORE,
                                                          outputs_dir / "lists.db"]


def _previous_list(version: Path | None, name: str, as_of: dt.date) -> pd.DataFrame | None:
    """List ``name`` at its latest published as-of date before ``as_of`` (None: none)."""
    if version is None:
        return None
    earlier = sorted(p for p in version.glob(f"{name}/as_of=*/{name}.parquet")
                     if p.parent.name.removeprefix("as_of=") < as_of.isoformat())
    return pd.read_parquet(earlier[-1]) if earlier else None


def _derived_files(folder: str, name: str, frame: pd.DataFrame, targets: dict,
                   previous: pd.DataFrame | None) -> dict[str, bytes]:
    """The export files of one list, their targets and the changes since its previous as-of date."""
    from serving.exports import changes, export_files

    files = {f"{folder}/{path}": data for path, data in export_files(name, frame, targets).items()}
    files[f"{folder}/exports/targets.json"] = (json.dumps({k: t.model_dump() for k, t in targets.items()},
                                                          indent=2) + "\n").encode()
    files[f"{folder}/changes.csv"] = changes(frame, previous).to_csv(index=False, lineterminator="\n").encode()
    return files


def _rewritten_exports(folder: Path, rel: str, name: str, kept: pd.DataFrame, ids: set[str]) -> dict[str, bytes]:
    """An erasure's new export files of one list folder: rewritten from the kept rows with the targets they were
    written with, and ``changes.csv`` without the forgotten customers."""
    from common.config import ExportTarget
    from serving.exports import export_files

    files: dict[str, bytes] = {}
    targets_file = folder / "exports" / "targets.json"
    if targets_file.exists():  # the folder is replaced whole: every derived file is written again
        targets = {k: ExportTarget(**v) for k, v in json.loads(targets_file.read_text()).items()}
        files.update({f"{rel}/{path}": data for path, data in export_files(name, kept, targets).items()})
        files[f"{rel}/exports/targets.json"] = targets_file.read_bytes()
    if (folder / "changes.csv").exists():
        files[f"{rel}/changes.csv"] = (folder / "changes.csv").read_bytes()
    return {**files, **_rewritten_changes(folder, rel, ids)}


def _rewritten_changes(folder: Path, rel: str, ids: set[str]) -> dict[str, bytes]:
    """``changes.csv`` of a list folder without the forgotten customers, when it names any."""
    path = folder / "changes.csv"
    if not path.exists():
        return {}
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    hit = table["customer_id"].isin(ids)
    return {f"{rel}/changes.csv": table[~hit].to_csv(index=False, lineterminator="\n").encode()} if hit.any() else {}


def remove_customers(outputs_dir: Path, ids: set[str], sql_url: str | None = None,
                     lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> dict[str, int]:
    """Delete ``ids`` (customer ids as text) from every published list (files of every as-of date with their row
    counts, and the SQL list tables), as one new version committed like a publish; the version that held them is
    deleted. Returns rows removed per file or table. Idempotent."""
    outputs_dir = Path(outputs_dir)
    url = sql_url_for(outputs_dir, sql_url)
    if not outputs_dir.exists():
        return {}
    removed: dict[str, int] = {}
    with exclusive(outputs_dir / ".publish.lock"):
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
            url = None
        _recover(outputs_dir, url, lock_timeout)
        version = current_version(outputs_dir)
        changes: dict[str, bytes | None] = {}
        for spec in LISTS:
            for parquet in sorted(version.glob(f"{spec.name}/as_of=*/{spec.name}.parquet")) if version else []:
                frame = pd.read_parquet(parquet)
                hit = frame["customer_id"].astype("string").isin(ids).fillna(False)
                folder = parquet.parent
                rel = str(folder.relative_to(version))
                if not hit.any():  # a customer who left the list is still named in its changes
                    changes.update(_rewritten_changes(folder, rel, ids))
                    continue
                kept = frame[~hit]
                meta = json.loads((folder / "run.json").read_text())
                changes[f"{rel}/{spec.name}.parquet"] = kept.to_parquet(index=False)
                changes[f"{rel}/{spec.name}.csv"] = to_csv_bytes(kept)
                changes.update(_rewritten_exports(folder, rel, spec.name, kept, ids))
                changes[f"{rel}/run.json"] = (json.dumps({**meta, "rows": int(len(kept))}, indent=2, default=str)
                                              + "\n").encode()
                latest = json.loads((folder.parent / "latest.json").read_text())
                if latest.get("folder") == folder.name:
                    changes[f"{spec.name}/latest.json"] = (json.dumps({**latest, "rows": int(len(kept))}, indent=2)
                                                           + "\n").encode()
                removed[rel + f"/{spec.name}.parquet"] = int(hit.sum())

        def delete_rows(connection, _publish_id: str) -> None:
            removed.update(_delete_sql_rows(connection, ids))

        if changes or url is not None:
            _commit(outputs_dir, url, lock_timeout, changes, {"erasure": True}, delete_rows)
    if url is not None and url.startswith("sqlite:///"):  # rewrite the file so that deleted rows leave no bytes
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///"), timeout=lock_timeout) as db:
            db.execute("VACUUM")
    return {k: v for k, v in removed.items() if v}


def _delete_sql_rows(connection, ids: set[str]) -> dict[str, int]:
    import sqlalchemy as sa

    removed = {}
    inspector = sa.inspect(connection)
    for spec in LISTS:
        if not inspector.has_table(spec.table):
            continue
        stmt = sa.text(f"DELETE FROM {spec.table} WHERE customer_id IN :ids").bindparams(
            sa.bindparam("ids", expanding=True))
        removed[f"sql:{spec.table}"] = int(connection.execute(stmt, {"ids": sorted(ids)}).rowcount or 0)
        if inspector.has_table(POINTER_TABLE):
            connection.execute(sa.text(
                f"UPDATE {POINTER_TABLE} SET row_count = (SELECT count(*) FROM {spec.table} "
                f"WHERE as_of = {POINTER_TABLE}.as_of) WHERE list = :list"), {"list": spec.name})
    return removed
