"""Publishing the lists: atomic, versioned by as-of date, never half-written.

Layout under the outputs directory, per list of :data:`serving.lists.LISTS`::

    <list>/as_of=<DATE>/<list>.parquet   full precision, typed columns
    <list>/as_of=<DATE>/<list>.csv       for CRM imports: UTF-8, header, comma, ISO dates, money to 2 decimals
    <list>/as_of=<DATE>/run.json         run metadata: when, which flow run, row counts, inputs
    <list>/latest.json                   pointer to the newest published as-of folder

Every folder and pointer of one run is written aside and swapped in together (:func:`common.files.replace_all`):
a failure at any point, including between two lists, leaves every previously published list as it was. The list
files hold no timestamps, so the same inputs publish byte-identical files; what differs between runs is in
``run.json``.

The same rows go to one SQL table per list (every as-of date, one transaction per run), with the pointer table
``list_latest`` and one view ``<list>_latest`` per list.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from common.files import replace_all
from models.catalog import MODELS
from serving.lists import get as get_list
from common.faults import checkpoint

MONEY_COLUMNS = ("predicted_cltv", "value_at_risk", "value_if_reactivated", "expected_winback_value")
PROBABILITY_COLUMNS = tuple(spec.score_column for spec in MODELS if spec.kind == "classifier")


@contextlib.contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def transaction(url: str | None) -> Iterator:
    """A connection inside one transaction on ``url`` (committed on exit, rolled back on error); None without."""
    if url is None:
        yield None
        return
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            yield connection
    finally:
        engine.dispose()


def list_folder(outputs_dir: Path, name: str, as_of: dt.date) -> Path:
    return Path(outputs_dir) / name / f"as_of={as_of.isoformat()}"


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """The CRM-import CSV: money rounded to cents, probabilities to 6 decimals, dates as YYYY-MM-DD."""
    rounded = frame.round({**{c: 2 for c in MONEY_COLUMNS if c in frame}, **{c: 6 for c in PROBABILITY_COLUMNS
                                                                           if c in frame}})
    return rounded.to_csv(index=False, lineterminator="\n").encode("utf-8")


def publish_lists(lists: dict[str, pd.DataFrame], outputs_dir: Path, as_of: dt.date, run_meta: dict,
                  sql: str | None = None) -> dict[str, Path]:
    """Publish every list of one run at once, as files and (when ``sql`` names a database) as SQL tables; returns
    each list's folder.

    The SQL rows are written inside one transaction, the files are swapped in inside that transaction, and it
    commits last: a failure before the commit leaves both the tables and the files as they were. ``run_meta``
    (JSON-serialisable) is written to each folder's ``run.json`` together with the list's row count.
    """
    folders, pointers = {}, {}
    for name, frame in lists.items():
        target = list_folder(outputs_dir, name, as_of)

        def fill(tmp: Path, name=name, frame=frame) -> None:
            frame.to_parquet(tmp / f"{name}.parquet", index=False)
            (tmp / f"{name}.csv").write_bytes(to_csv_bytes(frame))
            meta = {**run_meta, "list": name, "rows": int(len(frame)), "as_of": as_of.isoformat()}
            (tmp / "run.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")

        folders[target] = fill
        pointers[target.parent / "latest.json"] = (json.dumps({
            "list": name, "as_of": as_of.isoformat(), "folder": target.name, "rows": int(len(frame)),
            "run_id": run_meta.get("run_id")}, indent=2) + "\n").encode()

    first = next(iter(folders), None)

    def hook(event: str, target: Path | None) -> None:
        if event == "staged":
            checkpoint("publish.after_staging")
        elif target == first:
            checkpoint("publish.after_first_list")

    # one publisher at a time (a scheduled and a manual run); the SQL transaction commits after the file swap
    with _exclusive(Path(outputs_dir) / ".publish.lock"), transaction(sql) as connection:
        if connection is not None:
            write_sql(connection, lists, as_of, run_meta.get("run_id"))
        replace_all(folders, pointers, hook=hook)
    return {name: list_folder(outputs_dir, name, as_of) for name in lists}


# ---- SQL ----------------------------------------------------------------------------------------------------


def sql_url(outputs_dir: Path, configured: str | None) -> str:
    return configured or f"sqlite:///{(Path(outputs_dir) / 'lists.db').resolve()}"


POINTER_TABLE = "list_latest"


def write_sql(connection, lists: dict[str, pd.DataFrame], as_of: dt.date, run_id: str) -> None:
    """Inside the caller's transaction: replace each list's rows for ``as_of`` in the table named after the list
    (one table per list, every as-of date kept), point ``list_latest`` at them and (re)create the view
    ``<list>_latest``. Plain SQL through SQLAlchemy: SQLite by default, PostgreSQL unchanged."""
    import sqlalchemy as sa

    inspector = sa.inspect(connection)
    if not inspector.has_table(POINTER_TABLE):
        connection.execute(sa.text(f"CREATE TABLE {POINTER_TABLE} (list VARCHAR(32) PRIMARY KEY, "
                                   "as_of VARCHAR(10) NOT NULL, run_id VARCHAR(64), row_count INTEGER)"))
    for name, frame in lists.items():
        spec = get_list(name)
        table, view = spec.table, spec.latest_view
        rows = frame.assign(as_of=as_of.isoformat(),
                            **{c: frame[c].astype("string") for c in frame.columns if c.endswith("_date")})
        if inspector.has_table(table):
            connection.execute(sa.text(f"DELETE FROM {table} WHERE as_of = :as_of"), {"as_of": as_of.isoformat()})
        rows.to_sql(table, connection, if_exists="append", index=False)
        if name == next(iter(lists)):
            checkpoint("publish.sql_after_first_list")
        connection.execute(sa.text(f"DELETE FROM {POINTER_TABLE} WHERE list = :list"), {"list": name})
        connection.execute(sa.text(f"INSERT INTO {POINTER_TABLE} (list, as_of, run_id, row_count) "
                                   "VALUES (:list, :as_of, :run_id, :rows)"),
                           {"list": name, "as_of": as_of.isoformat(), "run_id": run_id, "rows": int(len(frame))})
        connection.execute(sa.text(f"DROP VIEW IF EXISTS {view}"))
        connection.execute(sa.text(f"CREATE VIEW {view} AS SELECT * FROM {table} WHERE as_of = "
                                   f"(SELECT as_of FROM {POINTER_TABLE} WHERE list = '{name}')"))
