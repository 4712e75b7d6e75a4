"""Who is in each population at a cutoff, and how many positive outcomes follow, counted straight from the
validated purchase days (no snapshot is built): what :mod:`models.preflight` needs to say which models this data
can train before anything runs.

The definitions are the labels' (:mod:`features.definitions`): a customer exists at cutoff ``t`` with an order
before ``t``; is *active* when the last order is at most ``activity_days`` before ``t``
(``days_since_last_purchase <= activity_days``), else *lapsed*; *churned* when active and without an order in
``[t, t + churn_days)``; *reactivated* when lapsed and with an order in that window; a *buyer* (the CLTV target is
positive) with an order in ``[t, t + cltv_days)``. A label is counted only when its window lies inside the data
(``t + H <= last_day + 1``). Subscribers have a subscription started before ``t`` and not cancelled by then; a
cancellation in ``[t, t + churn_days)`` counts unless the customer starts another subscription that day (a plan
change). Refunds are not orders, as in the features; the CLTV count ignores refunds (a buyer whose refunds exceed
the window's orders still counts), so it is an upper bound.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

EPOCH = dt.date(1970, 1, 1)


def _day(value: dt.date) -> int:
    return (value - EPOCH).days


@dataclass
class PurchaseDays:
    """Every customer's order days, sorted: ``keys = customer code x 2^32 + day`` (days since 1970-01-01)."""

    keys: np.ndarray
    n_customers: int
    first_day: dt.date
    last_day: dt.date
    subscriptions: pd.DataFrame | None = None  # customer code, started, cancelled (days; cancelled -1 = open)
    _at: dict = field(default_factory=dict)

    @classmethod
    def read(cls, validated_dir: str | Path, batch_rows: int = 4_000_000) -> "PurchaseDays":
        """From ``purchase_days.parquet`` when `churn validate` stored it, else from the transactions; read
        ``batch_rows`` rows at a time, so that what is held is the keys themselves (8 bytes per customer-day) and
        one batch, not the table (at 5M customers the whole table and its temporaries took several times the
        keys' 1.8 GB)."""
        folder = Path(validated_dir)
        stored = folder / "purchase_days.parquet"
        # pass 1: the customers with an order, codes 0 .. n - 1 (a row group's dictionary may hold others), made
        # distinct every few batches so that what is held stays near the number of customers
        dictionary, pending = pa.array([], pa.string()), []
        for ids, _ in _order_days(folder, stored, batch_rows, days=False):
            pending.append(pc.unique(ids.dictionary.take(pc.unique(ids.indices))).cast("string"))
            if sum(len(p) for p in pending) > max(batch_rows, 2 * len(dictionary)):
                dictionary, pending = pc.unique(pa.concat_arrays([dictionary, *pending])), []
        dictionary = pc.unique(pa.concat_arrays([dictionary, *pending]))
        # pass 2: key = code x 2^32 + day, written straight into one array; the ids' hash table is built once
        index = pd.Index(dictionary.to_numpy(zero_copy_only=False))
        total = pq.ParquetFile(stored if stored.exists() else folder / "transactions.parquet").metadata.num_rows
        keys, filled = np.empty(total, np.int64), 0
        for ids, days in _order_days(folder, stored, batch_rows, days=True):
            lookup = index.get_indexer(ids.dictionary.cast("string").to_numpy(zero_copy_only=False))
            codes = lookup[ids.indices.to_numpy(zero_copy_only=False)].astype(np.int64)
            part = keys[filled:filled + len(codes)]
            np.left_shift(codes, 32, out=part)
            part |= days
            filled += len(codes)
        keys = keys[:filled]
        keys.sort()  # in place, then the distinct (customer, day) keys (a stored table has each once already)
        keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys
        stats = _time_span(folder / "transactions.parquet")
        subs = None
        path = folder / "subscriptions.parquet"
        if path.exists():
            raw = pq.read_table(path, columns=["customer_id", "started_at", "cancelled_at"]).to_pandas()
            subs = pd.DataFrame({
                "code": index.get_indexer(raw["customer_id"].astype(str)),
                "started": (pd.to_datetime(raw["started_at"]) - pd.Timestamp(EPOCH)).dt.days,
                "cancelled": ((pd.to_datetime(raw["cancelled_at"]) - pd.Timestamp(EPOCH)).dt.days
                              .fillna(-1).astype(np.int64))})
        return cls(keys, len(dictionary), pd.Timestamp(stats["min"]).date(),
                   pd.Timestamp(stats["max"]).date(), subs)

    def around(self, cutoff: dt.date) -> tuple[np.ndarray, np.ndarray]:
        """Per customer code: the last order day before ``cutoff`` and the first on or after it (-1: none)."""
        if cutoff not in self._at:
            codes = np.arange(self.n_customers, dtype=np.int64) << 32
            at = np.searchsorted(self.keys, codes | _day(cutoff))
            # day numbers fit int32: half the memory of what is kept per cutoff
            before, after = np.full(self.n_customers, -1, np.int32), np.full(self.n_customers, -1, np.int32)
            prev = at - 1
            same = (prev >= 0) & ((self.keys[np.maximum(prev, 0)] >> 32) == codes >> 32)
            before[same] = self.keys[prev[same]] & 0xFFFFFFFF
            nxt = at < len(self.keys)
            same = nxt.copy()
            same[nxt] = (self.keys[at[nxt]] >> 32) == (codes[nxt] >> 32)
            after[same] = self.keys[at[same]] & 0xFFFFFFFF
            self._at[cutoff] = (before, after)
        return self._at[cutoff]


def counts(days: PurchaseDays, cutoffs: Sequence[dt.date], activity_days: int, churn_days: int,
           cltv_days: int) -> pd.DataFrame:
    """One row per cutoff: customers, active, lapsed, churned, returned (active with an order inside the churn
    window: the next-order label is known), reactivated, buyers, subscribers, cancelled (a label's count is NaN
    where its window ends after the data; subscriber counts NaN without the table)."""
    last = _day(days.last_day) + 1
    rows = []
    for cutoff in cutoffs:
        t = _day(cutoff)
        before, after = days.around(cutoff)
        exists = before >= 0
        active = exists & (t - before <= activity_days)
        lapsed = exists & ~active
        soon = (after >= 0) & (after < t + churn_days)
        row = {"cutoff": cutoff, "customers": int(exists.sum()), "active": int(active.sum()),
               "lapsed": int(lapsed.sum()), "churned": np.nan, "returned": np.nan, "reactivated": np.nan,
               "buyers": np.nan,
               "subscribers": np.nan, "cancelled": np.nan}
        if t + churn_days <= last:
            row["churned"] = int((active & ~soon).sum())
            row["returned"] = int((active & soon).sum())
            row["reactivated"] = int((lapsed & soon).sum())
        if t + cltv_days <= last:
            row["buyers"] = int((exists & (after >= 0) & (after < t + cltv_days)).sum())
        if days.subscriptions is not None:
            s = days.subscriptions
            live = (s["started"] < t) & ((s["cancelled"] < 0) | (s["cancelled"] >= t))
            row["subscribers"] = int(s.loc[live, "code"].nunique())
            if t + churn_days <= last:
                ends = s[live & (s["cancelled"] >= t) & (s["cancelled"] < t + churn_days)]
                restarts = set(zip(s["code"], s["started"]))
                real = [(c, e) not in restarts for c, e in zip(ends["code"], ends["cancelled"])]
                row["cancelled"] = int(ends.loc[real, "code"].nunique())
        rows.append(row)
    return pd.DataFrame(rows)


def _order_days(folder: Path, stored: Path, batch_rows: int, days: bool):
    """Per batch of the stored per-day rows (days with ``orders > 0``), else of the transactions (``amount >= 0``):
    the customer ids as a dictionary array and, with ``days``, the day numbers (int64; None without)."""
    if stored.exists():
        source, when = pq.ParquetFile(stored, read_dictionary=["customer_id"]), "day"
        columns, keep = ["customer_id", "orders"], lambda batch: pc.greater(batch["orders"], 0)
    else:  # refunds are not orders
        source, when = pq.ParquetFile(folder / "transactions.parquet"), "ts"
        columns, keep = ["customer_id", "amount"], lambda batch: pc.greater_equal(batch["amount"], 0)
    for batch in source.iter_batches(batch_size=batch_rows, columns=columns + ([when] if days else [])):
        batch = batch.filter(keep(batch))
        ids = batch["customer_id"]
        if not pa.types.is_dictionary(ids.type):
            ids = pc.dictionary_encode(pc.cast(ids, "string"))
        day = None
        if days:
            day = pc.cast(pc.cast(batch[when], "date32"), "int32").to_numpy(zero_copy_only=False).astype(np.int64)
        yield ids, day


def _time_span(path: Path) -> dict:
    """``{"min": first, "max": last}`` of the ``ts`` column of a Parquet file: from the row groups' statistics
    when every row group has them (no data read), else from the column itself (``ts`` alone)."""
    meta = pq.ParquetFile(path).metadata
    column = meta.schema.names.index("ts")
    stats = [meta.row_group(i).column(column).statistics for i in range(meta.num_row_groups)
             if meta.row_group(i).num_rows]
    if stats and all(s is not None and s.has_min_max for s in stats):
        return {"min": min(s.min for s in stats), "max": max(s.max for s in stats)}
    return pc.min_max(pq.read_table(path, columns=["ts"])["ts"]).as_py()

