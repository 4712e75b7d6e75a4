"""How long the quick commands take to answer (issue 21: `churn models` under 3 s), beside the floor measured in
the same run: a bare interpreter, and importing MLflow and opening its registry (what `churn models` cannot
avoid). Each command runs ``--repeat`` times in a fresh process; the median wall and CPU seconds are printed.

Usage: python bench/bench_commands.py [--data-dir data] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(command: list[str], repeat: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    python, churn = sys.executable, str(Path(sys.executable).parent / "churn")
    registry = (f"from models.tracking import _mlflow; from common.config import load_config; "
                f"_mlflow(load_config(None, {{'data_dir': {args.data_dir!r}}})); import mlflow; "
                "mlflow.MlflowClient().search_registered_models()")
    rows = [
        ("python -c pass (the interpreter)", [python, "-c", "pass"]),
        ("import mlflow + open its registry (the floor of `churn models`)", [python, "-c", registry]),
        ("churn --help", [churn, "--help"]),
        ("churn users list", [churn, "users", "list", "--data-dir", args.data_dir]),
        ("churn models", [churn, "models", "--data-dir", args.data_dir]),
    ]
    print(f"command: {shlex.join([Path(python).name, *sys.argv])}; load average {os.getloadavg()[0]:.2f}")
    print("| command | median wall s | median CPU s |\n| --- | --- | --- |")
    results = {}
    for name, command in rows:
        wall, cpu = timed(command, args.repeat)
        results[name] = wall
        print(f"| {name} | {wall:.2f} | {cpu:.2f} |", flush=True)
    floor = results[rows[1][0]]
    print(f"\nchurn models / its MLflow floor: {results['churn models'] / floor:.2f}x; "
          f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
