"""The per-customer-day rows `churn validate` stores beside the transactions: equal to computing them, and never
used once the transactions file changed."""

from __future__ import annotations

import datetime as dt
import shutil

import pandas as pd
from pandas.testing import assert_frame_equal

from features import definitions as d
from common.config import HorizonsConfig
from features.snapshots import DAYS_FILE, build_snapshots, open_sources, stored_days_current


def test_stored_days_equal_computed_and_go_stale_when_the_transactions_change(validated_dir, tmp_path):
    folder = tmp_path / "validated"
    shutil.copytree(validated_dir, folder)
    assert (folder / DAYS_FILE).exists() and stored_days_current(folder)

    stored = open_sources(folder)
    computed = open_sources(folder, stored_days=False)
    assert stored.days is not None and computed.days is None
    key = ["customer_id", "day"]
    from_file = stored.days.to_pandas().sort_values(key, ignore_index=True)
    from_tx = d.purchase_days(computed.tables["transactions"], computed.channels).to_pandas().sort_values(
        key, ignore_index=True)
    assert len(from_file) > 10_000
    assert_frame_equal(from_file, from_tx, check_dtype=False)

    cutoffs, horizons = [dt.date(2026, 6, 1)], HorizonsConfig()
    assert_frame_equal(build_snapshots(stored, cutoffs, horizons, with_labels=True),
                       build_snapshots(computed, cutoffs, horizons, with_labels=True))

    # a rewritten transactions file (here: one customer's rows removed, as `churn forget` does) makes them stale
    tx = pd.read_parquet(folder / "transactions.parquet")
    tx[tx["customer_id"] != tx["customer_id"].iloc[0]].to_parquet(folder / "transactions.parquet", index=False)
    assert not stored_days_current(folder)
    assert open_sources(folder).days is None
