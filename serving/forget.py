"""``churn forget``: suppress customers and delete their rows from everything the pipeline derived.

The customers are put on the suppression list first (:mod:`common.privacy`), so every later run drops them even if
the erasure stops half-way. The erasure then runs over a plan written to ``<data_dir>/privacy/forget-plan.json``
before anything is touched: every target (the published lists, then every Parquet file under the data folder that
is not a configured source) and whether it is done. The plan holds the customers' hashes (:func:`id_hash`), never
their ids; rows are matched by hashing their id columns, each distinct id once. A file that cannot be read or
written is recorded in the plan with the reason and the others are still erased; a ``kill -9`` leaves the plan as
far as it got. :func:`forget` with ``resume=True`` (``churn forget --resume``) finishes it; a completed erasure
deletes the plan.

Never written: the configured sources (files, globs resolved as :mod:`features.sources` does, SQLite files of
``source.url``): they are the company's own, and the suppression list keeps their rows out of every later run.
Every other Parquet file under the data folder is the pipeline's, and their rows are deleted from it. The MLflow
and Prefect stores hold no customer identifiers. The published lists (files of every as-of date and the SQL list
tables) are erased by :func:`serving.publish.remove_customers` only.
"""

from __future__ import annotations

import glob
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from common.config import PipelineConfig
from common.errors import ChurnError, shown_url
from common.faults import checkpoint
from common.files import exclusive, replace_all, replace_file
from common.privacy import (SUPPRESSION_FILE, add_suppressed_hashes, forgotten_ids, id_hash, id_text,
                            load_suppressed, suppressed_mask)
from features.snapshots import DAYS_FILE
from serving.lists import LISTS
from serving.publish import current_version, owned_paths, remove_customers, sql_url

PLAN_FILE = SUPPRESSION_FILE.parent / "forget-plan.json"
LISTS_TARGET = "published lists"  # the files of every as-of date and the SQL list tables, one target
_INTEGRAL_TEXT = re.compile(r"^([+-]?\d+)\.0*$")  # how a quarantine file keeps a float id: '7.0'
_ARROW_PREFIX = re.compile(r"^Could not open Parquet input source '[^']*': ")
# what an interrupted common.files.replace_all leaves beside a Parquet file: the old version, or the new one staged
_LEFTOVER = re.compile(r"^\..+\.parquet(\.old)?-\w{8}$")


@dataclass
class ForgetReport:
    suppressed_total: int = 0
    rows_removed: dict[str, int] = field(default_factory=dict)  # file or table -> rows removed
    remaining: dict[str, str] = field(default_factory=dict)  # target not erased yet -> why
    plan: Path | None = None  # the plan left for `churn forget --resume` (None: the erasure is complete)
    sources: list[str] = field(default_factory=list)  # the configured sources, left alone (as the config names them)

    def add(self, where: str, rows: int) -> None:
        if rows:
            self.rows_removed[where] = self.rows_removed.get(where, 0) + rows


class ForgetIncomplete(ChurnError):
    """Some targets could not be erased; the plan lists them and ``churn forget --resume`` finishes the erasure."""

    def __init__(self, message: str, report: ForgetReport):
        super().__init__(message)
        self.report = report


def plan_path(data_dir: Path) -> Path:
    return Path(data_dir) / PLAN_FILE


def forget(cfg: PipelineConfig, customer_ids: list[str] | tuple[str, ...] = (), resume: bool = False
           ) -> ForgetReport:
    """Suppress ``customer_ids`` and delete their rows from everything derived under ``cfg.data_dir``.

    Covered: every published list (files of every as-of date with their row counts, and the SQL list tables),
    the validated tables (with the contacts), quarantined rows (matched through the table's column mapping),
    every feature snapshot (its metadata then no longer claims the inputs it was built from, so no later run
    reuses it), and any other Parquet file under the data folder. Ids are compared as validation types them
    (:func:`common.privacy.id_text`). Without ids, ``resume`` finishes the erasure an unfinished plan describes.

    Raises :class:`ForgetIncomplete` (with the report) when a target could not be erased; the plan is then left
    with what remains. Resuming without a plan does nothing; no ids without ``resume`` is a :class:`ChurnError`.
    """
    data_dir = Path(cfg.data_dir)
    with exclusive(data_dir / PLAN_FILE.parent / ".forget.lock"):  # one erasure at a time: one plan, one list
        return _forget(cfg, data_dir, sorted({str(c).strip() for c in customer_ids} - {""}), resume)


def _forget(cfg: PipelineConfig, data_dir: Path, ids: list[str], resume: bool) -> ForgetReport:
    try:
        plan = _load_plan(data_dir)
    except ValueError:  # not a plan any more (edited by hand?): every suppressed customer is erased again
        plan = _new_plan(cfg, load_suppressed(data_dir))
    if not ids and not resume:
        raise ChurnError("nothing to forget: name the customers (`churn forget ID...`), or finish an unfinished "
                         "erasure with `churn forget --resume`")
    if not ids and plan is None:  # nothing left to resume: every erasure so far is complete
        return ForgetReport(suppressed_total=len(load_suppressed(data_dir)), sources=_left_alone(cfg))
    if ids:  # a new erasure (an unfinished one is folded in and done again from the start)
        plan = _new_plan(cfg, {id_hash(c) for c in ids} | set(plan["id_hashes"] if plan else ()))
    hashes = set(plan["id_hashes"])
    report = ForgetReport(sources=_left_alone(cfg))
    report.suppressed_total = add_suppressed_hashes(data_dir, hashes)  # first: a later failure still suppresses
    _save_plan(data_dir, plan)
    checkpoint("forget.after_plan")

    protected = _protected(cfg)
    outputs = cfg.resolve(cfg.outputs.dir)
    first_file = True
    for entry in plan["targets"]:
        if entry["done"]:
            continue
        try:
            if entry["target"] == LISTS_TARGET:
                known = set(ids) | _published_ids(outputs, hashes)  # on resume the ids come from the lists
                removed = remove_customers(outputs, known, sql_url(outputs, cfg.outputs.sql_url))
                checkpoint("forget.after_published")
            else:
                path = data_dir / entry["target"]
                removed = {} if path.resolve() in protected or not path.exists() else _erase_file(
                    cfg, path, hashes)
                if removed and first_file:
                    first_file = False
                    checkpoint("forget.after_first_file")
        except (ChurnError, OSError, ValueError, pa.ArrowException) as exc:
            entry["error"] = _first_line(exc)
        else:
            entry.update(done=True, removed=removed)
            entry.pop("error", None)
        _save_plan(data_dir, plan)

    for entry in plan["targets"]:
        for where, rows in entry.get("removed", {}).items():
            report.add(where, rows)
    report.remaining = {e["target"]: e.get("error", "not reached") for e in plan["targets"] if not e["done"]}
    if not report.remaining:
        plan_path(data_dir).unlink()
        return report
    report.plan = plan_path(data_dir)
    raise ForgetIncomplete(_incomplete_message(report, data_dir), report)


# ---- the plan -------------------------------------------------------------------------------------------------


def _targets(cfg: PipelineConfig) -> list[str]:
    """What an erasure touches, in order: the published lists, then every Parquet file under the data folder
    (with what an interrupted replacement left beside one) except the sources, the MLflow and Prefect stores and
    what the publisher owns. In each folder the per-day rows derived from the transactions come last, so that an
    interrupted erasure never leaves them filtered beside an unfiltered transactions file that still passes for
    their origin (:func:`features.snapshots.stored_days_current` judges them by that file's size and row count)."""
    data_dir = Path(cfg.data_dir)
    skip = _protected(cfg) | {p.resolve() for p in owned_paths(cfg.resolve(cfg.outputs.dir))}
    skip |= {(data_dir / store).resolve() for store in ("mlflow", "prefect")}
    files = []
    for path in data_dir.rglob("*"):
        if not (path.suffix == ".parquet" or _LEFTOVER.match(path.name)) or not path.is_file():
            continue
        resolved = path.resolve()
        if resolved not in skip and not any(p in skip for p in resolved.parents):
            files.append(path)
    files.sort(key=lambda p: (str(p.parent), p.name == DAYS_FILE, p.name))
    return [LISTS_TARGET, *(str(p.relative_to(data_dir)) for p in files)]


def _new_plan(cfg: PipelineConfig, hashes: set[str]) -> dict:
    return {"about": "what `churn forget` erases (customers as id hashes, common.privacy.id_hash) and what is done; "
                     "run `churn forget --resume` to finish it",
            "id_hashes": sorted(hashes), "targets": [{"target": t, "done": False} for t in _targets(cfg)]}


def _load_plan(data_dir: Path) -> dict | None:
    """The unfinished plan (None when there is none); ValueError when the file is no plan."""
    path = plan_path(data_dir)
    if not path.exists():
        return None
    plan = json.loads(path.read_text())
    if not isinstance(plan, dict) or not isinstance(plan.get("id_hashes"), list) or not all(
            isinstance(t, dict) and {"target", "done"} <= set(t) for t in plan.get("targets", None) or [None]):
        raise ValueError(f"{path} is not a forget plan")
    return plan


def _save_plan(data_dir: Path, plan: dict) -> None:
    replace_all({}, {plan_path(data_dir): (json.dumps(plan, indent=2) + "\n").encode()})


# ---- what is left alone ---------------------------------------------------------------------------------------


def _source_files(cfg: PipelineConfig) -> list[Path]:
    """Every file a configured source names: the matches of each path or glob (resolved as
    :mod:`features.sources` does) and the SQLite file of each ``sqlite:///`` url."""
    files = []
    for table in cfg.tables.values():
        source = table.source
        if source.path is not None:
            files += [Path(p) for p in glob.glob(str(cfg.resolve(source.path)))]
        elif source.url and source.url.startswith("sqlite:///"):
            database = source.url.removeprefix("sqlite:///").split("?", 1)[0]
            if database and database != ":memory:":
                files.append(Path(database))
    return files


def _protected(cfg: PipelineConfig) -> set[Path]:
    """Resolved paths forget never writes: every file a configured source names."""
    return {p.resolve() for p in _source_files(cfg)}


def _left_alone(cfg: PipelineConfig) -> list[str]:
    """The configured sources as the config names them, for messages."""
    names = []
    for table in cfg.tables.values():
        source = table.source
        name = source.path if source.path is not None else shown_url(source.url, "<sql source>")
        if name not in names:
            names.append(name)
    return names


# ---- erasing --------------------------------------------------------------------------------------------------


def _published_ids(outputs_dir: Path, hashes: set[str]) -> set[str]:
    """The forgotten customers' ids as the published lists hold them (read through the pointer, never written):
    what :func:`serving.publish.remove_customers` needs when a resumed erasure has only the hashes."""
    version = current_version(outputs_dir)
    found: set[str] = set()
    for spec in LISTS:
        for parquet in sorted(version.glob(f"{spec.name}/as_of=*/{spec.name}.parquet")) if version else []:
            found |= forgotten_ids(pd.read_parquet(parquet, columns=["customer_id"])["customer_id"], hashes)
    return found


def _id_columns(columns: list[str], extra: str | None = None) -> list[str]:
    return [c for c in columns if c == "customer_id" or c.endswith("customer_id") or c == extra]


def _quarantined_table(cfg: PipelineConfig, path: Path) -> str | None:
    """The table whose rejected rows ``path`` holds (``<quarantine>/<table>/<run id>.parquet``), else None."""
    try:
        parts = path.resolve().relative_to(cfg.quarantine_dir.resolve()).parts
    except ValueError:
        return None
    return parts[0] if len(parts) == 2 else None


def _erase_file(cfg: PipelineConfig, path: Path, hashes: set[str]) -> dict[str, int]:
    """Delete the forgotten customers' rows from one Parquet file (schema kept, replaced atomically); returns
    ``{file: rows removed}`` (empty when it had none)."""
    quarantined = _quarantined_table(cfg, path)
    mapped = (cfg.tables[quarantined].columns.get("customer_id", "customer_id")
              if quarantined in cfg.tables else None)
    parquet = pq.ParquetFile(path)  # this file only: no columns taken from the folder names
    columns = _id_columns(parquet.schema_arrow.names, mapped)
    if not columns:
        return {}
    table = parquet.read()
    hit = np.zeros(table.num_rows, dtype=bool)
    for column in columns:
        values = table.column(column).to_pandas()
        hit |= suppressed_mask(values, hashes).to_numpy()
        if quarantined:  # the rejected rows' original values as text: a float id 7 was kept as '7.0'
            integral = id_text(values).str.replace(_INTEGRAL_TEXT, r"\1", regex=True)
            hit |= suppressed_mask(integral, hashes).to_numpy()
    if not hit.any():
        return {}
    kept = table.filter(pa.array(~hit))
    sink = io.BytesIO()
    pq.write_table(kept, sink)
    files = {path: sink.getvalue()}
    metadata = _snapshot_metadata(cfg, path, kept.num_rows)
    if metadata is not None:  # first: a snapshot is marked as changed before its rows are
        files = {**metadata, **files}
    for target, data in files.items():  # one rename each and no backup: no copy of the erased rows is left
        replace_file(target, data)
    return {str(path.relative_to(cfg.data_dir)): int(hit.sum())}


def _snapshot_metadata(cfg: PipelineConfig, path: Path, rows_after: int) -> dict[Path, bytes] | None:
    """For a partition of a feature snapshot (``features/<name>/cutoff=<date>/*.parquet``): its ``metadata.json``
    with the partition's row count as it will be and no ``inputs_key``, so that no run takes the snapshot for the
    one its inputs would build (the RFM scores and every other ranking depend on who else is in it)."""
    meta_path = path.parent.parent / "metadata.json"
    if not path.parent.name.startswith("cutoff=") or not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    cutoff = path.parent.name.removeprefix("cutoff=")
    others = sum(pq.ParquetFile(p).metadata.num_rows for p in path.parent.glob("*.parquet") if p != path)
    if cutoff in meta.get("rows_per_cutoff", {}):
        meta["rows_per_cutoff"][cutoff] = others + rows_after
    meta["inputs_key"] = None
    meta["erased_since_built"] = True  # rows of forgotten customers were deleted (churn forget)
    return {meta_path: (json.dumps(meta, indent=2)).encode()}


def _first_line(exc: BaseException) -> str:
    text = _ARROW_PREFIX.sub("", str(exc).strip())  # the file is named already
    return text.splitlines()[0] if text else type(exc).__name__


def _incomplete_message(report: ForgetReport, data_dir: Path) -> str:
    failed = {t: why for t, why in report.remaining.items() if why != "not reached"}
    shown = failed or report.remaining
    what = ", ".join(f"{t} ({why})" if why != "not reached" else t for t, why in shown.items())
    it = "it" if len(shown) == 1 else "them"
    return (f"could not erase {what}: fix or delete {it}, then run `churn forget --resume` to finish the erasure "
            f"(everything else is erased, the customers are on the suppression list, and {plan_path(data_dir)} "
            "lists what remains)")
