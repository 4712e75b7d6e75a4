"""Speed of the feature engine on validated data, next to pandas, lifetimes and polars.

Usage: python bench/bench_features.py VALIDATED_DIR [--cutoff 2026-08-01] [--stack 12] [--baseline-limit 600]
                                     [--references pandas,lifetimes,polars] [--threads N] [--only-references]

VALIDATED_DIR is the ``validated/`` folder `churn validate` writes, for example after
``churn generate --customers 1000000 --data-dir BIG`` and ``churn validate --data-dir BIG``: ``BIG/validated``.

Every measurement runs in a fresh spawned process of its own (``measure.in_fresh_process``), ours and the
references alike, so each has its own peak RSS; each prints wall time, CPU seconds, peak RSS and the 1-minute load
before and after its timed block (``bench/measure.py``):

  * the per-customer-day rows `churn validate` stores beside the transactions (written to a scratch folder);
  * one full snapshot (all feature families, DuckDB) reading them, the same snapshot computing them itself, and a
    12-cutoff labeled training stack;
  * the references on the transactions' customer_id, ts, amount and order_id: an idiomatic pandas implementation of
    the core RFM features (``tests/features/reference.py``), lifetimes' summary_data_from_transaction_data, and
    the same core features in polars (:func:`polars_rfm`). Each runs on all customers or on the largest subset
    that finishes within --baseline-limit seconds (the first 100%, 25%, 5%, 1% of customer ids), and right after
    it ours (DuckDB: every transaction feature, returned as pandas) on the same rows. Each engine gets the same
    Arrow table, read before its timer starts, and copies it in (pandas and lifetimes: ``to_pandas``; DuckDB: a
    table; polars: ``from_arrow``) also before. Then every reference's columns are checked equal to ours (exact
    counts and days, money within 1e-9 relative) and the ratio ours / reference of wall and CPU seconds printed.

DuckDB and polars use every core unless ``--threads`` caps both (pandas and lifetimes use one): compare CPU
seconds, not only wall time, on a shared machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

import measure

ROOT = Path(__file__).resolve().parent.parent
REFERENCES = ("pandas", "lifetimes", "polars")
SHARES = (1.0, 0.25, 0.05, 0.01)
INPUT_COLUMNS = ["customer_id", "ts", "amount", "order_id"]
LIFETIMES_COLUMNS = ["frequency", "recency", "T", "monetary_value"]  # what summary_data_from_transaction_data has
MONEY, RATIOS = ("monetary_value", "net_spend", "net_spend_90d"), ("refund_rate",)


def polars_rfm(transactions, cutoff: dt.date):
    """The core RFM features of ``tests/features/reference.py`` in polars, one row per customer with an order
    (amount >= 0) strictly before ``cutoff``, sorted by ``customer_id``.

    Parameters
    ----------
    transactions : polars.DataFrame
        ``customer_id``, ``ts`` (datetime), ``amount``; refunds are negative amounts.
    cutoff : datetime.date
        Exclusive: rows at midnight of ``cutoff`` or later never count.
    """
    import polars as pl

    day0 = pl.lit(cutoff, dtype=pl.Date)
    tx = (transactions.lazy().filter(pl.col("ts") < dt.datetime.combine(cutoff, dt.time()))
          .with_columns(day=pl.col("ts").dt.date(), is_order=pl.col("amount") >= 0)
          .with_columns(age=(day0 - pl.col("day")).dt.total_days()))
    per_day = tx.filter("is_order").group_by("customer_id", "day").agg(pl.col("amount").sum())
    days = per_day.group_by("customer_id").agg(
        first=pl.col("day").min(), last=pl.col("day").max(), n_days=pl.len(),
        monetary_value=pl.col("amount").filter(pl.col("day") > pl.col("day").min()).mean())
    order = pl.col("is_order")
    sums = tx.group_by("customer_id").agg(
        orders=order.sum(), net_spend=pl.col("amount").sum(),
        **{f"orders_{w}d": (order & (pl.col("age") <= w)).sum() for w in (30, 90, 365)},
        net_spend_90d=pl.col("amount").filter(pl.col("age") <= 90).sum(),
        refunds=(pl.col("amount") < 0).sum())
    counts = ["frequency", "orders", "orders_30d", "orders_90d", "orders_365d"]
    return (days.join(sums, on="customer_id", how="left")
            .select("customer_id",
                    frequency=pl.col("n_days") - 1,
                    recency=(pl.col("last") - pl.col("first")).dt.total_days(),
                    T=(day0 - pl.col("first")).dt.total_days() - 1,  # to the last day before the cutoff
                    monetary_value=pl.col("monetary_value").fill_null(0.0),  # mean of the repeat purchase days
                    days_since_last_purchase=(day0 - pl.col("last")).dt.total_days(),
                    orders="orders", net_spend="net_spend", orders_30d="orders_30d", orders_90d="orders_90d",
                    orders_365d="orders_365d", net_spend_90d="net_spend_90d",
                    refund_rate=pl.col("refunds") / pl.col("orders"))
            .with_columns(pl.col(counts).cast(pl.Int64))
            .sort("customer_id").collect())


def _input(validated: Path, share: float):
    """The transactions' input columns as one Arrow table: every customer, or the first ``share`` of customer ids."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(validated / "transactions.parquet", columns=INPUT_COLUMNS)
    if share < 1:
        ids = pc.unique(table["customer_id"])
        ids = ids.take(pc.sort_indices(ids))
        table = table.filter(pc.is_in(table["customer_id"], value_set=ids[: max(1, int(len(ids) * share))]))
    return table.combine_chunks()


def step(kind: str, validated: Path, cutoff: dt.date, n_stack: int, share: float, threads: int | None,
         out: str | None) -> dict:
    """One measurement, run in its own process: returns its figures (and writes the frame it computed to ``out``
    for the equality check)."""
    sys.path.insert(0, str(ROOT))
    from common.config import HorizonsConfig, SnapshotsConfig
    from features.snapshots import build_snapshots, cutoff_schedule, open_sources, sources_from_frames

    def limit(src):
        if threads:
            src.backend.raw_sql(f"SET threads = {int(threads)}")
        return src

    label = f"{kind} on {share:.0%} of customers" if share < 1 else kind
    if kind in ("snapshot", "snapshot_cold"):  # cold: the per-day rows computed from the transactions, not read
        with measure.measured(label) as figures:
            src = limit(open_sources(validated, stored_days=kind == "snapshot"))
            frame = build_snapshots(src, [cutoff], HorizonsConfig())
        return {"figures": figures.as_dict(), "rows": len(frame), "columns": frame.shape[1]}
    if kind == "days":  # what `churn validate` adds: the per-day rows, written beside a link to the transactions
        from features.snapshots import write_purchase_days

        with tempfile.TemporaryDirectory(dir=validated.parent) as tmp:
            (Path(tmp) / "transactions.parquet").symlink_to((validated / "transactions.parquet").resolve())
            with measure.measured(label) as figures:
                write_purchase_days(tmp)
        return {"figures": figures.as_dict()}
    if kind == "stack":  # as `churn features --stack` does it: DuckDB writes the partitions
        from common.config import PipelineConfig
        from features.snapshots import write_snapshots_in_engine

        cutoffs = cutoff_schedule(cutoff, SnapshotsConfig(cadence="monthly", lookback_months=n_stack - 1))
        with tempfile.TemporaryDirectory() as tmp:
            cfg = PipelineConfig.model_validate({"data_dir": tmp, "tables": {"transactions": {"source": {
                "path": str(validated / "transactions.parquet")}}}})
            with measure.measured(label) as figures:
                folder = write_snapshots_in_engine(limit(open_sources(validated)), cutoffs, HorizonsConfig(), True,
                                                   cfg, "stack", validated)
            rows = sum(json.loads((folder / "metadata.json").read_text())["rows_per_cutoff"].values())
        return {"figures": figures.as_dict(), "rows": rows, "cutoffs": len(cutoffs)}

    # ours and the references: the same Arrow table, copied into the engine before the timer starts
    table = _input(validated, share)
    transactions = table.num_rows
    if kind == "duckdb_core":
        import ibis

        # ibis copies the Arrow table into a DuckDB table (as it would a pandas frame)
        src = limit(sources_from_frames({"transactions": table}, ibis.duckdb.connect()))
        del table
        with measure.measured(label) as figures:
            frame = build_snapshots(src, [cutoff], HorizonsConfig())
    elif kind == "pandas":
        from tests.features.reference import reference_rfm

        tx = table.to_pandas()
        del table
        with measure.measured(label) as figures:
            frame = reference_rfm(tx, cutoff)
        frame = frame.reset_index()
    elif kind == "lifetimes":
        import pandas as pd
        from lifetimes.utils import summary_data_from_transaction_data

        tx = table.to_pandas()
        del table
        with measure.measured(label) as figures:
            before = tx[tx["ts"] < pd.Timestamp(cutoff)]
            frame = summary_data_from_transaction_data(
                before[before["amount"] >= 0], "customer_id", "ts", monetary_value_col="amount", freq="D",
                observation_period_end=cutoff - dt.timedelta(days=1))
        frame = frame.reset_index()
    elif kind == "polars":
        import polars as pl

        tx = pl.from_arrow(table).rechunk()
        del table
        with measure.measured(label) as figures:
            frame = polars_rfm(tx, cutoff)
        frame = frame.to_pandas()
    else:
        raise ValueError(kind)
    if out:
        frame.to_parquet(out)
    return {"figures": figures.as_dict(), "rows": len(frame), "transactions": transactions}


def check_equal(ours_path: str, theirs_path: str, reference: str) -> tuple[int, int]:
    """Assert that the reference's core columns equal ours: the same customers, counts and days exactly, ratios
    within 1e-12 relative, money within 1e-6 per transaction of the customer (ours rounds each amount to
    millionths once, ``features.definitions.MICROS``; the references add the floats as they are). Returns the
    numbers of customers and columns compared."""
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(ROOT))
    from tests.features.reference import CORE

    columns = LIFETIMES_COLUMNS if reference == "lifetimes" else CORE
    ours = pd.read_parquet(ours_path).sort_values("customer_id", kind="stable").reset_index(drop=True)
    theirs = pd.read_parquet(theirs_path).sort_values("customer_id", kind="stable").reset_index(drop=True)
    assert ours["customer_id"].tolist() == theirs["customer_id"].tolist(), (
        f"{reference}: {len(theirs):,} customers, ours {len(ours):,}, or not the same ones")
    transactions = (ours["orders"] * (1 + ours["refund_rate"])).to_numpy(np.float64)  # orders + refunds
    for column in columns:
        a, b = ours[column].to_numpy(np.float64), theirs[column].to_numpy(np.float64)
        if column in MONEY:
            ok = np.abs(a - b) <= 1e-6 * transactions + 1e-9 * np.abs(b)
        else:
            ok = np.isclose(a, b, rtol=1e-12 if column in RATIOS else 0, atol=0, equal_nan=True)
        assert ok.all(), (f"{reference}: {column} differs from ours for {(~ok).sum():,} customers (max abs "
                          f"difference {np.nanmax(np.abs(a - b))})")
    return len(ours), len(columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("validated", type=Path)
    parser.add_argument("--cutoff", type=dt.date.fromisoformat, default=dt.date(2026, 8, 1))
    parser.add_argument("--stack", type=int, default=12)
    parser.add_argument("--baseline-limit", type=float, default=600)
    parser.add_argument("--references", default=",".join(REFERENCES), help="comma-separated subset of "
                        + ", ".join(REFERENCES))
    parser.add_argument("--threads", type=int, default=None, help="cap DuckDB's and polars' threads")
    parser.add_argument("--only-references", action="store_true", help="skip the snapshot and stack figures")
    args = parser.parse_args()
    references = [r.strip() for r in args.references.split(",") if r.strip()]
    unknown = sorted(set(references) - set(REFERENCES))
    if unknown:
        parser.error(f"unknown reference(s) {', '.join(unknown)}; known: {', '.join(REFERENCES)}")
    env = {"POLARS_MAX_THREADS": str(args.threads)} if args.threads else {}

    def run(kind: str, share: float = 1.0, out: str | None = None, timeout: float | None = None) -> dict | None:
        result = measure.in_fresh_process(step, kind, args.validated, args.cutoff, args.stack, share,
                                          args.threads, out, timeout=timeout, env=env)
        if result is not None:
            result["figures"] = measure.Figures.from_dict(result["figures"])
        return result

    command = measure.started()
    with measure.measured("the whole bench (this process and its workers)") as total:
        if not args.only_references:
            sys.path.insert(0, str(ROOT))
            from features.snapshots import stored_days_current

            if not stored_days_current(args.validated):
                print(f"note: {args.validated} has no current purchase_days.parquet (run `churn validate`): the "
                      "snapshot and stack below compute the per-day rows themselves")
            days = run("days")
            print(f"{days['figures'].line()}\n    the per-customer-day rows `churn validate` writes once")
            snap = run("snapshot")
            print(f"{snap['figures'].line()}\n    full snapshot at {args.cutoff}: {snap['rows']:,} customers x "
                  f"{snap['columns']} columns   (target <= 12 s and <= 45 CPU s at 1M customers, idle machine)")
            cold = run("snapshot_cold")
            print(f"{cold['figures'].line()}\n    the same snapshot computing the per-day rows itself")
            stack = run("stack")
            print(f"{stack['figures'].line()}\n    {stack['cutoffs']}-cutoff labeled training stack, "
                  f"{stack['rows']:,} rows   (target <= 120 s and <= 350 CPU s at 1M customers, idle machine)")

        rows = []
        with tempfile.TemporaryDirectory(prefix="bench-features-") as scratch:
            for reference in references:
                for share in SHARES:
                    theirs_path = f"{scratch}/{reference}_{share}.parquet"
                    theirs = run(reference, share, theirs_path, timeout=args.baseline_limit)
                    if theirs is None:
                        print(f"{reference} on {share:.0%} of customers: not finished within "
                              f"{args.baseline_limit:.0f} s")
                        continue
                    ours_path = f"{scratch}/ours_{reference}_{share}.parquet"
                    ours = run("duckdb_core", share, ours_path)
                    customers, columns = check_equal(ours_path, theirs_path, reference)
                    a, b = ours["figures"], theirs["figures"]
                    wall, cpu = a.wall_s / b.wall_s, a.cpu_s / b.cpu_s
                    print(f"{b.line()}\n{a.line()}\n    {reference} on {share:.0%} of customers "
                          f"({theirs['transactions']:,} transactions): its {columns} columns equal ours for "
                          f"{customers:,} customers; ours (DuckDB, every transaction feature) / {reference}: "
                          f"wall {wall:.2f}, CPU {cpu:.2f}", flush=True)
                    rows.append((reference, share, theirs["transactions"], b, a, wall, cpu))
                    break
    if rows:
        print("\n| reference | customers | transactions | reference wall s / CPU s / peak MB | ours wall s / CPU s / "
              "peak MB | ours / reference wall | ours / reference CPU | load before -> after |\n"
              "| --- | --- | --- | --- | --- | --- | --- | --- |")
        for reference, share, transactions, b, a, wall, cpu in rows:
            print(f"| {reference} | {share:.0%} | {transactions:,} | {b.wall_s:.2f} / {b.cpu_s:.2f} / "
                  f"{b.peak_rss_mb:,.0f} | {a.wall_s:.2f} / {a.cpu_s:.2f} / {a.peak_rss_mb:,.0f} | {wall:.2f} | "
                  f"{cpu:.2f} | {b.load_before:.2f} -> {a.load_after:.2f} |")
        print("(below 1: ours is faster; every reference's columns were checked equal to ours)")
    measure.finished(total, command)


if __name__ == "__main__":
    main()
