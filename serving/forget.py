"""``churn forget``: suppress customers and delete their rows from everything the pipeline derived."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from common.files import replace_all
from common.privacy import add_suppressed
from serving.lists import LISTS
from serving.publish import sql_url as default_sql_url
from serving.publish import POINTER_TABLE, to_csv_bytes, transaction


@dataclass
class ForgetReport:
    suppressed_total: int = 0
    rows_removed: dict[str, int] = field(default_factory=dict)  # file or table -> rows removed

    def add(self, where: str, rows: int) -> None:
        if rows:
            self.rows_removed[where] = self.rows_removed.get(where, 0) + rows


def forget(data_dir: Path, customer_ids: list[str], outputs_dir: Path, sql_url: str | None = None) -> ForgetReport:
    """Suppress ``customer_ids`` and delete their rows from everything derived under ``data_dir``.

    Covered: the validated tables (with the contacts), quarantined rows, every feature snapshot, every published
    list file (Parquet and CSV, all as-of dates, with their row counts), and the SQL list tables (the default
    SQLite file, or ``sql_url``). Raw source files are the company's own and are left alone; the suppression list
    keeps their rows out of every later run. Model artefacts hold no customer identifiers.
    """
    data_dir = Path(data_dir)
    report = ForgetReport()
    report.suppressed_total = add_suppressed(data_dir, customer_ids)  # first: a later failure still suppresses
    ids = {str(c).strip() for c in customer_ids}
    raw_dir = (data_dir / "raw").resolve()
    for path in sorted(data_dir.rglob("*.parquet")):
        if raw_dir in path.resolve().parents or "mlflow" in path.parts or "prefect" in path.parts:
            continue
        _filter_parquet(path, ids, report, data_dir)
    for path in sorted(Path(outputs_dir).rglob("*.csv")):
        _filter_csv(path, ids, report, data_dir)
    _fix_counts(Path(outputs_dir))
    _filter_sql(default_sql_url(outputs_dir, sql_url), ids, report)
    return report


def _id_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c == "customer_id" or c.endswith("customer_id")]


def _filter_parquet(path: Path, ids: set[str], report: ForgetReport, root: Path) -> None:
    frame = pd.read_parquet(path)
    columns = _id_columns(frame)
    if not columns:
        return
    hit = pd.Series(False, index=frame.index)
    for c in columns:
        hit |= frame[c].astype("string").str.strip().isin(ids).fillna(False)
    if hit.any():
        replace_all({}, {path: frame[~hit].to_parquet(index=False)})
        report.add(str(path.relative_to(root)), int(hit.sum()))


def _filter_csv(path: Path, ids: set[str], report: ForgetReport, root: Path) -> None:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "customer_id" not in frame.columns:
        return
    hit = frame["customer_id"].str.strip().isin(ids)
    if hit.any():
        # the published CSV was written from the Parquet file beside it: write it again the same way
        parquet = path.with_suffix(".parquet")
        if parquet.exists():
            replace_all({}, {path: to_csv_bytes(pd.read_parquet(parquet))})
        else:
            replace_all({}, {path: frame[~hit].to_csv(index=False, lineterminator="\n").encode()})
        report.add(str(path.relative_to(root)), int(hit.sum()))


def _fix_counts(outputs: Path) -> None:
    """Row counts in each list's run.json and latest.json after rows were removed."""
    for run_json in outputs.glob("*/as_of=*/run.json"):
        name = run_json.parent.parent.name
        data = run_json.parent / f"{name}.parquet"
        if data.exists():
            rows = len(pd.read_parquet(data, columns=["customer_id"]))
            meta = json.loads(run_json.read_text())
            if meta.get("rows") != rows:
                text = json.dumps({**meta, "rows": rows}, indent=2, default=str) + "\n"
                replace_all({}, {run_json: text.encode()})
            latest = run_json.parent.parent / "latest.json"
            if latest.exists():
                pointer = json.loads(latest.read_text())
                if pointer.get("folder") == run_json.parent.name and pointer.get("rows") != rows:
                    replace_all({}, {latest: (json.dumps({**pointer, "rows": rows}, indent=2) + "\n").encode()})


def _filter_sql(url: str, ids: set[str], report: ForgetReport) -> None:
    import sqlalchemy as sa

    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return
    with transaction(url) as connection:
        inspector = sa.inspect(connection)
        for spec in LISTS:
            table = spec.table
            if not inspector.has_table(table):
                continue
            stmt = sa.text(f"DELETE FROM {table} WHERE customer_id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True))
            removed = connection.execute(stmt, {"ids": sorted(ids)}).rowcount
            report.add(f"sql:{table}", int(removed or 0))
            connection.execute(sa.text(
                f"UPDATE {POINTER_TABLE} SET row_count = (SELECT count(*) FROM {table} "
                f"WHERE as_of = {POINTER_TABLE}.as_of) WHERE list = :list"), {"list": spec.name})
    if url.startswith("sqlite:///"):  # rewrite the file so that deleted rows leave no bytes behind
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            db.execute("VACUUM")
