"""Publishing the lists: atomic, versioned by as-of date, never half-written.

Layout under the outputs directory, per list (``at_risk``, ``winback``)::

    <list>/as_of=<DATE>/<list>.parquet   full precision, typed columns
    <list>/as_of=<DATE>/<list>.csv       for CRM imports: UTF-8, header, comma, ISO dates, money to 2 decimals
    <list>/as_of=<DATE>/run.json         run metadata: when, which flow run, row counts, inputs
    <list>/latest.json                   pointer to the newest published as-of folder

Every folder and pointer of one run is written aside and swapped in together (:func:`features.files.replace_all`):
a failure at any point, including between two lists, leaves every previously published list as it was. The list
files hold no timestamps, so the same inputs publish byte-identical files; what differs between runs is in
``run.json``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from features.files import replace_all
from serving.faults import checkpoint

MONEY_COLUMNS = ("predicted_cltv", "value_at_risk", "value_if_reactivated", "expected_winback_value")
PROBABILITY_COLUMNS = ("churn_probability", "reactivation_probability")


@contextlib.contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def list_folder(outputs_dir: Path, name: str, as_of: dt.date) -> Path:
    return Path(outputs_dir) / name / f"as_of={as_of.isoformat()}"


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """The CRM-import CSV: money rounded to cents, probabilities to 6 decimals, dates as YYYY-MM-DD."""
    rounded = frame.round({**{c: 2 for c in MONEY_COLUMNS if c in frame}, **{c: 6 for c in PROBABILITY_COLUMNS
                                                                           if c in frame}})
    return rounded.to_csv(index=False, lineterminator="\n").encode("utf-8")


def publish_lists(lists: dict[str, pd.DataFrame], outputs_dir: Path, as_of: dt.date, run_meta: dict) -> dict[str, Path]:
    """Publish every list of one run at once; returns each list's folder.

    ``run_meta`` (JSON-serialisable) is written to each folder's ``run.json`` together with the list's row count.
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

    with _exclusive(Path(outputs_dir) / ".publish.lock"):  # one publisher at a time (a scheduled and a manual run)
        replace_all(folders, pointers, hook=hook)
    return {name: list_folder(outputs_dir, name, as_of) for name in lists}
