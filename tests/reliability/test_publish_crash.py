"""Publishing survives ``kill -9`` anywhere and other processes holding the list database's locks.

Each kill test publishes an "old" version, then publishes a "new" one in a subprocess that SIGKILLs itself at one
point of the publish (``CHURN_KILL_AT``, :mod:`common.faults`): no ``finally`` block, no rollback runs. What a
reader sees through the pointer must be all old or all new, never a mix; the next start repairs what was left
(with a log line) and publishes normally. A second test kills the subprocess from outside at random moments.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from common.faults import PUBLISH_POINTS
from serving.publish import PublishError, current_version, publish_lists, recover

ROOT = Path(__file__).resolve().parents[2]
AS_OF = dt.date(2026, 11, 1)
EARLIER = dt.date(2026, 10, 1)


def _lists(tag: str, rows: int = 3) -> dict[str, pd.DataFrame]:
    return {
        "at_risk": pd.DataFrame({"rank": range(1, rows + 1), "customer_id": [f"A{i}" for i in range(rows)],
                                 "churn_probability": [0.5] * rows, "value_at_risk": [10.0] * rows,
                                 "run_id": [tag] * rows}),
        "winback": pd.DataFrame({"rank": range(1, rows + 1), "customer_id": [f"W{i}" for i in range(rows)],
                                 "reactivation_probability": [0.25] * rows, "run_id": [tag] * rows}),
    }


_CHILD = textwrap.dedent("""
    import datetime as dt, sys
    sys.path.insert(0, {root!r})
    from tests.reliability.test_publish_crash import _lists
    from serving.publish import publish_lists
    import os, tempfile
    lists = _lists("new", {rows})
    kill_at = os.environ.pop("CHURN_KILL_AT", None)
    with tempfile.TemporaryDirectory() as warm:  # imports done before the clock starts, and not killed
        publish_lists(lists, warm, dt.date(2026, 11, 1), {{"run_id": "warm"}}, sql=f"sqlite:///{{warm}}/lists.db")
    if kill_at:
        os.environ["CHURN_KILL_AT"] = kill_at
    print("ready", flush=True)
    publish_lists(lists, {out!r}, dt.date(2026, 11, 1), {{"run_id": "new"}}, sql={url!r})
    print("published", flush=True)
""")


def _publish_in_child(out: Path, url: str, env: dict, rows: int = 3) -> subprocess.Popen:
    code = _CHILD.format(root=str(ROOT), out=str(out), url=url, rows=rows)
    return subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **env}, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _visible(out: Path) -> dict[str, set[str]]:
    """The run ids a reader sees, per file, through the pointer (and through the fixed links)."""
    seen = {}
    for name in ("at_risk", "winback"):
        for via in (out / "lists" / name, out / name):
            folder = via / f"as_of={AS_OF}"
            seen[f"{via.relative_to(out)}/parquet"] = set(pd.read_parquet(folder / f"{name}.parquet")["run_id"])
            seen[f"{via.relative_to(out)}/csv"] = set(pd.read_csv(folder / f"{name}.csv")["run_id"])
            seen[f"{via.relative_to(out)}/run.json"] = {json.loads((folder / "run.json").read_text())["run_id"]}
            seen[f"{via.relative_to(out)}/latest"] = {json.loads((via / "latest.json").read_text())["run_id"]}
    return seen


def _sql(out: Path) -> dict[str, set[str]]:
    with sqlite3.connect(out / "lists.db") as db:
        return {t: {r[0] for r in db.execute(f"SELECT run_id FROM {t} WHERE as_of = ?", (AS_OF.isoformat(),))}
                for t in ("at_risk", "winback")} | {
            "latest": {r[0] for r in db.execute("SELECT run_id FROM list_latest")},
            "views": {r[0] for t in ("at_risk_latest", "winback_latest")
                      for r in db.execute(f"SELECT run_id FROM {t}")}}


def _one_version(seen: dict[str, set[str]]) -> set[str]:
    return set().union(*seen.values())


def _leftovers(out: Path) -> list[str]:
    current = current_version(out)
    store = [p.name for p in (out / ".lists").iterdir() if p != current]
    temp = [p.name for p in out.iterdir() if p.name.startswith(".") and p.name not in (".lists", ".publish.lock")]
    return store + temp


@pytest.fixture
def published(tmp_path) -> tuple[Path, str]:
    out, url = tmp_path / "outputs", f"sqlite:///{tmp_path / 'outputs' / 'lists.db'}"
    publish_lists(_lists("old"), out, EARLIER, {"run_id": "old"}, sql=url)
    publish_lists(_lists("old"), out, AS_OF, {"run_id": "old"}, sql=url)
    return out, url


@pytest.mark.parametrize("point", PUBLISH_POINTS)
def test_kill_9_at_every_point_of_a_publish_leaves_one_whole_version(published, point):
    out, url = published
    child = _publish_in_child(out, url, {"CHURN_KILL_AT": point})
    assert child.wait(timeout=120) == -signal.SIGKILL, child.stderr.read().decode()[-2000:]
    before_commit = PUBLISH_POINTS.index(point) < PUBLISH_POINTS.index("publish.after_pointer")
    seen = _visible(out)
    assert _one_version(seen) == ({"old"} if before_commit else {"new"}), seen  # files: never a mix
    repairs = recover(out, url)  # the next start
    assert _leftovers(out) == [] and (repairs or point == "publish.after_first_list"), repairs
    assert _one_version(_visible(out)) == _one_version(_sql(out)) == _one_version(seen)  # SQL follows the files
    assert sorted((current_version(out) / "at_risk").iterdir()) == [
        current_version(out) / "at_risk" / n for n in ("as_of=2026-10-01", "as_of=2026-11-01", "latest.json")]
    publish_lists(_lists("newer"), out, AS_OF, {"run_id": "newer"}, sql=url)
    assert _one_version(_visible(out)) == _one_version(_sql(out)) == {"newer"} and _leftovers(out) == []
    earlier = pd.read_parquet(out / "at_risk" / f"as_of={EARLIER}" / "at_risk.parquet")
    assert set(earlier["run_id"]) == {"old"}  # the other as-of date is carried over untouched


def test_kill_9_at_random_moments_never_shows_a_mix(published):
    """Killed from outside at 5 random moments (fixed seed) during publishes of larger lists."""
    out, url = published
    child = _publish_in_child(out, url, {}, rows=20_000)  # one publish left alone: how long it takes here
    assert child.stdout.readline() == b"ready\n"
    started = time.perf_counter()
    assert child.stdout.readline() == b"published\n"
    took = time.perf_counter() - started  # the kills fall within 1.5 times it: before and after the commit
    assert child.wait(timeout=120) == 0
    publish_lists(_lists("old", 20_000), out, AS_OF, {"run_id": "old"}, sql=url)
    rng = random.Random(16)
    outcomes = []
    for _ in range(5):
        child = _publish_in_child(out, url, {}, rows=20_000)
        assert child.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0, 1.5 * took))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=120)
        seen = _visible(out)
        assert len(_one_version(seen)) == 1, seen
        recover(out, url)
        assert _leftovers(out) == [] and _one_version(_sql(out)) == _one_version(seen)
        outcomes.append(_one_version(seen).pop())
        if outcomes[-1] == "new":  # publish the old version again, so that the next kill can show a mix
            publish_lists(_lists("old", 20_000), out, AS_OF, {"run_id": "old"}, sql=url)
    # where each kill fell depends on the machine's speed: the points above cover both sides deterministically
    assert len(outcomes) == 5 and set(outcomes) <= {"old", "new"}, outcomes


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".publish.lock"}


@pytest.mark.parametrize("lock", ["read", "write"])
def test_a_locked_list_database_fails_the_publish_before_anything_is_visible(published, lock):
    """Another process holds an open read transaction (or a write lock) on lists.db: the publish waits its
    timeout, then fails with one clear message; files and tables are the old ones, and the message says so."""
    out, url = published
    files, tables = _tree(out), _sql(out)
    holder = sqlite3.connect(out / "lists.db", isolation_level=None)
    if lock == "read":
        holder.execute("BEGIN")
        holder.execute("SELECT count(*) FROM at_risk").fetchone()
    else:
        holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(PublishError, match="is busy.*nothing was published and the previously published lists "
                                               "are unchanged.*sql_lock_timeout_seconds"):
            publish_lists(_lists("new"), out, AS_OF, {"run_id": "new"}, sql=url, lock_timeout=0.5)
        assert _tree(out) == files and _one_version(_visible(out)) == {"old"}
    finally:
        holder.rollback()
        holder.close()
    assert _sql(out) == tables
    publish_lists(_lists("new"), out, AS_OF, {"run_id": "new"}, sql=url)
    assert _one_version(_visible(out)) == _one_version(_sql(out)) == {"new"}


def test_a_reader_of_the_files_keeps_its_version_while_a_publish_flips(published):
    out, url = published
    handle = (out / "at_risk" / f"as_of={AS_OF}" / "at_risk.csv").open()
    publish_lists(_lists("new"), out, AS_OF, {"run_id": "new"}, sql=url)
    assert "old" in handle.read() and _one_version(_visible(out)) == {"new"}
    handle.close()


def test_lists_of_the_layout_before_the_store_are_adopted(tmp_path):
    """Folders ``<list>/as_of=<DATE>/`` written by the previous publisher (with a leftover of its swaps) move into
    the store on the next start; the dates are kept and the SQL tables rebuilt from them."""
    out, url = tmp_path / "outputs", f"sqlite:///{tmp_path / 'outputs' / 'lists.db'}"
    for name, frame in _lists("old").items():
        folder = out / name / f"as_of={EARLIER}"
        folder.mkdir(parents=True)
        frame.to_parquet(folder / f"{name}.parquet", index=False)
        frame.to_csv(folder / f"{name}.csv", index=False)
        (folder / "run.json").write_text(json.dumps({"run_id": "old", "rows": len(frame)}))
        (out / name / "latest.json").write_text(json.dumps({"list": name, "as_of": EARLIER.isoformat(),
                                                            "folder": folder.name, "rows": 3, "run_id": "old"}))
        (out / name / f".as_of={EARLIER}.old-1234abcd").mkdir()  # what a kill -9 of the old swap left
    repairs = recover(out, url)
    assert any("old layout" in line for line in repairs) and (out / "at_risk").is_symlink()
    assert not list(out.rglob("*.old-*")) and _leftovers(out) == []
    with sqlite3.connect(out / "lists.db") as db:
        assert db.execute("SELECT count(*) FROM at_risk_latest").fetchone() == (3,)
    publish_lists(_lists("new"), out, AS_OF, {"run_id": "new"}, sql=url)
    assert set(pd.read_parquet(out / "at_risk" / f"as_of={EARLIER}" / "at_risk.parquet")["run_id"]) == {"old"}
    assert _one_version(_visible(out)) == {"new"}


def test_a_list_that_gained_a_column_still_publishes_to_its_sql_table(published):
    out, url = published
    lists = _lists("new")
    lists["at_risk"]["currency"] = "EUR"
    publish_lists(lists, out, AS_OF, {"run_id": "new"}, sql=url)
    with sqlite3.connect(out / "lists.db") as db:
        rows = db.execute("SELECT as_of, currency FROM at_risk ORDER BY as_of").fetchall()
        latest = db.execute("SELECT DISTINCT currency FROM at_risk_latest").fetchall()
    assert rows == [(EARLIER.isoformat(), None)] * 3 + [(AS_OF.isoformat(), "EUR")] * 3 and latest == [("EUR",)]


def test_a_full_disk_while_staging_changes_nothing(published, monkeypatch):
    import errno

    import serving.publish as publish

    out, url = published
    files, tables = _tree(out), _sql(out)
    real, calls = publish._write, []

    def write(path, data):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(publish, "_write", write)
    with pytest.raises(OSError, match="No space left"):
        publish_lists(_lists("new"), out, AS_OF, {"run_id": "new"}, sql=url)
    assert _tree(out) == files and _sql(out) == tables and _leftovers(out) == []


def test_two_publishers_at_once_take_turns(published):
    """A scheduled and a manual run publishing together: both finish, one after the other, and what is left is one
    whole version (the one that committed last), with the SQL tables holding the same."""
    out, url = published
    children = [_publish_in_child(out, url, {}, rows=5_000) for _ in range(2)]
    assert [c.wait(timeout=180) for c in children] == [0, 0], [c.stderr.read().decode()[-800:] for c in children]
    assert _one_version(_visible(out)) == _one_version(_sql(out)) == {"new"} and _leftovers(out) == []
    with sqlite3.connect(out / "lists.db") as db:
        assert db.execute("SELECT count(*) FROM at_risk WHERE as_of = ?", (AS_OF.isoformat(),)).fetchone() == (5_000,)

