"""``churn forget``: suppress customers and delete their rows from everything the pipeline derived."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from common.files import replace_all
from common.privacy import add_suppressed
from serving.publish import owned_paths, remove_customers


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
    published = [p.resolve() for p in owned_paths(outputs_dir)]  # erased by remove_customers below
    for path in sorted(data_dir.rglob("*.parquet")):
        parents = path.resolve().parents
        if raw_dir in parents or "mlflow" in path.parts or "prefect" in path.parts or any(
                p in parents for p in published):
            continue
        _filter_parquet(path, ids, report, data_dir)
    for where, rows in remove_customers(Path(outputs_dir), ids, sql_url).items():
        report.add(where, rows)
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
