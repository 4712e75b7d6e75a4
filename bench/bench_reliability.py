"""Run the reliability corpus and print its counts: bad-input classes, kill points, lock cases, erasure variants.

Usage: python bench/bench_reliability.py [--random-kills 20] [--skip-erasure]

* validation: every bad-input class of ``tests/reliability/corpus.py`` is validated in a fresh folder; printed per
  class: the outcome (a clear error or a finished validation), rows read, kept, quarantined and suppressed, and
  whether rows read = kept + quarantined + suppressed;
* publishing: an old version is published, then a new one in a subprocess that SIGKILLs itself at each publish
  point (``CHURN_KILL_AT``), then ``--random-kills`` publishes killed from outside at random moments, then the two
  lock cases (an open read transaction, a held write lock); each survives when a reader sees one whole version,
  the next start leaves no leftovers and the SQL tables hold the same version as the files;
* erasure: the variants of ``tests/reliability/test_erasure.py`` (run by pytest), passed / run.

Each part prints its wall time, CPU seconds (with the processes it started), peak RSS (of the bench process and
its largest child so far) and the 1-minute load before and after (``bench/measure.py``); then the corpus summary:
cases, passed.
"""

from __future__ import annotations

import argparse
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import measure

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def validation() -> list[tuple[str, bool]]:
    from tests.reliability.corpus import CASES, run_case

    print(f"{'bad-input class':<44} {'outcome':<7} {'read':>6} {'kept':>6} {'quar.':>6} {'supp.':>5}  conserved")
    results = []
    for case in CASES:
        with tempfile.TemporaryDirectory() as folder:
            result = run_case(case, Path(folder))
        ok = result.get("passed", True)
        conserved = "" if result["outcome"] == "error" else (
            "yes" if result["rows_read"] == result["kept"] + result["quarantined"] + result.get("suppressed", 0)
            else "NO")
        ok = ok and conserved != "NO"
        print(f"{case.name:<44} {result['outcome']:<7} {result.get('rows_read', 0):>6} {result.get('kept', 0):>6} "
              f"{result.get('quarantined', 0):>6} {result.get('suppressed', 0):>5}  {conserved or '-'}"
              + ("" if ok else "   FAILED"))
        results.append((f"validation: {case.name}", ok))
    return results


def publishing(random_kills: int) -> list[tuple[str, bool]]:
    import datetime as dt

    from common.faults import PUBLISH_POINTS
    from serving.publish import PublishError, publish_lists, recover
    from tests.reliability.test_publish_crash import (AS_OF, _leftovers, _lists, _one_version, _publish_in_child,
                                                      _sql, _visible)

    def fresh(folder: Path, rows: int = 3) -> tuple[Path, str]:
        out, url = folder / "outputs", f"sqlite:///{folder / 'outputs' / 'lists.db'}"
        publish_lists(_lists("old", rows), out, dt.date(2026, 10, 1), {"run_id": "old"}, sql=url)
        publish_lists(_lists("old", rows), out, AS_OF, {"run_id": "old"}, sql=url)
        return out, url

    def survived(out: Path, url: str) -> tuple[bool, str]:
        seen = _one_version(_visible(out))
        recover(out, url)
        whole = len(seen) == 1 and not _leftovers(out) and _one_version(_sql(out)) == seen
        return whole, "".join(seen)

    results = []
    print(f"\n{'publish fault':<44} {'visible after':<14} survived")
    for point in PUBLISH_POINTS:
        with tempfile.TemporaryDirectory() as folder:
            out, url = fresh(Path(folder))
            child = _publish_in_child(out, url, {"CHURN_KILL_AT": point})
            killed = child.wait(timeout=120) == -signal.SIGKILL
            ok, seen = survived(out, url)
        print(f"{'kill -9 at ' + point:<44} {seen:<14} {'yes' if ok and killed else 'NO'}")
        results.append((f"kill at {point}", ok and killed))
    with tempfile.TemporaryDirectory() as folder:
        out, url = fresh(Path(folder), 20_000)
        child = _publish_in_child(out, url, {}, rows=20_000)
        child.stdout.readline()
        started = time.perf_counter()
        child.stdout.readline()
        took = time.perf_counter() - started  # one publish, start to commit
        child.wait(timeout=120)
        rng, outcomes = random.Random(16), []
        for _ in range(random_kills):
            publish_lists(_lists("old", 20_000), out, AS_OF, {"run_id": "old"}, sql=url)
            child = _publish_in_child(out, url, {}, rows=20_000)
            child.stdout.readline()
            time.sleep(rng.uniform(0, 1.5 * took))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=120)
            ok, seen = survived(out, url)
            outcomes.append(seen)
            results.append(("random kill", ok))
        print(f"{f'kill -9 at {random_kills} random moments':<44} "
              f"{outcomes.count('old')} old, {outcomes.count('new')} new  "
              f"{'yes' if all(ok for name, ok in results if name == 'random kill') else 'NO'}")
    for lock in ("read", "write"):
        with tempfile.TemporaryDirectory() as folder:
            out, url = fresh(Path(folder))
            holder = sqlite3.connect(out / "lists.db", isolation_level=None)
            holder.execute("BEGIN" if lock == "read" else "BEGIN IMMEDIATE")
            if lock == "read":
                holder.execute("SELECT count(*) FROM at_risk").fetchone()
            try:
                publish_lists(_lists("new"), out, AS_OF, {"run_id": "new"}, sql=url, lock_timeout=0.5)
                refused = False
            except PublishError:
                refused = True
            holder.rollback()
            holder.close()
            ok, seen = survived(out, url)
        print(f"{f'{lock} lock held on lists.db':<44} {seen:<14} {'yes' if ok and refused and seen == 'old' else 'NO'}")
        results.append((f"{lock} lock", ok and refused and seen == "old"))
    return results


def erasure() -> list[tuple[str, bool]]:
    import xml.etree.ElementTree as ET

    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "erasure.xml"
        subprocess.run([sys.executable, "-m", "pytest", "tests/reliability/test_erasure.py", "-q", "-p",
                        "no:cacheprovider", f"--junitxml={report}"], cwd=ROOT, capture_output=True)
        cases = ET.parse(report).getroot().iter("testcase")
        results = [(c.get("name"), not any(child.tag in ("failure", "error", "skipped") for child in c))
                   for c in cases]
    print(f"\n{'erasure variant':<70} passed")
    for name, ok in results:
        print(f"{name:<70} {'yes' if ok else 'NO'}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random-kills", type=int, default=20)
    parser.add_argument("--skip-erasure", action="store_true")
    args = parser.parse_args()
    command = measure.started()
    parts = [("validation", validation), ("publishing", lambda: publishing(args.random_kills))]
    if not args.skip_erasure:
        parts.append(("erasure", erasure))
    results = []
    with measure.measured("the whole corpus") as total:
        for name, part in parts:
            with measure.measured(name) as figures:
                results += part()
            print(f"\n{figures.line()}", flush=True)
    kinds = {"validation": 0, "publishing": 0, "erasure": 0}
    for name, _ in results:
        kinds["validation" if name.startswith("validation:") else
              "publishing" if name.startswith(("kill", "random", "read lock", "write lock")) else "erasure"] += 1
    passed = sum(ok for _, ok in results)
    print(f"\ncorpus: {len(results)} cases ({kinds['validation']} bad-input classes, {kinds['publishing']} publish "
          f"faults, {kinds['erasure']} erasure variants), {passed} passed, {len(results) - passed} failed "
          f"({total.wall_s:.0f} s)")
    measure.finished(total, command)


if __name__ == "__main__":
    main()
