"""`churn run` end to end on N generated customers (generation not timed), on each engine asked for: the whole
command's wall time, CPU seconds and peak RSS (the command and every process under it, Spark's JVM included), and
each Prefect task's own wall time and the peak RSS while it ran (the process tree sampled every 0.2 s; a task
run's interval runs from the log line before its first one to its ``Finished in state`` line: the runs are
sequential). With two engines, the published lists
are compared: the same customers in the same order, and the largest difference between their probabilities.

Issue 21: ``--customers 1000000 --engines duckdb`` is the whole run at 1M (target <= 20 min, <= 8 GB);
``--customers 100000`` gives the Spark and DuckDB figures side by side.

Usage: python bench/bench_run.py [--customers 100000] [--engines duckdb spark] [--work /tmp/bench_run]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil

import measure

ROOT = Path(__file__).resolve().parents[1]
CHURN = str(Path(sys.executable).parent / "churn")
STAMP = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) \| ")
TASK_LINE = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) \| \w+ +\| Task run '(.+?-[0-9a-f]{3})' - (.*)$")


class TreeSampler(threading.Thread):
    """Samples the summed RSS of a process and all its descendants (wall clock, MB) until stopped."""

    def __init__(self, pid: int, every: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.every, self.samples, self.done = pid, every, [], threading.Event()

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self.done.is_set():
            total = 0
            try:
                for process in [root, *root.children(recursive=True)]:
                    try:
                        total += process.memory_info().rss
                    except psutil.NoSuchProcess:
                        pass
            except psutil.NoSuchProcess:
                break
            self.samples.append((dt.datetime.now(), total / 2**20))
            self.done.wait(self.every)

    def peak(self, start: dt.datetime | None = None, end: dt.datetime | None = None) -> float:
        inside = [mb for t, mb in self.samples if (start is None or t >= start) and (end is None or t <= end)]
        return max(inside, default=float("nan"))


def run_measured(args: list[str], log: Path) -> tuple[int, measure.Figures, TreeSampler, dt.date]:
    """Run ``args`` with its output in ``log``: the return code, its figures (CPU from ``wait4``: the command
    and the children it waited for; peak RSS: the sampled tree's) and the sampler."""
    figures = measure.Figures(" ".join(Path(a).name if i == 0 else a for i, a in enumerate(args)),
                              load_before=measure.load())
    day = dt.date.today()
    start = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        sampler = TreeSampler(process.pid)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    sampler.done.set()
    sampler.join()
    figures.wall_s = time.perf_counter() - start
    figures.cpu_s = usage.ru_utime + usage.ru_stime
    figures.peak_rss_mb = sampler.peak()
    figures.load_after = measure.load()
    return process.returncode, figures, sampler, day


def task_steps(log: Path, day: dt.date, sampler: TreeSampler) -> list[tuple[str, str, float, float]]:
    """(task run, its first message, wall s, peak RSS MB while it ran) per Prefect task run of the log, in order
    of start."""
    spans: dict[str, list] = {}
    previous = None  # the last time stamp of any log line: where a task run starts that logs nothing at first
    for line in log.read_text(errors="replace").splitlines():
        stamped = STAMP.match(line)
        if not stamped:
            continue
        stamp = dt.datetime.combine(day, dt.time.fromisoformat(stamped.group(1)))
        if previous is not None and stamp < previous - dt.timedelta(hours=12):  # the log went past midnight
            day += dt.timedelta(days=1)
            stamp += dt.timedelta(days=1)
        found = TASK_LINE.match(line)
        if found:
            span = spans.setdefault(found.group(2), [previous or stamp, stamp, found.group(3)])
            span[1] = stamp
        previous = stamp
    return [(name, first, (end - start).total_seconds(), sampler.peak(start, end))
            for name, (start, end, first) in sorted(spans.items(), key=lambda item: item[1][0])]


def published(data_dir: Path) -> dict:
    """Each list's spec and its latest published rows."""
    from serving.lists import LISTS

    out = {}
    for spec in LISTS:
        files = sorted((data_dir / "outputs" / spec.name).glob(f"as_of=*/{spec.name}.parquet"))
        out[spec.name] = (spec, pd.read_parquet(files[-1]) if files else pd.DataFrame(columns=["customer_id"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--engines", nargs="+", default=["duckdb", "spark"], choices=["duckdb", "spark"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_run"))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    command = measure.started()
    raw = args.work / f"raw_{args.customers}_{args.seed}"
    if not (raw / "transactions.parquet").exists():
        print(f"generating {args.customers:,} customers into {raw} (not timed) ...", flush=True)
        subprocess.run([CHURN, "generate", "--customers", str(args.customers), "--seed", str(args.seed),
                        "--out", str(raw)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    lists, totals = {}, []
    with measure.measured(f"churn run on {', '.join(args.engines)}") as total:
        for engine in args.engines:
            data_dir = args.work / f"run_{engine}"
            shutil.rmtree(data_dir, ignore_errors=True)
            data_dir.mkdir(parents=True)
            (data_dir / "raw").symlink_to(raw.resolve())
            log = args.work / f"run_{engine}.log"
            code, figures, sampler, day = run_measured(
                [CHURN, "run", "--engine", engine, "--data-dir", str(data_dir)], log)
            if code != 0:
                print(log.read_text()[-3000:])
                raise SystemExit(f"churn run --engine {engine} failed ({code}); the log is {log}")
            totals.append((engine, figures))
            print(f"\n### churn run --engine {engine} ({args.customers:,} customers; log {log})\n\n"
                  f"{figures.line()}\n\n| task run | first message | wall s | peak RSS MB while it ran |\n"
                  "| --- | --- | --- | --- |")
            for name, first, wall, peak in task_steps(log, day, sampler):
                print(f"| {name} | {first[:60]} | {wall:.1f} | {peak:,.0f} |")
            lists[engine] = published(data_dir)
    if len(totals) == 2:
        (a, fa), (b, fb) = totals
        print(f"\n{b} / {a}: wall {fb.wall_s / fa.wall_s:.2f}x, CPU {fb.cpu_s / fa.cpu_s:.2f}x, "
              f"peak RSS {fb.peak_rss_mb / fa.peak_rss_mb:.2f}x")
        for name, (spec, frame) in lists[a].items():
            other = lists[b][name][1]
            same = frame["customer_id"].tolist() == other["customer_id"].tolist()
            column = spec.probability
            gap = (frame[column] - other[column]).abs().max() if same and len(frame) else float("nan")
            print(f"{name}: {len(frame):,} vs {len(other):,} customers, same customers in the same order: {same}; "
                  f"largest |difference| of {column}: {gap:.3g}")
    measure.finished(total, command)


if __name__ == "__main__":
    main()
