"""bench/measure.py measures what it says, bench_features.py's polars reference equals the pandas oracle, and
bench_run.py reads each task's interval and peak from a run's log and samples."""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import bench_features  # noqa: E402
import bench_run  # noqa: E402
import measure  # noqa: E402

from tests.features.reference import CORE, reference_rfm  # noqa: E402

MB = 2**20


def _spin(seconds: float) -> None:
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass


def _resident(megabytes: int) -> bytearray:
    block = bytearray(megabytes * MB)
    block[::4096] = b"x" * len(block[::4096])  # touch every page: resident, not only reserved
    return block


def _hold(megabytes: int) -> float:
    _resident(megabytes)
    return measure.peak_rss_mb()


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def _fail() -> None:
    raise ValueError("no such engine")


def test_a_block_reports_its_cpu_wall_memory_and_load():
    with measure.measured("spin") as figures:
        _spin(0.2)
    assert figures.cpu_s >= 0.2
    assert figures.wall_s >= figures.cpu_s - 0.05  # one thread cannot use more CPU than wall time
    assert figures.peak_rss_mb >= figures.rss_at_start_mb > 0
    assert figures.load_before >= 0 and figures.load_after >= 0
    line = figures.line()
    assert line.startswith("spin: wall ") and ", CPU " in line and ", peak RSS " in line and ", load " in line


def test_blocks_one_after_another_add_up():
    a = measure.Figures("a", 1.0, 2.0, 300.0, 4.0, 5.0)
    b = measure.Figures("b", 3.0, 1.0, 100.0, 6.0, 7.0)
    assert measure.combined("both", [a, b]) == measure.Figures("both", 4.0, 3.0, 300.0, 4.0, 7.0)
    assert measure.Figures.from_dict(a.as_dict()) == a


def test_each_fresh_process_has_its_own_peak_rss():
    held = _resident(200)  # Linux would carry this process's peak over into a child's ru_maxrss
    big = measure.in_fresh_process(_hold, 150)
    small = measure.in_fresh_process(_hold, 0)
    assert big >= 150 and small < big - 100  # neither the first worker's peak nor this process's 200 MB
    del held


def test_a_fresh_process_that_overruns_is_killed_and_errors_carry_their_traceback():
    assert measure.in_fresh_process(_sleep, 30, timeout=1) is None
    with pytest.raises(RuntimeError, match="ValueError: no such engine"):
        measure.in_fresh_process(_fail)


def test_a_command_reports_its_own_figures():
    script = "import sys; b = bytearray(80 * 2**20); b[::4096] = b'x' * len(b[::4096]); print('done')"
    done, figures = measure.run_command([sys.executable, "-c", script], "hold 80 MB")
    assert done.returncode == 0 and done.stdout == "done\n"
    assert figures.peak_rss_mb >= 80 and figures.cpu_s > 0 and figures.wall_s > 0
    assert figures.rss_at_start_mb is None
    held = _resident(200)
    done, figures = measure.run_command([sys.executable, "-c", "import sys; sys.exit(3)"])
    assert done.returncode == 3 and figures.peak_rss_mb < 60  # not this process's 200 MB
    del held
    killed, _ = measure.run_command([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    assert killed.returncode < 0


def _transactions() -> pd.DataFrame:
    rows = [("a", "2026-01-05 10:00", 20.0), ("a", "2026-01-05 18:00", 10.0),  # one purchase day of 30.0
            ("a", "2026-03-01 09:00", 50.0), ("a", "2026-03-02 09:00", -50.0),  # a refund
            ("a", "2026-04-01 00:00", 99.0),  # exactly at the cutoff: never counts
            ("b", "2026-03-20 12:00", 15.5),
            ("c", "2026-03-25 12:00", -5.0)]  # refunds only: no row
    frame = pd.DataFrame(rows, columns=["customer_id", "ts", "amount"])
    frame["ts"] = pd.to_datetime(frame["ts"]).astype("datetime64[us]")
    frame["order_id"] = [f"o{i}" for i in range(len(frame))]
    return frame


def test_polars_reference_equals_the_pandas_oracle():
    import polars as pl

    cutoff = dt.date(2026, 4, 1)
    tx = _transactions()
    got = bench_features.polars_rfm(pl.from_pandas(tx), cutoff).to_pandas().set_index("customer_id")
    assert got.index.tolist() == ["a", "b"]
    a = got.loc["a"]
    assert (a["frequency"], a["recency"], a["T"]) == (1, 55, 85)  # Jan 5 -> Mar 1; Jan 5 -> Mar 31
    assert a["monetary_value"] == 50.0 and a["net_spend"] == 30.0 and a["orders"] == 3
    assert a["refund_rate"] == pytest.approx(1 / 3) and a["days_since_last_purchase"] == 31
    assert_frame_equal(got[CORE], reference_rfm(tx, cutoff)[CORE], check_dtype=False, check_index_type=False)


def test_the_equality_check_allows_rounding_to_millionths_and_nothing_more(tmp_path):
    cutoff = dt.date(2026, 4, 1)
    theirs = reference_rfm(_transactions(), cutoff).reset_index()
    theirs.to_parquet(tmp_path / "theirs.parquet")
    ours = theirs.copy()
    ours.loc[0, "net_spend"] += 3 * 4e-7  # customer a: 4 transactions, each rounded to 1e-6 by our engine
    ours.to_parquet(tmp_path / "ours.parquet")
    assert bench_features.check_equal(tmp_path / "ours.parquet", tmp_path / "theirs.parquet", "pandas") == (
        2, len(CORE))
    ours.loc[1, "orders_90d"] += 1
    ours.to_parquet(tmp_path / "ours.parquet")
    with pytest.raises(AssertionError, match="orders_90d differs from ours for 1 customers"):
        bench_features.check_equal(tmp_path / "ours.parquet", tmp_path / "theirs.parquet", "pandas")


def test_each_task_s_time_and_peak_come_from_its_log_lines_and_the_samples_inside_them(tmp_path):
    day = dt.date(2026, 12, 7)
    log = tmp_path / "run.log"
    log.write_text("\n".join([
        "10:00:00.000 | INFO    | Flow run 'x' - Beginning flow run",
        "10:00:01.000 | INFO    | Task run 'ingest-tables-f6c' - customers: 20,000 rows",
        "10:00:04.500 | INFO    | Task run 'ingest-tables-f6c' - Finished in state Completed()",
        "a line of something else",
        "10:00:05.000 | INFO    | Task run 'build-snapshots-8be' - building training_snapshots on duckdb",
        "10:00:09.000 | INFO    | Task run 'build-snapshots-8be' - Finished in state Completed()",
        "10:00:09.500 | INFO    | Task run 'build-snapshots-04e' - building snapshot_2026-11-01 on duckdb",
        "10:00:10.000 | INFO    | Task run 'build-snapshots-04e' - Finished in state Completed()"]) + "\n")
    sampler = bench_run.TreeSampler(pid=0)
    at = lambda s: dt.datetime.combine(day, dt.time.fromisoformat(s))  # noqa: E731
    sampler.samples = [(at("10:00:02"), 300.0), (at("10:00:04"), 500.0), (at("10:00:06"), 900.0),
                       (at("10:00:08"), 700.0), (at("10:00:10"), 2000.0)]
    steps = bench_run.task_steps(log, day, sampler)
    # a task run starts at the line before its first one (here the flow's, then the previous task's last)
    assert steps == [("ingest-tables-f6c", "customers: 20,000 rows", 4.5, 500.0),
                     ("build-snapshots-8be", "building training_snapshots on duckdb", 4.5, 900.0),
                     ("build-snapshots-04e", "building snapshot_2026-11-01 on duckdb", 1.0, 2000.0)]
    assert sampler.peak() == 2000.0
    # a log that runs past midnight: the time stamps go on the next day
    late = tmp_path / "late.log"
    late.write_text("23:59:58.000 | INFO    | Task run 'train-models-10f' - opening the validated tables\n"
                    "00:00:03.000 | INFO    | Task run 'train-models-10f' - Finished in state Completed()\n")
    sampler.samples = [(at("23:59:59"), 100.0), (at("10:00:00"), 5.0)]
    sampler.samples.append((dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0, 0, 1)), 300.0))
    assert bench_run.task_steps(late, day, sampler) == [("train-models-10f", "opening the validated tables", 5.0,
                                                         300.0)]
