"""Preflight and models stepping aside (issue 17): population counts worked out by hand, the preflight's reasons
and fixes, a model without enough positives stepping aside with one line while the others go on, playbooks that
degrade on absent features, and the boosting-round progress callback."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from common.config import HorizonsConfig, ModelsConfig, SnapshotsConfig
from features.populations import PurchaseDays, counts


def _write_transactions(folder, rows) -> None:
    frame = pd.DataFrame(rows, columns=["customer_id", "ts", "amount"])
    frame["ts"] = pd.to_datetime(frame["ts"], format="ISO8601")
    frame.to_parquet(folder / "transactions.parquet", index=False)


def test_batched_reads_count_as_a_whole_read(validated_dir, tmp_path):
    """PurchaseDays.read holds one batch at a time: two rows per batch count what one batch counts, from the
    stored per-day rows and from the transactions alike."""
    import shutil

    cutoffs = [dt.date(2025, 6, 1), dt.date(2026, 1, 1), dt.date(2026, 7, 1)]
    for name in ("transactions.parquet", "subscriptions.parquet"):
        shutil.copy(validated_dir / name, tmp_path / name)
    for folder in (validated_dir, tmp_path):  # with purchase_days.parquet, then without
        whole, batched = PurchaseDays.read(folder), PurchaseDays.read(folder, batch_rows=997)
        assert batched.n_customers == whole.n_customers and len(batched.keys) == len(whole.keys)
        assert (batched.subscriptions["code"] >= 0).sum() == (whole.subscriptions["code"] >= 0).sum()
        pd.testing.assert_frame_equal(counts(batched, cutoffs, 365, 90, 365), counts(whole, cutoffs, 365, 90, 365))


def test_population_counts_by_hand(tmp_path):
    # A buys 50 days before the cutoff and again 4 days after it; B last bought 273 days before (lapsed) and only
    # refunds after it (a refund is not an order); C bought 9 days before and never again
    _write_transactions(tmp_path, [("A", "2026-01-10", 20.0), ("A", "2026-03-05 10:00", 35.0),
                                   ("B", "2025-06-01", 10.0), ("B", "2026-03-10", -5.0),
                                   ("C", "2026-02-20", 12.0), ("D", "2026-04-30", 8.0)])
    days = PurchaseDays.read(tmp_path)
    assert (days.first_day, days.last_day) == (dt.date(2025, 6, 1), dt.date(2026, 4, 30))
    table = counts(days, [dt.date(2026, 3, 1), dt.date(2026, 4, 15)], activity_days=90, churn_days=30,
                   cltv_days=60).set_index("cutoff")
    at = table.loc[dt.date(2026, 3, 1)]
    # customers A, B, C (D joins later); active A (50 days) and C (9 days); lapsed B (273 days)
    assert (at["customers"], at["active"], at["lapsed"]) == (3, 2, 1)
    # churned: C (active, nothing in [Mar 1, Mar 31)); reactivated: nobody (B's refund is no order);
    # buyers in [Mar 1, Apr 30): A only
    assert (at["churned"], at["reactivated"], at["buyers"]) == (1, 0, 1)
    assert at["returned"] == 1  # A ordered 4 days after: their days_to_next_order is known
    assert np.isnan(at["subscribers"])  # no subscriptions table
    late = table.loc[dt.date(2026, 4, 15)]
    # Apr 15 + 30 days = May 15 > the day after the data's last day: no label is counted there
    assert late["customers"] == 3 and np.isnan(late["churned"]) and np.isnan(late["buyers"])
    # a cutoff on the customer's own order day: that order is not before the cutoff
    on_day = counts(days, [dt.date(2026, 3, 5)], 90, 30, 60).iloc[0]
    assert on_day["active"] == 2 and on_day["churned"] == 1  # A (its Mar 5 order is after), C


def test_preflight_on_generated_data_names_the_fix(validated_dir, generated_config):
    from models.preflight import preflight

    days = PurchaseDays.read(validated_dir)
    tables = {"transactions", "customers", "subscriptions"}
    checks = {c.model: c for c in preflight(days, HorizonsConfig(), SnapshotsConfig(), ModelsConfig(), tables)}
    assert all(c.ok for c in checks.values()), [c.line for c in checks.values()]
    # nobody is lapsed before the window of 700 days is over: the win-back model steps aside, with the fix
    long_window = HorizonsConfig(activity_window_days=700)
    checks = {c.model: c for c in preflight(days, long_window, SnapshotsConfig(), ModelsConfig(), tables)}
    winback = checks["winback-classifier"]
    assert not winback.ok and not winback.required
    assert "lapsed customers" in winback.detail and "horizons.activity_window_days: 270" in winback.fix
    assert checks["churn-classifier"].ok
    # a CLTV window longer than the history allows: the shortest change that fits is named
    checks = {c.model: c for c in preflight(days, HorizonsConfig(cltv_days=600), SnapshotsConfig(),
                                            ModelsConfig(), tables)}
    assert not checks["cltv-regressor"].ok and "horizons.cltv_days: " in checks["cltv-regressor"].fix
    assert "first day" in checks["cltv-regressor"].detail or "training cutoff" in checks["cltv-regressor"].detail
    # without the table, the subscription model steps aside and no setting is offered
    checks = {c.model: c for c in preflight(days, HorizonsConfig(), SnapshotsConfig(), ModelsConfig(),
                                            {"transactions"})}
    sub = checks["subscription-churn-classifier"]
    assert not sub.ok and "tables.subscriptions" in sub.detail and sub.fix is None
    assert "steps aside" in sub.line


def test_required_model_that_cannot_be_trained_stops_with_its_name(validated_dir):
    from common.errors import ChurnError
    from models.preflight import preflight
    from pipelines.jobs import require_trainable

    days = PurchaseDays.read(validated_dir)
    # a churn window longer than the history: nothing can be labeled
    checks = preflight(days, HorizonsConfig(churn_days=1200, cltv_days=1200), SnapshotsConfig(), ModelsConfig(),
                       {"transactions"})
    churn = next(c for c in checks if c.model == "churn-classifier")
    assert not churn.ok and churn.required
    with pytest.raises(ChurnError, match="churn-classifier cannot be trained"):
        require_trainable(checks)


def _labeled(n_cutoffs: int, rows: int, positives_per_cutoff: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n_cutoffs):
        cutoff = dt.date(2025, 1 + i, 1)
        y = np.zeros(rows, bool)
        y[:positives_per_cutoff] = True
        frames.append(pd.DataFrame({"customer_id": [f"C{j}" for j in range(rows)], "cutoff": cutoff,
                                    "days_since_last_purchase": rng.integers(400, 600, rows),
                                    "reactivated": y}))
    return pd.concat(frames, ignore_index=True)


def test_too_few_positives_steps_aside_with_one_line():
    from models.catalog import StepAside, get

    spec = get("winback-classifier")
    settings = ModelsConfig(min_positives=50)
    with pytest.raises(StepAside) as caught:
        spec.check_trainable(_labeled(6, 100, 5), settings)  # 30 positives
    assert str(caught.value).startswith("winback-classifier steps aside: 30 reactivated outcomes among 600")
    assert "models.min_positives (50)" in str(caught.value)
    with pytest.raises(StepAside, match="only 2 training cutoffs"):
        spec.check_trainable(_labeled(2, 100, 40), settings)
    with pytest.raises(StepAside, match="no training cutoff"):
        spec.check_trainable(_labeled(3, 100, 40).iloc[0:0], settings)
    spec.check_trainable(_labeled(6, 100, 10), settings)  # 60 positives: trainable


def test_backtest_goes_on_without_a_model_that_steps_aside(validated_dir):
    from features.snapshots import build_snapshots, open_sources
    from models.backtest import needed_cutoffs, run_backtest

    src = open_sources(validated_dir)
    horizons = HorizonsConfig(cltv_days=90)
    as_of = dt.date(2026, 8, 3)
    cutoffs = needed_cutoffs(as_of, src.last_day, horizons, SnapshotsConfig(lookback_months=8),
                             first_day=src.first_day)
    assert all(c > src.first_day for c in cutoffs)
    snapshots = build_snapshots(src, cutoffs, horizons, with_labels=True)
    # as many positives as a win-back model on this small sample cannot have: it steps aside, the rest go on
    settings = ModelsConfig(min_positives=5_000, max_rounds=60)
    with pytest.raises(ValueError, match="churn-classifier steps aside"):  # required: the error names it
        run_backtest(snapshots, as_of, src.last_day, horizons, SnapshotsConfig(lookback_months=8), settings,
                     first_day=src.first_day)
    rounds: list[tuple[str, int, int]] = []

    def on_model(spec):
        return lambda done, total: rounds.append((spec.name, done, total))

    churn_only = settings.model_copy(update={"min_positives": 50})
    winback_rows = snapshots[snapshots["days_since_last_purchase"] > horizons.activity_window_days]
    positives = int(winback_rows["reactivated"].fillna(False).astype(bool).sum())
    churn_only = churn_only.model_copy(update={"min_positives": positives + 1})  # more than win-back has
    result = run_backtest(snapshots, as_of, src.last_day, horizons, SnapshotsConfig(lookback_months=8),
                          churn_only, first_day=src.first_day, on_model=on_model)
    assert "reactivated outcomes" in result.report["winback"]["skipped"]
    assert "roc_auc" in result.report["churn"] and "winback" not in result.evaluations
    # the progress callback saw every boosting round of the churn model, one at a time, up to max_rounds
    churn_rounds = [d for name, d, _ in rounds if name == "churn-classifier"]
    assert churn_rounds[:3] == [1, 2, 3] and {t for _, _, t in rounds} == {60}


def test_a_playbook_on_an_absent_feature_never_matches_and_is_named():
    from serving.targeting import assign_playbooks, load_playbooks, unmatchable

    books = load_playbooks()
    frame = pd.DataFrame({"customer_id": ["A", "B"], "predicted_cltv": [5000.0, 50.0],
                          "value_at_risk": [3000.0, 10.0], "churn_probability": [0.7, 0.6]})
    chosen = assign_playbooks(frame, books.for_list("at_risk"))  # no nps_group, open_tickets, discount_share
    assert chosen["playbook"].tolist() == ["high-value-care", "automated-email"]
    lines = unmatchable(books, set(frame.columns))
    assert any("'account-manager-call' (at_risk) can never match: no nps_group" in line for line in lines)
    assert not any("automated-email" in line for line in lines)  # no conditions: always matches
