"""Live performance (serving/live.py, pipelines.jobs.live_performance): hand-worked figures of one score record,
the label-window boundary, the history kept between runs, and a backtest reproduced from the scores of the same
cutoff on generated data."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from common.config import HorizonsConfig, ModelsConfig, SnapshotsConfig
from models.catalog import get
from serving.lists import LISTS
from serving.live import GROUP, evaluate, flag_lines, known_from, pending, window_closed

CHURN, WINBACK, CLTV = get("churn-classifier"), get("winback-classifier"), get("cltv-regressor")
AT_RISK, WINBACK_LIST = (next(s for s in LISTS if s.model.name == m.name) for m in (CHURN, WINBACK))
AS_OF = dt.date(2026, 6, 1)
H = HorizonsConfig()  # churn window 90 days, CLTV 365, active: an order in the last 365 days


def _record_and_labels():
    ids = list("ABCDEFGH")
    active = [True] * 6 + [False] * 2
    record = pd.DataFrame({
        "customer_id": ids, "is_active": active,
        CHURN.score_column: [0.9, 0.8, 0.7, 0.4, 0.2, 0.1, np.nan, np.nan],
        WINBACK.score_column: [np.nan] * 6 + [0.6, 0.3],
        GROUP.format(AT_RISK.name): ["treatment", "control", "control", None, None, None, None, None],
        GROUP.format(WINBACK_LIST.name): [None] * 6 + ["treatment", None],
    })
    labeled = pd.DataFrame({
        "customer_id": [*ids, "I"], "cutoff": AS_OF,
        "days_since_last_purchase": [10] * 6 + [400, 500] + [20],
        CHURN.label: [1, 1, 0, 1, 0, 0, np.nan, np.nan, 0],  # I was not scored: left out
        WINBACK.label: [np.nan] * 6 + [1, 0, np.nan],
    })
    meta = {"as_of": AS_OF.isoformat(), "run_id": "r1",
            "champions": {CHURN.name: {"version": "3", "backtest": {"roc_auc": 0.95, "eval_as_of": "2026-03-02"}},
                          WINBACK.name: {"version": "2", "backtest": {"roc_auc": 0.8}},
                          CLTV.name: {"version": "1", "backtest": {"normalized_gini": 0.5}}}}
    return record, labeled, meta


def test_one_record_worked_by_hand():
    record, labeled, meta = _record_and_labels()
    rows, curves = evaluate(record, meta, labeled, dt.date(2026, 10, 31), H, margin=0.05)
    by_model = {row["model"]: row for row in rows}
    assert set(by_model) == {CHURN.name, WINBACK.name}  # CLTV: its 365-day window is still open
    churn = by_model[CHURN.name]
    # churned: A .9, B .8, D .4; stayed: C .7, E .2, F .1. Of the 9 (churned, stayed) pairs the churned one
    # scores higher in all but (D, C): AUC 8/9
    assert churn["roc_auc"] == pytest.approx(8 / 9)
    assert churn["evaluated"] == churn["scored"] == 6 and churn["version"] == "3"
    # one customer per probability bin, so ECE = mean |y - p| = (.1 + .2 + .7 + .6 + .2 + .1) / 6
    assert churn["ece"] == pytest.approx(1.9 / 6)
    # the at-risk list held A (treatment), B and C (control): 2 of 3 churned; in the control group 1 of 2
    assert (churn["list"], churn["list_customers"], churn["list_precision"]) == (AT_RISK.name, 3, pytest.approx(2 / 3))
    assert (churn["control_customers"], churn["control_precision"]) == (2, 0.5)
    # 8/9 - 0.95 = -0.061, more than the 0.05 margin below its backtest: flagged
    assert churn["live_minus_backtest"] == pytest.approx(8 / 9 - 0.95) and churn["flagged"]
    winback = by_model[WINBACK.name]
    assert winback["roc_auc"] == 1.0 and winback["list_precision"] == 1.0 and winback["control_precision"] is None
    assert not winback["flagged"] and winback["live_minus_backtest"] == pytest.approx(0.2)
    churn_curve = [c for c in curves if c["model"] == CHURN.name]
    assert [(c["mean_predicted"], c["observed"], c["customers"]) for c in churn_curve] == [
        (0.1, 0.0, 1), (0.2, 0.0, 1), (0.4, 1.0, 1), (0.7, 0.0, 1), (0.8, 1.0, 1), (0.9, 1.0, 1)]
    history = pd.DataFrame(rows)
    lines = flag_lines(history, 0.05)
    assert len(lines) == 1 and lines[0].startswith(f"{CHURN.name} (version 3): live roc_auc 0.889 on the scores "
                                                   "of 2026-06-01 is 0.061 below its backtest 0.950")
    assert pending([meta], dt.date(2026, 10, 31), H) == [
        {"as_of": "2026-06-01", "model": CLTV.name, "known_from": "2027-05-31"}]


def test_the_outcome_is_known_on_the_window_s_last_day_not_before():
    # the churn window of 2026-06-01 is [2026-06-01, 2026-08-30): 90 days, the last one 2026-08-29
    assert known_from(CHURN, AS_OF, H) == dt.date(2026, 8, 29)
    assert window_closed(CHURN, AS_OF, dt.date(2026, 8, 29), H)
    assert not window_closed(CHURN, AS_OF, dt.date(2026, 8, 28), H)
    record, labeled, meta = _record_and_labels()
    assert evaluate(record, meta, labeled, dt.date(2026, 8, 28), H, 0.05) == ([], [])


def test_cltv_realised_revenue_beside_predicted():
    record = pd.DataFrame({"customer_id": ["A", "B", "C"], "is_active": True,
                           CLTV.score_column: [100.0, 50.0, 10.0]})
    labeled = pd.DataFrame({"customer_id": ["A", "B", "C"], "cutoff": AS_OF, "days_since_last_purchase": 5,
                            CLTV.label: [120.0, 0.0, 30.0]})
    meta = {"as_of": AS_OF.isoformat(), "run_id": "r", "champions": {CLTV.name: {"version": "1", "backtest": {}}}}
    (row,), curves = evaluate(record, meta, labeled, AS_OF + dt.timedelta(days=364), H, 0.05)
    assert (row["realised_revenue"], row["predicted_revenue"]) == (150.0, 160.0) and curves == []
    assert row["metric"] == "normalized_gini" and row["backtest"] is None and not row["flagged"]


@pytest.fixture(scope="module")
def backtested(validated_dir):
    """A backtest of the churn and win-back models at the latest cutoff whose churn window is complete."""
    from features.snapshots import build_snapshots, latest_labeled_cutoff, open_sources
    from models.backtest import needed_cutoffs, run_backtest

    src = open_sources(validated_dir)
    as_of = latest_labeled_cutoff(src.last_day, H.churn_days)
    snapshots = build_snapshots(src, needed_cutoffs(as_of, src.last_day, H, SnapshotsConfig()), H, with_labels=True)
    result = run_backtest(snapshots, as_of, src.last_day, H, SnapshotsConfig(), ModelsConfig(min_child_samples=20),
                          models=[CHURN, WINBACK])
    return result, as_of, src


def test_the_scores_of_a_backtested_cutoff_reproduce_its_backtest(backtested, generated_config, tmp_path):
    """Scored at the backtest's cutoff with the backtest's own models and judged once the data show what
    happened, the live figures are the backtest's: the outcomes are the labels, computed the same way."""
    from common.config import load_config
    from features.snapshots import build_snapshots
    from pipelines import jobs
    from serving.scoring import Champion, score_snapshot

    result, as_of, src = backtested
    cfg = load_config(generated_config)
    data = tmp_path / "data"
    shutil.copytree(cfg.validated_dir, data / "validated")
    cfg = cfg.model_copy(update={"data_dir": data})
    champions = {name: Champion(name, "backtest", model) for name, model in result.models.items()}
    scores = score_snapshot(build_snapshots(src, [as_of], H), champions, H)
    from serving.live import score_record

    backtests = {spec.name: {"roc_auc": result.report[spec.section]["roc_auc"]} for spec in (CHURN, WINBACK)}
    jobs.keep_record(cfg, score_record(scores, {}), as_of, "run-1", champions, backtests)
    live = jobs.live_performance(cfg)
    by_model = {row["model"]: row for row in live.history.to_dict("records")}
    assert set(by_model) == {CHURN.name, WINBACK.name}
    for spec in (CHURN, WINBACK):
        row, report = by_model[spec.name], result.report[spec.section]
        assert row["evaluated"] == report["n"] and row["scored"] == report["n"]
        assert abs(row["roc_auc"] - report["roc_auc"]) <= 0.01, (spec.name, row["roc_auc"], report["roc_auc"])
        assert row["ece"] == pytest.approx(report["ece"], abs=0.01) and not row["flagged"]
    assert len(live.new) == 2 and set(live.reliability["model"]) == {CHURN.name, WINBACK.name}
    # kept as a table: a second call reuses it (nothing new), and the files hold the same rows
    again = jobs.live_performance(cfg)
    assert again.new == [] and len(again.history) == 2
    stored = pd.read_csv(jobs.live_dir(cfg) / "live_performance.csv")
    assert list(stored["model"]) == list(live.history["model"])
    # an erasure (fewer customers in the record) computes it again
    path = jobs.records_dir(cfg) / f"as_of={as_of.isoformat()}" / "scores.parquet"
    record = pd.read_parquet(path)
    record.iloc[1:].to_parquet(path, index=False)
    assert len(jobs.live_performance(cfg).new) == 2
    meta = json.loads((path.parent / "record.json").read_text())
    assert meta["champions"][CHURN.name] == {"version": "backtest", "backtest": backtests[CHURN.name]}
