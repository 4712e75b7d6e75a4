"""Time and peak memory of `churn generate` for given sizes.

Usage: python bench/bench_generate.py 20000 1000000 [--seed 42] [--out DIR]

Each size runs in a fresh process (``measure.in_fresh_process``) so that the peak resident memory (ru_maxrss) is
that run's own; each prints wall time, CPU seconds, peak RSS and the 1-minute load before and after
(``bench/measure.py``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import measure

ROOT = Path(__file__).resolve().parents[1]


def _child(n: int, seed: int, out: str) -> dict:
    sys.path.insert(0, str(ROOT))
    from features.synthetic.simulate import generate

    with measure.measured(f"{n:,} customers") as figures:
        result = generate(out, n_customers=n, seed=seed)
    size_mb = sum(f.stat().st_size for f in Path(out).rglob("*.parquet")) / 2**20
    return {"figures": figures.as_dict(), "transactions": result.row_counts["transactions"],
            "rows": result.row_counts, "parquet_mb": round(size_mb)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", nargs="*", type=int, default=[20_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", help="keep the data here (default: a temporary folder, removed)")
    args = parser.parse_args()
    command = measure.started()
    with measure.measured("every size (this process and its workers)") as total:
        for n in args.sizes:
            with tempfile.TemporaryDirectory() as tmp:
                r = measure.in_fresh_process(_child, n, args.seed, args.out or tmp)
            print(f"{measure.Figures.from_dict(r['figures']).line()}\n    {r['transactions']:,} transactions, "
                  f"{r['parquet_mb']:,} MB of Parquet; rows: {r['rows']}", flush=True)
    measure.finished(total, command)


if __name__ == "__main__":
    main()
