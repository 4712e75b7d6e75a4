"""One definition, two engines: the same snapshot on DuckDB and on Spark (local mode, loopback only)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from common.config import HorizonsConfig
from features.snapshots import build_snapshots, open_sources

pytest.importorskip("pyspark", reason="the spark extra is part of the dev environment; CI always has it")


@pytest.mark.slow
def test_duckdb_and_spark_build_identical_snapshots(validated_dir):
    from features.snapshots import spark_session

    cutoffs = [dt.date(2025, 6, 1), dt.date(2026, 3, 1), dt.date(2026, 8, 1)]
    horizons = HorizonsConfig()
    duck_src = open_sources(validated_dir, "duckdb")
    assert duck_src.days is not None  # DuckDB reads the per-day rows `churn validate` stored ...
    duck = build_snapshots(duck_src, cutoffs, horizons, with_labels=True)
    spark = spark_session()
    try:  # ... and Spark computes them itself from the transactions, so both the definition and the file are checked
        spark_src = open_sources(validated_dir, "spark", spark, stored_days=False)
        assert spark_src.days is None
        other = build_snapshots(spark_src, cutoffs, horizons, with_labels=True)
    finally:
        spark.stop()
    assert len(duck) > 1000 and duck["cutoff"].nunique() == 3
    assert list(duck.columns) == list(other.columns)
    # every feature family is present, so the comparison covers all of them
    for column in ("monetary_value", "open_tickets", "last_nps", "web_sessions_30d", "unsubscribed",
                   "subscription_plan", "country", "rfm_segment", "churned", "future_net_revenue",
                   "subscription_churned"):
        assert column in duck.columns
    assert_frame_equal(duck, other, check_dtype=False, check_exact=False, rtol=1e-9, atol=1e-9)
