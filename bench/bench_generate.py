"""Time and peak memory of `churn generate` for given sizes.

Usage: python bench/bench_generate.py 20000 1000000 [--seed 42] [--out DIR]

Each size runs in a fresh subprocess so that the peak resident memory (ru_maxrss) is that run's own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _child(n: int, seed: int, out: str) -> None:
    from features.synthetic.simulate import generate

    start = time.perf_counter()
    result = generate(out, n_customers=n, seed=seed)
    wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size_mb = sum(f.stat().st_size for f in Path(out).rglob("*.parquet")) / 2**20
    print(json.dumps({"customers": n, "seconds": round(wall, 1), "peak_rss_mb": round(peak_mb),
                      "transactions": result.row_counts["transactions"], "rows": result.row_counts,
                      "parquet_mb": round(size_mb)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", nargs="*", type=int, default=[20_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", help="keep the data here (default: a temporary folder, removed)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.sizes[0], args.seed, args.out)
        return
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            out = args.out or tmp
            line = subprocess.run([sys.executable, __file__, str(n), "--seed", str(args.seed), "--out", out,
                                   "--child"], check=True, capture_output=True, text=True).stdout.strip()
            r = json.loads(line.splitlines()[-1])
            print(f"{r['customers']:>9,} customers: {r['seconds']:>7.1f} s, peak RSS {r['peak_rss_mb']:>6,} MB, "
                  f"{r['transactions']:,} transactions, {r['parquet_mb']:,} MB of Parquet")
            print(f"          rows: {r['rows']}")


if __name__ == "__main__":
    main()
