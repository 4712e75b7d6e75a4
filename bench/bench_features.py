"""Speed of the feature engine on validated data, next to pandas and lifetimes.

Usage: python bench/bench_features.py VALIDATED_DIR [--cutoff 2026-08-01] [--stack 12] [--baseline-limit 600]

Prints, each measured in a fresh subprocess (so peak RSS is that step's own):
  * the per-customer-day rows `churn validate` stores beside the transactions (written to a scratch folder);
  * one full snapshot (all feature families, DuckDB) reading them, the same snapshot computing them itself, and a
    12-cutoff labeled training stack;
  * an idiomatic pandas implementation of the core RFM features (tests/features/reference.py) and lifetimes'
    summary_data_from_transaction_data, on the same data or on the largest customer subset that finishes
    within --baseline-limit seconds (tried at 100%, 25%, 5%, 1% of customers), with the ratio to DuckDB's core
    RFM on the same subset.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _peak_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _subset(validated: Path, share: float):
    import pandas as pd
    import pyarrow.dataset as ds

    tx = ds.dataset(validated / "transactions.parquet").to_table(
        columns=["customer_id", "ts", "amount", "order_id"]).to_pandas()
    if share < 1:
        ids = tx["customer_id"].drop_duplicates().sort_values()
        keep = set(ids.iloc[: max(1, int(len(ids) * share))])
        tx = tx[tx["customer_id"].isin(keep)]
    return tx.reset_index(drop=True)


def step(kind: str, validated: Path, cutoff: dt.date, n_stack: int, share: float) -> dict:
    sys.path.insert(0, str(ROOT))
    from common.config import HorizonsConfig
    from features.snapshots import build_snapshots, cutoff_schedule, open_sources, sources_from_frames
    from common.config import SnapshotsConfig

    if kind in ("snapshot", "snapshot_cold"):  # cold: the per-day rows computed from the transactions, not read
        start = time.perf_counter()
        frame = build_snapshots(open_sources(validated, stored_days=kind == "snapshot"), [cutoff], HorizonsConfig())
        return {"seconds": time.perf_counter() - start, "rows": len(frame), "columns": frame.shape[1]}
    if kind == "days":  # what `churn validate` adds: the per-day rows, written beside a link to the transactions
        import tempfile

        from features.snapshots import write_purchase_days

        with tempfile.TemporaryDirectory(dir=validated.parent) as tmp:
            (Path(tmp) / "transactions.parquet").symlink_to((validated / "transactions.parquet").resolve())
            start = time.perf_counter()
            write_purchase_days(tmp)
            return {"seconds": time.perf_counter() - start}
    if kind == "stack":  # as `churn features --stack` does it: DuckDB writes the partitions
        import tempfile

        from common.config import PipelineConfig
        from features.snapshots import write_snapshots_in_engine

        cutoffs = cutoff_schedule(cutoff, SnapshotsConfig(cadence="monthly", lookback_months=n_stack - 1))
        with tempfile.TemporaryDirectory() as tmp:
            cfg = PipelineConfig.model_validate({"data_dir": tmp, "tables": {"transactions": {"source": {
                "path": str(validated / "transactions.parquet")}}}})
            start = time.perf_counter()
            folder = write_snapshots_in_engine(open_sources(validated), cutoffs, HorizonsConfig(), True, cfg,
                                               "stack", validated)
            seconds = time.perf_counter() - start
            rows = sum(json.loads((folder / "metadata.json").read_text())["rows_per_cutoff"].values())
        return {"seconds": seconds, "rows": rows, "cutoffs": len(cutoffs)}
    tx = _subset(validated, share)
    start = time.perf_counter()
    if kind == "duckdb_core":
        import ibis

        src = sources_from_frames({"transactions": tx}, ibis.duckdb.connect())
        frame = build_snapshots(src, [cutoff], HorizonsConfig())
    elif kind == "pandas":
        from tests.features.reference import reference_rfm

        frame = reference_rfm(tx, cutoff)
    elif kind == "lifetimes":
        from lifetimes.utils import summary_data_from_transaction_data

        before = tx[tx["ts"] < pd_timestamp(cutoff)]
        frame = summary_data_from_transaction_data(
            before[before["amount"] >= 0], "customer_id", "ts", monetary_value_col="amount", freq="D",
            observation_period_end=cutoff - dt.timedelta(days=1))
    else:
        raise ValueError(kind)
    return {"seconds": time.perf_counter() - start, "rows": len(frame), "transactions": len(tx)}


def pd_timestamp(day: dt.date):
    import pandas as pd

    return pd.Timestamp(day)


def run(kind: str, args, share: float = 1.0, timeout: float | None = None) -> dict | None:
    cmd = [sys.executable, __file__, str(args.validated), "--cutoff", args.cutoff.isoformat(), "--stack",
           str(args.stack), "--child", kind, "--share", str(share)]
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout).stdout
    except subprocess.TimeoutExpired:
        return None
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("validated", type=Path)
    parser.add_argument("--cutoff", type=dt.date.fromisoformat, default=dt.date(2026, 8, 1))
    parser.add_argument("--stack", type=int, default=12)
    parser.add_argument("--baseline-limit", type=float, default=600)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--share", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = step(args.child, args.validated, args.cutoff, args.stack, args.share)
        print(json.dumps({**result, "peak_rss_mb": _peak_mb()}))
        return

    sys.path.insert(0, str(ROOT))
    from features.snapshots import stored_days_current

    if not stored_days_current(args.validated):
        print(f"note: {args.validated} has no current purchase_days.parquet (run `churn validate`): the snapshot "
              "and stack below compute the per-day rows themselves")
    days = run("days", args)
    print(f"per-customer-day rows, written once by `churn validate`: {days['seconds']:.1f} s, peak RSS "
          f"{days['peak_rss_mb']:,} MB")
    snap = run("snapshot", args)
    print(f"full snapshot at {args.cutoff}: {snap['seconds']:.1f} s, peak RSS {snap['peak_rss_mb']:,} MB, "
          f"{snap['rows']:,} customers x {snap['columns']} columns   (target <= 30 s, <= 6 GB)")
    cold = run("snapshot_cold", args)
    print(f"the same snapshot computing the per-day rows itself: {cold['seconds']:.1f} s, peak RSS "
          f"{cold['peak_rss_mb']:,} MB")
    stack = run("stack", args)
    print(f"{stack['cutoffs']}-cutoff labeled training stack: {stack['seconds']:.1f} s, peak RSS "
          f"{stack['peak_rss_mb']:,} MB, {stack['rows']:,} rows   (target <= 180 s)")
    for baseline in ("pandas", "lifetimes"):
        for share in (1.0, 0.25, 0.05, 0.01):
            result = run(baseline, args, share, timeout=args.baseline_limit)
            if result is None:
                print(f"{baseline} on {share:.0%} of customers: not finished within {args.baseline_limit:.0f} s")
                continue
            duck = run("duckdb_core", args, share)
            print(f"{baseline} core RFM on {share:.0%} of customers ({result['transactions']:,} transactions): "
                  f"{result['seconds']:.1f} s, peak RSS {result['peak_rss_mb']:,} MB; DuckDB on the same rows "
                  f"(all transaction features): {duck['seconds']:.1f} s -> {result['seconds'] / duck['seconds']:.1f}x")
            break


if __name__ == "__main__":
    main()
