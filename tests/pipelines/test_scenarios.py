"""`churn run` end to end on every generator scenario (issue 17), each with a config that names only the tables
the scenario has and every other setting at its default: the run succeeds, the models the data cannot train step
aside with one line naming them, the others train and score, and the lists leave the columns of a model that
stepped aside empty instead of inventing them."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from tests.conftest import GENERATED_AS_OF, write_config

runner = CliRunner()

# scenario -> models that must step aside on it with the default settings, and why that is structural
MUST_STEP_ASIDE = {
    "transactions-only": {"subscription-churn-classifier"},  # no subscriptions table
    "single-cohort": {"winback-classifier",  # nobody is 365 days silent before the last training cutoff
                      "cltv-regressor"},  # 18 months cannot hold a 365-day window plus training cutoffs before it
    "short-history": {"winback-classifier", "cltv-regressor"},  # 12 months: the same, sooner
    "no-consent-data": set(),
    "subscription-business": set(),
}


def _failure(result) -> str:
    import traceback

    return result.output + ("".join(traceback.format_exception(result.exc_info[1])) if result.exc_info else "")


@pytest.mark.parametrize("scenario", sorted(MUST_STEP_ASIDE))
def test_churn_run_succeeds_on_every_scenario(tmp_path, scenario):
    from features.synthetic.scenarios import scenario_tables
    from features.synthetic.simulate import generate
    from serving.publish import current_version

    generate(tmp_path / "raw", n_customers=1_200, seed=11, scenario=scenario)
    tables = {name: {"source": {"path": f"raw/{name}.parquet"}} for name in scenario_tables(scenario)}
    config = write_config(tmp_path, tables, as_of=GENERATED_AS_OF.isoformat())

    validate = runner.invoke(app, ["validate", "--config", str(config)])
    assert validate.exit_code == 0, _failure(validate)
    assert "preflight" in validate.output
    result = runner.invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 0, _failure(result)
    out = " ".join(result.output.split())

    version = current_version(tmp_path / "outputs")
    meta = json.loads(next(version.glob("at_risk/as_of=*/run.json")).read_text())
    skipped = set(meta["models_without_champion"])
    # the whole-list check of the published reasons finds nothing (every count 0)
    assert not {(name, k) for name, counts in meta["reason_audit"].items() for k, v in counts.items() if v}
    assert MUST_STEP_ASIDE[scenario] <= skipped, (scenario, skipped)
    assert "churn-classifier" not in skipped
    for name in skipped:
        assert f"{name} has no champion" in out
    at_risk = pd.read_parquet(next(version.glob("at_risk/as_of=*/*.parquet")))
    winback = pd.read_parquet(next(version.glob("winback/as_of=*/*.parquet")))
    scores = pd.concat([at_risk, winback])
    # the lists hold the customers selected for contact (treatment and control); the scores cover everyone
    assert meta["active_customers"] > 0 and meta["at_risk_customers"] > 0
    assert at_risk["churn_probability"].between(0, 1).all()
    if "cltv-regressor" in skipped:  # never invented: no CLTV, no value at risk, nobody valued for contact
        assert scores["predicted_cltv"].isna().all() and meta["value_at_risk"] is None
        assert "unknown (no CLTV model)" in out and "0 targeted:" in out and at_risk.empty
    else:
        assert at_risk["predicted_cltv"].notna().all()
    if "winback-classifier" in skipped:
        assert winback.empty
    if "subscription-churn-classifier" in skipped:
        assert scores["subscription_cancel_probability"].isna().all()
    if scenario in ("transactions-only", "no-consent-data"):  # consent unknown: nobody contacted, and said so
        assert "0 targeted:" in out and "marketing consent" in out and at_risk.empty
    if scenario == "subscription-business":
        assert len(at_risk) > 0 and at_risk["value_at_risk"].is_monotonic_decreasing

    # the KPI report written after scoring: a KPI without its table is no data, the model's CLTV beside its own
    assert "KPI report:" in out
    report = json.loads(next((tmp_path / "outputs" / "reports").glob("as_of=*/summary.json")).read_text())
    if report["headline"]:
        assert report["headline"]["churn_rate"] is not None
        if "surveys" not in scenario_tables(scenario):
            assert {"nps", "csat", "ces_mean", "survey_response_rate"} <= set(report["no_data"])
        if "cltv-regressor" not in skipped:
            assert report["mean_predicted_cltv"] > 0
        else:
            assert report["mean_predicted_cltv"] is None

    # the preflight (printed by validate as a table) named each model that steps aside, with the reason
    from common.config import load_config
    from pipelines import jobs

    aside = {c.model: c.line for c in jobs.preflight(load_config(config)) if not c.ok}
    assert MUST_STEP_ASIDE[scenario] <= set(aside), aside
    if MUST_STEP_ASIDE[scenario]:
        assert "no: skipped" in validate.output
    for name in MUST_STEP_ASIDE[scenario]:
        assert aside[name].startswith(f"{name} steps aside: ")
