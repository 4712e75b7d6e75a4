"""How long the quick commands take to answer (issue 21: `churn models` under 3 s), beside the floor measured in
the same run: a bare interpreter, and importing MLflow and opening its registry (what `churn models` cannot
avoid). Each command runs ``--repeat`` times in a fresh process; printed per command: the median wall and CPU
seconds, the largest peak RSS and the 1-minute load before its first run and after its last (``bench/measure.py``).

Usage: python bench/bench_commands.py [--data-dir data] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import measure

ROOT = Path(__file__).resolve().parents[1]


def timed(command: list[str], repeat: int) -> measure.Figures:
    """``repeat`` runs of ``command``: median wall and CPU seconds, the largest peak RSS, the load around them."""
    runs = [measure.run_command(command, capture=False, cwd=ROOT) for _ in range(repeat)]
    for done, _ in runs:
        done.check_returncode()
    figures = [f for _, f in runs]
    return measure.Figures(figures[0].label, statistics.median(f.wall_s for f in figures),
                           statistics.median(f.cpu_s for f in figures), max(f.peak_rss_mb for f in figures),
                           figures[0].load_before, figures[-1].load_after)


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
    command = measure.started()
    print("| command | median wall s | median CPU s | peak RSS MB | load before -> after |\n"
          "| --- | --- | --- | --- | --- |")
    results = {}
    with measure.measured(f"every command, {args.repeat} times") as total:
        for name, argv in rows:
            figures = timed(argv, args.repeat)
            results[name] = figures.wall_s
            print(f"| {name} | {figures.wall_s:.2f} | {figures.cpu_s:.2f} | {figures.peak_rss_mb:,.0f} | "
                  f"{figures.load_before:.2f} -> {figures.load_after:.2f} |", flush=True)
    floor = results[rows[1][0]]
    print(f"\nchurn models / its MLflow floor: {results['churn models'] / floor:.2f}x")
    measure.finished(total, command)


if __name__ == "__main__":
    main()
