"""Backtest, training and registry: the leakage guard, promotion rules, and a small end-to-end `churn train`."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from common.config import ModelsConfig
from models.backtest import cltv_evaluation_cutoff, training_rows
from models.tracking import champion_evaluation, decide_promotion
from pipelines.cli import app

runner = CliRunner()


def test_training_rows_never_have_a_label_window_past_the_as_of_date():
    cutoffs = [dt.date(2026, m, 1) for m in range(1, 9)]
    snaps = pd.DataFrame({"cutoff": cutoffs, "customer_id": "A"})
    as_of = dt.date(2026, 8, 1)
    # 90-day windows: 05-01 + 90 days = 07-30 <= 08-01 is allowed; 05-03 would end on 08-01 exactly (allowed);
    # 06-01 + 90 = 08-30 is not.
    got = training_rows(snaps, as_of, 90, cutoffs)["cutoff"].tolist()
    assert got == [dt.date(2026, m, 1) for m in range(1, 6)]
    exact = training_rows(pd.DataFrame({"cutoff": [dt.date(2026, 5, 3), dt.date(2026, 5, 4)]}), as_of, 90,
                          [dt.date(2026, 5, 3), dt.date(2026, 5, 4)])
    assert exact["cutoff"].tolist() == [dt.date(2026, 5, 3)]  # [05-03, 08-01) closes at the as-of date
    # CLTV is evaluated at the as-of date only when its 365-day window is inside the data
    assert cltv_evaluation_cutoff(dt.date(2026, 8, 1), dt.date(2026, 10, 31), 365) == dt.date(2025, 11, 1)
    assert cltv_evaluation_cutoff(dt.date(2025, 6, 1), dt.date(2026, 10, 31), 365) == dt.date(2025, 6, 1)


def test_promotion_keeps_the_champion_when_the_challenger_is_not_better_enough():
    margins = ModelsConfig(promotion_margin_auc=0.005, promotion_margin_gini=0.005)
    champ = {"roc_auc": 0.90, "ece": 0.010, "normalized_gini": 0.80}
    assert decide_promotion("churn-classifier", {"roc_auc": 0.95, "ece": 0.02}, None, margins).promote
    worse = decide_promotion("churn-classifier", {"roc_auc": 0.88, "ece": 0.005}, champ, margins)
    assert not worse.promote and "margin" in worse.reason
    assert not decide_promotion("churn-classifier", {"roc_auc": 0.904, "ece": 0.005}, champ, margins).promote
    ece_worse = decide_promotion("churn-classifier", {"roc_auc": 0.95, "ece": 0.011}, champ, margins)
    assert not ece_worse.promote and "ECE worse" in ece_worse.reason
    assert decide_promotion("churn-classifier", {"roc_auc": 0.905, "ece": 0.010}, champ, margins).promote
    assert not decide_promotion("cltv-regressor", {"normalized_gini": 0.804}, champ, margins).promote
    assert decide_promotion("cltv-regressor", {"normalized_gini": 0.805}, champ, margins).promote


def test_the_champion_is_compared_out_of_sample():
    """A champion trained on the evaluation cutoff is never rescored on it (in-sample numbers flatter it)."""
    margins = ModelsConfig()
    challenger = {"roc_auc": 0.80, "ece": 0.01, "eval_as_of": "2026-08-03", "data_hash": "new"}
    logged = {"roc_auc": 0.78, "ece": 0.01, "eval_as_of": "2026-08-03", "data_hash": "old"}

    class Model:
        def __init__(self, cutoffs):
            self.training_cutoffs = [pd.Timestamp(c) for c in cutoffs]

    in_sample = {"roc_auc": 0.99, "ece": 0.001}
    rescored = []

    def rescore(model):
        rescored.append(model)
        return in_sample

    trained_on_it = Model(["2026-07-04", "2026-08-03"])
    # same cutoff and data: its own logged backtest, nothing loaded
    same = champion_evaluation({**challenger, "data_hash": "old"}, logged, lambda: 1 / 0, rescore)
    assert same["roc_auc"] == 0.78 and "same cutoff and data" in same["source"]
    # data changed, champion trained on the cutoff: its logged backtest, not the in-sample 0.99
    changed = champion_evaluation(challenger, logged, lambda: trained_on_it, rescore)
    assert changed["roc_auc"] == 0.78 and "in-sample" in changed["source"] and not rescored
    assert decide_promotion("churn-classifier", challenger, changed, margins).promote  # +0.02 >= 0.005
    # trained on it, no backtest there: not comparable, the champion stays
    other = champion_evaluation(challenger, {**logged, "eval_as_of": "2026-07-04"}, lambda: trained_on_it, rescore)
    assert other["comparable"] is False and not rescored
    kept = decide_promotion("churn-classifier", challenger, other, margins)
    assert not kept.promote and "churn promote" in kept.reason
    # not trained on it (the data moved on): rescored on the challenger's rows
    moved = champion_evaluation(challenger, logged, lambda: Model(["2026-07-04"]), rescore)
    assert moved["roc_auc"] == 0.99 and moved["source"] == "rescored on this cutoff" and len(rescored) == 1


def _failure(result) -> str:
    import traceback

    return result.output + "".join(traceback.format_exception(result.exc_info[1])) if result.exc_info else ""


@pytest.fixture(scope="module")
def trained(validated_dir, generated_config):
    """`churn train` twice on the small generated data (unchanged data and config; the second one forced, since an
    unchanged re-run is otherwise skipped)."""
    first = runner.invoke(app, ["train", "--config", str(generated_config)])
    assert first.exit_code == 0, _failure(first)
    second = runner.invoke(app, ["train", "--force", "--config", str(generated_config)])
    assert second.exit_code == 0, _failure(second)
    return generated_config, first.output, second.output


def test_train_registers_champions_and_a_rerun_keeps_them(trained):
    from common.config import load_config
    from models.tracking import list_versions

    config, first, second = trained
    cfg = load_config(config)
    rows = {(r["name"], r["version"]): r for r in list_versions(cfg)}
    for name in ("churn-classifier", "winback-classifier", "cltv-regressor"):
        v1, v2 = rows[(name, "1")], rows[(name, "2")]
        assert "champion" in v1["aliases"] and v1["decision"] == "promoted"
        assert v2["aliases"] == ["challenger"] and v2["decision"] == "kept champion", v2
        # same data, config and seeds: the same backtest numbers (deterministic training)
        assert v1["metrics"] == v2["metrics"]
        # the registry reads on its own: a one-sentence description and flat tags, no JSON blobs
        metric = "normalized_gini" if name == "cltv-regressor" else "roc_auc"
        assert v1["description"] == (f"Promoted to champion: the first {name}, {metric} "
                                     f"{v1['metrics'][metric]:.4f} on the backtest at {v1['metrics']['eval_as_of']}.")
        assert v2["description"].startswith(f"Not promoted, v1 stays champion: {metric} "
                                            f"{v2['metrics'][metric]:.4f}")
    from mlflow import MlflowClient

    from models.tracking import tracking_uri

    tags = MlflowClient(tracking_uri(cfg)).get_model_version("churn-classifier", "2").tags
    assert not any(k.endswith("_metrics") for k in tags) and float(tags["champion.roc_auc"]) > 0.5
    listing = runner.invoke(app, ["models", "--config", str(config)])
    assert listing.exit_code == 0 and "churn-classifier" in listing.output and "champion" in listing.output


def test_champion_loads_through_pyfunc_as_probabilities(trained):
    import mlflow

    from common.config import load_config
    from models.tracking import tracking_uri

    cfg = load_config(trained[0])
    report = json.loads(next((cfg.data_dir / "outputs" / "backtest").glob("*/report.json")).read_text())
    mlflow.set_tracking_uri(tracking_uri(cfg))
    model = mlflow.pyfunc.load_model("models:/churn-classifier@champion")
    example = model.input_example
    p = np.asarray(model.predict(example))
    assert p.shape == (len(example),) and ((p > 0) & (p < 1)).all() and not np.allclose(p, np.round(p))
    assert report["churn"]["n"] > 0


def test_backtest_report_has_every_metric_and_no_leak(trained):
    from common.config import load_config

    cfg = load_config(trained[0])
    path = next((cfg.data_dir / "outputs" / "backtest").glob("*/report.json"))
    report = json.loads(path.read_text())
    for key in ("roc_auc", "pr_auc", "brier", "ece", "top_decile_lift", "top_decile_capture"):
        assert 0 <= report["churn"][key] <= 10, key
    for key in ("normalized_gini", "spearman", "decile_mape", "total_error"):
        assert np.isfinite(report["cltv"][key]), key
    assert np.isfinite(report["winback"]["roc_auc"]) and report["next_order"]["median_abs_error_days"] >= 0
    for name in ("btyd", "recency_rule", "logistic_rfm"):
        assert 0.5 < report["baselines"][name]["churn"]["roc_auc"] <= 1
    assert report["baselines"]["historical_formula"]["cltv"]["normalized_gini"] <= 1
    assert 0.5 < report["oracle"]["churn_roc_auc"] <= 1
    # the leakage guard, end to end: every training label window closes on or before its evaluation cutoff
    as_of = dt.date.fromisoformat(report["as_of"])
    for section, horizon, at in (("churn", 90, as_of), ("winback", 90, as_of),
                                 ("cltv", 365, dt.date.fromisoformat(report["cltv"]["as_of"]))):
        for cutoff in report[section]["training_cutoffs"]:
            assert dt.date.fromisoformat(cutoff) + dt.timedelta(days=horizon) <= at, (section, cutoff)
    for plot in ("roc.png", "calibration.png", "gain.png", "cltv_deciles.png"):
        assert (path.parent / plot).stat().st_size > 5_000


def test_backtest_cli_rejects_an_as_of_without_complete_labels(trained):
    result = runner.invoke(app, ["backtest", "--config", str(trained[0]), "--as-of", "2026-10-01"])
    assert result.exit_code == 2 and "churn window ends after" in result.output


def test_manual_promotion_is_recorded(trained):
    from common.config import load_config
    from models.tracking import list_versions

    config = trained[0]
    result = runner.invoke(app, ["promote", "cltv-regressor", "2", "--config", str(config), "--reason", "test"])
    assert result.exit_code == 0, result.output
    rows = {(r["name"], r["version"]): r for r in list_versions(load_config(config))}
    assert "champion" in rows[("cltv-regressor", "2")]["aliases"]
    assert rows[("cltv-regressor", "2")]["decision"] == "promoted by hand"
    bad = runner.invoke(app, ["promote", "cltv-regressor", "99", "--config", str(config)])
    assert bad.exit_code == 2 and "no version 99" in bad.output


def test_every_model_logs_its_global_shap_summary(trained):
    from mlflow import MlflowClient

    from common.config import load_config
    from models.tracking import list_versions, tracking_uri

    cfg = load_config(trained[0])
    client = MlflowClient(tracking_uri(cfg))
    for row in [r for r in list_versions(cfg) if r["version"] == "1"]:
        logged = {a.path for a in client.list_artifacts(row["run_id"], "shap")}
        assert logged == {f"shap/shap_summary_{row['name']}.png", f"shap/shap_importance_{row['name']}.png"}


def test_preflight_counts_the_rows_the_backtest_trains_on(trained):
    """The preflight replays the backtest's schedule on counts from the purchase days: its rows per model are the
    backtest's training rows, so what it promises is what training finds."""
    import re

    from common.config import load_config
    from pipelines import jobs

    cfg = load_config(trained[0])
    report = json.loads(next((cfg.data_dir / "outputs" / "backtest").glob("*/report.json")).read_text())
    checks = {c.model: c for c in jobs.preflight(cfg)}
    for name, section in (("churn-classifier", "churn"), ("winback-classifier", "winback"),
                          ("cltv-regressor", "cltv")):
        rows = int(re.search(r"with ([\d,]+) rows", checks[name].detail).group(1).replace(",", ""))
        assert rows == report["populations"]["training_rows"][section], (name, checks[name].detail)


def test_a_signature_from_a_few_rows_is_the_one_from_every_row():
    from mlflow.models import infer_signature

    from models.tracking import signature_rows

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"a": rng.normal(size=500), "b": rng.normal(size=500), "c": ["x", "y"] * 250,
                          "d": rng.normal(size=500)})
    frame.loc[[40, 300], "b"] = np.nan
    frame.loc[[470], "c"] = None
    rows = signature_rows(frame)
    # the first five rows, and the first row where b and c are missing (d never is)
    assert rows.index.tolist() == [0, 1, 2, 3, 4, 40, 470]
    assert infer_signature(rows) == infer_signature(frame)
    assert [c.name for c in infer_signature(rows).inputs.inputs if not c.required] == ["b", "c"]
