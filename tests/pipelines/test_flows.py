"""The Prefect flows end to end on a small generated retailer: a missing champion, `churn run` (every flow), an
unchanged re-run (identical lists, no new champion, nothing retrained), injected failures that leave the published
lists untouched, a smoke run of each flow on its own, and `churn schedule` firing a scheduled run on a real local
Prefect server."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from pipelines.cli import app
from tests.conftest import GENERATED_AS_OF, write_config

runner = CliRunner()
SCORING_AS_OF = "2026-11-01"  # the day after the generated data's last transaction day (2026-10-31)


def _failure(result) -> str:
    import traceback

    return result.output + ("".join(traceback.format_exception(result.exc_info[1])) if result.exc_info else "")


def _digests(outputs: Path) -> dict[str, str]:
    """Hash of every published list file (not run.json: run metadata) and of the SQL tables' contents."""
    import sqlite3

    from serving.publish import STORE, current_version

    version = current_version(outputs)  # the published lists, through the pointer (publish.json names the version)
    digests = {f"lists/{p.relative_to(version)}": hashlib.sha256(p.read_bytes()).hexdigest()
               for p in sorted(version.rglob("*")) if p.is_file() and p.name not in ("run.json", "publish.json")}
    digests.update({str(p.relative_to(outputs)): hashlib.sha256(p.read_bytes()).hexdigest()
                    for p in sorted(outputs.rglob("*"))
                    if p.is_file() and STORE not in p.relative_to(outputs).parts and not p.is_symlink()
                    and not any(l in p.relative_to(outputs).parts for l in ("lists", "at_risk", "winback"))
                    and p.suffix != ".lock" and not p.name.startswith("lists.db")})
    if (outputs / "lists.db").exists():
        with sqlite3.connect(outputs / "lists.db") as db:
            for table in ("at_risk", "winback", "list_latest", "at_risk_latest", "winback_latest"):
                rows = db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
                digests[f"sql:{table}"] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return digests


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, generated) -> dict:
    """A copy of the generated data with its own registry; `churn score` before training, then `churn run` twice."""
    from features.synthetic.simulate import TABLES

    folder = tmp_path_factory.mktemp("pipeline")
    shutil.copytree(generated, folder / "raw")
    config = write_config(folder, {name: {"source": {"path": f"raw/{name}.parquet"}} for name in TABLES},
                          as_of=GENERATED_AS_OF.isoformat())
    before = runner.invoke(app, ["score", "--config", str(config)])
    published_before_training = (folder / "outputs").exists()
    first = runner.invoke(app, ["run", "--config", str(config)])
    assert first.exit_code == 0, _failure(first)
    outputs = folder / "outputs"
    digests = _digests(outputs)
    run_json = (outputs / "at_risk" / f"as_of={SCORING_AS_OF}" / "run.json").read_text()
    from serving.lists import LISTS

    lists = {spec.name: pd.read_parquet(outputs / spec.name / f"as_of={SCORING_AS_OF}" / f"{spec.name}.parquet")
             for spec in LISTS}  # as first published (later tests publish again, and erase customers)
    second = runner.invoke(app, ["run", "--config", str(config)])
    assert second.exit_code == 0, _failure(second)
    return {"config": config, "folder": folder, "outputs": outputs, "before": before, "first": first,
            "second": second, "digests_first": digests, "digests_second": _digests(outputs),
            "run_json_first": run_json, "published_before_training": published_before_training,
            "lists_first": lists}


def test_scoring_without_a_champion_says_to_train_first(pipeline):
    before = pipeline["before"]
    assert before.exit_code == 2
    assert "no champion version of churn-classifier" in before.output and "run `churn train` first" in before.output
    assert not pipeline["published_before_training"]


def test_churn_run_publishes_both_lists_with_the_champions(pipeline):
    from common.config import load_config
    from features.snapshots import read_snapshots
    from models.tracking import champion_versions
    from serving.scoring import LIST_COLUMNS

    AT_RISK_COLUMNS, WINBACK_COLUMNS = LIST_COLUMNS["at_risk"], LIST_COLUMNS["winback"]

    out = pipeline["outputs"]
    at_risk = pd.read_parquet(out / "at_risk" / f"as_of={SCORING_AS_OF}" / "at_risk.parquet")
    winback = pd.read_parquet(out / "winback" / f"as_of={SCORING_AS_OF}" / "winback.parquet")
    snapshot = read_snapshots(pipeline["folder"] / "features" / f"snapshot_{SCORING_AS_OF}")
    consent = pd.read_parquet(pipeline["folder"] / "validated" / "customers.parquet").set_index("customer_id")
    # published: customers of the snapshot, on one list only, all with marketing consent, 10% control
    assert set(at_risk["customer_id"]) | set(winback["customer_id"]) <= set(snapshot["customer_id"])
    assert set(at_risk["customer_id"]).isdisjoint(winback["customer_id"])
    published = pd.concat([at_risk, winback])
    assert consent.loc[published["customer_id"], "marketing_consent"].astype(bool).all()
    assert set(published["contact_group"]) == {"treatment", "control"}
    assert 0.05 < (published["contact_group"] == "control").mean() < 0.15
    # the ready exports beside each list: no control customer in a file that contacts people
    exports = out / "at_risk" / f"as_of={SCORING_AS_OF}" / "exports"
    crm = pd.read_csv(exports / "crm.csv")
    control = set(at_risk.loc[at_risk["contact_group"] == "control", "customer_id"])
    assert set(crm["customer_id"]) == set(at_risk["customer_id"]) - control and control
    excel = pd.read_csv(exports / "excel.csv", encoding="utf-8-sig")
    assert (exports / "excel.csv").read_bytes().startswith(b"\xef\xbb\xbf") and set(excel["contact_group"]) == {
        "treatment"}
    assert len(pd.read_csv(exports / "audit.csv")) == len(at_risk)
    assert set(at_risk["campaign_id"]) == {f"retention-at_risk-{SCORING_AS_OF}"}
    # selected for a positive expected net value (a fraction of a cent is published as 0.00)
    assert (at_risk["expected_net_value"] >= 0).all() and at_risk["recommended_action"].notna().all()
    # the at-risk list holds the medium and high tiers only, and the summary counts the same customers
    assert set(at_risk["risk_tier"]) <= {"high", "medium"} and (at_risk["churn_probability"] >= 0.3).all()
    meta = json.loads((out / "at_risk" / f"as_of={SCORING_AS_OF}" / "run.json").read_text())
    assert meta["at_risk_customers"] == meta["campaigns"]["at_risk"]["candidates"]
    # money in the base currency's minor unit, named; no next order date for a customer likelier gone than not
    assert set(published["currency"]) == {"USD"}
    for column in ("predicted_cltv", "value_at_risk", "expected_net_value", "cost_per_contact"):
        values = at_risk[column].dropna()
        assert ((values * 100).round() - values * 100).abs().max() < 1e-6, column
    assert at_risk.loc[at_risk["churn_probability"] >= 0.5, "expected_next_order_date"].isna().all()
    assert at_risk.loc[at_risk["churn_probability"] < 0.5, "expected_next_order_date"].notna().all()
    assert [c for c in at_risk.columns if c in AT_RISK_COLUMNS] == AT_RISK_COLUMNS
    assert [c for c in winback.columns if c in WINBACK_COLUMNS] == WINBACK_COLUMNS
    assert at_risk["value_at_risk"].is_monotonic_decreasing
    assert list(at_risk["rank"]) == list(range(1, len(at_risk) + 1))
    assert winback["expected_winback_value"].is_monotonic_decreasing
    assert ((at_risk["churn_probability"] > 0) & (at_risk["churn_probability"] < 1)).all()
    # each rounded to the cent: at most a cent apart
    assert (at_risk["value_at_risk"] - at_risk["churn_probability"] * at_risk["predicted_cltv"]).abs().max() <= 0.01
    assert (pd.to_datetime(at_risk["expected_next_order_date"]).dropna() >= pd.Timestamp(SCORING_AS_OF)).all()
    # plain-language reasons from the churn model's SHAP values, in the customer's language
    top = at_risk.head(20)
    assert top["reason_1"].notna().all() and top["reason_1"].str.len().gt(10).all()
    czech = at_risk[at_risk["country"] == "CZ"].head(5)
    assert len(czech) and czech["reason_1"].str.contains("ů|á|í|é|ý|č|ř|ž|š").all()
    assert winback["reason_1"].notna().mean() > 0.9
    # one language per row, the one of the customer's country; reasons and actions in it (Hebrew: its script)
    from serving.reasons import load_reasons

    for frame in (at_risk, winback):
        assert (frame["language"] == frame["country"].map(load_reasons().language_for)).all()
        hebrew = frame[frame["language"] == "he"]
        for column in ("reason_1", "recommended_action"):
            assert hebrew[column].str.contains("[\u0590-\u05ff]").all(), hebrew[column]
    # the whole-list check over every published row (serving.explain.audit_reasons): no reason contradicts the
    # score, none is trivia or another model's output, no fact twice, no "0 times", "-35 days", "1 orders", "0%"
    assert set(meta["reason_audit"]) == {"at_risk", "winback"}
    assert {name: {k: v for k, v in counts.items() if v} for name, counts in meta["reason_audit"].items()} == {
        "at_risk": {}, "winback": {}}
    texts = pd.concat([published[c] for c in ("reason_1", "reason_2", "reason_3")]).dropna()
    assert not texts.str.contains("chance that they still buy|Expected to order|buying history spans").any()
    champions = champion_versions(load_config(pipeline["config"]))
    assert set(at_risk["churn_model_version"]) == {champions["churn-classifier"]} == {"1"}
    pointer = json.loads((out / "at_risk" / "latest.json").read_text())
    assert pointer["as_of"] == SCORING_AS_OF and pointer["rows"] == len(at_risk)
    csv = pd.read_csv(out / "at_risk" / f"as_of={SCORING_AS_OF}" / "at_risk.csv", dtype={"churn_model_version": str})
    assert list(csv["customer_id"]) == list(at_risk["customer_id"])
    assert "customers scored" in pipeline["first"].output and "at_risk list:" in pipeline["first"].output
    # drift of this run against each champion's training snapshots (nearest cutoff, and per market), in run.json, the MLflow monitoring run
    # and the KPI report
    drift = meta["drift"]
    assert drift["warn_psi"] == 0.1 and drift["alert_psi"] == 0.25
    assert set(drift["models"]) == set(champions) - {n for n, v in champions.items() if v is None}
    churn = drift["models"]["churn-classifier"]
    assert churn["reference"] and churn["rows"] == meta["active_customers"]
    assert {c["column"] for c in churn["columns"]} >= {"days_since_last_purchase", "score"}
    assert all(c["psi"] is None or c["psi"] >= 0 for c in churn["columns"])
    from mlflow import MlflowClient

    from models.tracking import _mlflow

    _mlflow(load_config(pipeline["config"]))
    runs = MlflowClient().search_runs([MlflowClient().get_experiment_by_name("churn-pipeline").experiment_id],
                                      "tags.kind = 'monitoring'")
    assert runs and "psi.churn-classifier.days_since_last_purchase" in runs[0].data.metrics
    report = (out / "reports" / f"as_of={SCORING_AS_OF}" / "report.html").read_text()
    assert "Drift of the scored customers" in report and "churn-classifier" in report


def test_an_unchanged_rerun_publishes_identical_lists_and_keeps_the_champions(pipeline):
    from common.config import load_config
    from models.tracking import list_versions

    assert pipeline["digests_first"] == pipeline["digests_second"]
    assert any(name.endswith("at_risk.csv") for name in pipeline["digests_first"])
    assert "sql:at_risk_latest" in pipeline["digests_first"]  # the SQL copy is identical too
    assert "not retrained" in pipeline["second"].output
    versions = list_versions(load_config(pipeline["config"]))
    assert {r["version"] for r in versions} == {"1"}  # nothing new registered, nothing promoted
    # the run metadata is what differs: a new flow run
    run_json = json.loads((pipeline["outputs"] / "at_risk" / f"as_of={SCORING_AS_OF}" / "run.json").read_text())
    assert run_json["flow_run_id"] != json.loads(pipeline["run_json_first"])["flow_run_id"]


def test_scoring_after_the_data_is_refused_before_anything_runs_unless_forced(pipeline):
    """`churn score --as-of 2030-01-01` on data that ends in 2026: one line, and the published lists stay."""
    before = _digests(pipeline["outputs"])
    refused = runner.invoke(app, ["score", "--as-of", "2030-01-01", "--config", str(pipeline["config"])])
    assert refused.exit_code == 2, _failure(refused)
    assert "cannot score as of 2030-01-01: the data ends on 2026-10-31" in refused.output
    assert "--force-as-of" in refused.output and "Traceback" not in refused.output
    assert _digests(pipeline["outputs"]) == before
    forced = runner.invoke(app, ["score", "--as-of", "2030-01-01", "--force-as-of", "--dry-run", "--config",
                                 str(pipeline["config"])])
    assert forced.exit_code == 0, _failure(forced)
    assert "dry run: nothing published" in forced.output and _digests(pipeline["outputs"]) == before


def test_block_on_drift_publishes_nothing_when_an_alert_fires(pipeline, tmp_path):
    """With `scoring.block_on_drift` and thresholds every column reaches, the run refuses to publish, names the
    columns, and the published lists (and the KPI report) stay as they were."""
    settings = yaml.safe_load(pipeline["config"].read_text())
    settings["scoring"] = {"block_on_drift": True, "drift_warn_psi": 1e-9, "drift_alert_psi": 1e-9}
    settings["targeting"] = {"min_tier": "high"}  # the new lists would differ: an overwrite would show
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump(settings))
    before = _digests(pipeline["outputs"])
    refused = runner.invoke(app, ["score", "--config", str(strict)])
    assert refused.exit_code == 2, _failure(refused)
    out = " ".join(refused.output.split())
    assert "error: drift alert on churn-classifier: " in out and "(scoring.block_on_drift is true)" in out
    assert "the last published lists are unchanged" in out and "Traceback" not in out
    assert _digests(pipeline["outputs"]) == before


@pytest.mark.parametrize("point", ["score.after_scoring", "publish.after_staging", "publish.sql_after_first_list",
                                   "publish.after_first_list"])
def test_an_injected_failure_leaves_the_published_lists_untouched(pipeline, point, monkeypatch, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    # other scoring settings: the new lists would differ (another run id), so an overwrite would show
    settings = yaml.safe_load(pipeline["config"].read_text())
    settings["targeting"] = {"min_tier": "high"}
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(settings))
    before = _digests(pipeline["outputs"])
    monkeypatch.setenv("CHURN_FAIL_AT", point)
    failed = runner.invoke(app, ["score", "--config", str(other)])
    assert failed.exit_code == 2, _failure(failed)
    assert f"scoring failed: InjectedFailure: failure injected at {point}" in failed.output
    assert "The previously published lists are unchanged" in failed.output
    assert "Traceback" not in failed.output  # Prefect's log lines without their tracebacks (only with --debug)
    assert _digests(pipeline["outputs"]) == before
    from serving.publish import STORE, current_version

    assert not [p for p in pipeline["outputs"].rglob(".*") if p.suffix != ".lock" and p.name != STORE]
    assert list((pipeline["outputs"] / STORE).iterdir()) == [current_version(pipeline["outputs"])]  # no leftovers
    assert not list(pipeline["outputs"].glob("lists.db-*"))  # no open SQLite journal
    with get_client(sync_client=True) as client:
        latest = client.read_flow_runs(limit=1, sort=FlowRunSort.EXPECTED_START_TIME_DESC)[0]
    assert latest.state.is_failed()
    monkeypatch.delenv("CHURN_FAIL_AT")
    rerun = runner.invoke(app, ["score", "--config", str(other)])
    assert rerun.exit_code == 0, _failure(rerun)
    assert _digests(pipeline["outputs"]) != before
    restore = runner.invoke(app, ["score", "--config", str(pipeline["config"])])  # back to the module's settings
    assert restore.exit_code == 0 and _digests(pipeline["outputs"]) == before


def test_each_flow_runs_on_its_own(pipeline):
    from pipelines import flows

    args = {"config_path": str(pipeline["config"])}
    reports = flows.ingest(**args)
    assert reports["transactions"]["kept"] > 0 and set(reports) >= {"transactions", "customers"}
    built = flows.build_features(**args)
    assert Path(built["scoring"]).name == f"snapshot_{SCORING_AS_OF}" and Path(built["training"]).exists()
    trained = flows.train(**args)
    from models.catalog import names

    assert trained["cached"] and {m["model"] for m in trained["models"]} == set(names())  # every model trained
    dry = flows.train(**args, dry_run=True)
    assert dry["dry_run"] and Path(dry["report"]).exists()
    before = _digests(pipeline["outputs"])
    scored = flows.score(**args, as_of=dt.date(2026, 10, 1), dry_run=True)  # another cutoff, not published
    assert scored["as_of"] == "2026-10-01" and scored["published"] == {}
    assert scored["customers_scored"] > 0 and _digests(pipeline["outputs"]) == before
    # every flow ends with a markdown summary
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey

    keys = ["ingest-summary", "features-summary", "train-summary", "score-summary", "churn-pipeline-summary"]
    with get_client(sync_client=True) as client:
        latest = {a.key: a.data for a in client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=keys)))}
    assert set(latest) == set(keys)
    # a dry run is named and tagged as one; a real run is not
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    with get_client(sync_client=True) as client:
        dry_runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["dry-run"])))
        every = client.read_flow_runs()
    assert len(dry_runs) >= 2 and all(r.name.startswith("dry-run-") for r in dry_runs)  # train and score
    assert all(not r.name.startswith("dry-run-") for r in every if "dry-run" not in r.tags)
    assert "### Backtest" in latest["train-summary"] and "| churn | roc_auc |" in latest["train-summary"]
    assert "| customers scored |" in latest["score-summary"] and "(dry run)" in latest["score-summary"]
    assert "not retrained" in latest["churn-pipeline-summary"] and "| transactions |" in latest["ingest-summary"]


def test_a_past_run_s_scores_are_judged_once_their_outcome_is_known(pipeline):
    """Scores published at 2026-07-01 (churn window closed by the data's last day 2026-10-31; CLTV's 365 days not):
    the next run judges them against what happened, into the history, MLflow's monitoring run and the report."""
    from common.config import load_config
    from models.catalog import get
    from pipelines import jobs

    cfg = load_config(pipeline["config"])
    past = runner.invoke(app, ["score", "--as-of", "2026-07-01", "--config", str(pipeline["config"])])
    assert past.exit_code == 0, _failure(past)
    record = jobs.records_dir(cfg) / "as_of=2026-07-01"
    scores = pd.read_parquet(record / "scores.parquet")
    meta = json.loads((record / "record.json").read_text())
    churn = get("churn-classifier")
    # every scored customer, not only the listed ones, and the backtest its champion was promoted on
    listed = pd.read_parquet(pipeline["outputs"] / "at_risk" / "as_of=2026-07-01" / "at_risk.parquet")
    assert len(scores) == meta["customers"] > len(listed)
    assert set(scores.loc[scores["at_risk_group"].notna(), "customer_id"]) == set(listed["customer_id"])
    assert 0.5 < meta["champions"][churn.name]["backtest"]["roc_auc"] <= 1
    now = runner.invoke(app, ["score", "--config", str(pipeline["config"])])
    assert now.exit_code == 0, _failure(now)
    assert "live performance of past runs" in now.output
    history = pd.read_parquet(jobs.live_dir(cfg) / "live_performance.parquet")
    past_rows = history[history["as_of"] == "2026-07-01"].set_index("model")
    assert churn.name in past_rows.index and get("cltv-regressor").name not in past_rows.index
    row = past_rows.loc[churn.name]
    assert row["evaluated"] == (scores[churn.score_column].notna()).sum() and 0.5 < row["roc_auc"] <= 1
    assert row["backtest"] == meta["champions"][churn.name]["backtest"]["roc_auc"]
    assert row["list_customers"] == len(listed) and 0 <= row["list_precision"] <= 1
    report = (pipeline["outputs"] / "reports" / f"as_of={SCORING_AS_OF}" / "report.html").read_text()
    assert "Live performance of past scoring runs" in report and "<td>2026-07-01</td>" in report
    assert "outcome known from" in report  # the CLTV model's window of 2026-07-01 is still open
    from mlflow import MlflowClient

    from models.tracking import tracking_uri

    client = MlflowClient(tracking_uri(cfg))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              "tags.kind = 'monitoring'", order_by=["attributes.start_time DESC"], max_results=1)
    steps = client.get_metric_history(runs[0].info.run_id, f"live.{churn.name}.roc_auc")
    assert [(m.step, m.value) for m in steps] == [(20260701, pytest.approx(row["roc_auc"]))]


def _strings_in_data(folder: Path, skip: tuple[str, ...]) -> tuple[set[str], bytes]:
    """Every string cell of every Parquet file and the bytes of every other file under ``folder``, except the
    paths that contain one of ``skip``."""
    cells, blobs = set(), []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if any(part in str(path) for part in skip):
            continue
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
            for column in frame.columns:
                if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
                    cells.update(frame[column].dropna().astype(str))
        else:
            blobs.append(path.read_bytes())
    return cells, b"\n".join(blobs)


def test_pii_never_leaves_ingestion(pipeline):
    """E-mail, name and phone stay in validated/customer_contacts.parquet: not in features, lists, MLflow
    artefacts, Prefect results or the run logs."""
    contacts = pd.read_parquet(pipeline["folder"] / "raw" / "customers.parquet", columns=["email", "name", "phone"])
    values = {str(v) for v in contacts.head(300).to_numpy().ravel() if isinstance(v, str) and len(v) > 5}
    assert len(values) > 100
    cells, blobs = _strings_in_data(pipeline["folder"], skip=("/raw/", "customer_contacts.parquet"))
    assert not values & cells
    found = [v for v in values if v.encode() in blobs]
    assert not found, found[:3]
    logs = pipeline["first"].output + pipeline["second"].output
    assert not [v for v in values if v in logs]


def test_forget_removes_every_trace_and_later_runs_honour_it(pipeline):
    out = pipeline["outputs"]
    at_risk = pd.read_parquet(out / "at_risk" / f"as_of={SCORING_AS_OF}" / "at_risk.parquet")
    winback = pd.read_parquet(out / "winback" / f"as_of={SCORING_AS_OF}" / "winback.parquet")
    gone = [at_risk["customer_id"].iloc[0], winback["customer_id"].iloc[0]]
    result = runner.invoke(app, ["forget", *gone, "--config", str(pipeline["config"])])
    assert result.exit_code == 0, _failure(result)
    assert "at_risk" in result.output and "2 on the suppression list" in result.output

    def traces() -> list[str]:
        cells, blobs = _strings_in_data(pipeline["folder"], skip=("/raw/", "/prefect/"))
        return [c for c in gone if c in cells or c.encode() in blobs]

    assert traces() == []
    assert json.loads((out / "at_risk" / "latest.json").read_text())["rows"] == len(at_risk) - 1
    rerun = runner.invoke(app, ["run", "--config", str(pipeline["config"])])  # the raw data still has them
    assert rerun.exit_code == 0, _failure(rerun)
    assert traces() == [] and "of forgotten customers dropped" not in rerun.output  # (logged by Prefect only)
    assert not (set(gone) & set(pd.read_parquet(out / "at_risk" / f"as_of={SCORING_AS_OF}" / "at_risk.parquet")[
        "customer_id"]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, body: dict | None = None):
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_churn_schedule_fires_a_scheduled_scoring_run_and_stops_cleanly(pipeline, tmp_path):
    """`churn schedule` starts its own Prefect server on loopback, serves the scoring deployment every 5 s; a run
    fires and completes; SIGTERM stops the runner and the server."""
    port = _free_port()
    settings = yaml.safe_load(pipeline["config"].read_text())
    settings["schedule"] = {"score": {"interval_seconds": 5}, "train": {"cron": "0 3 1 * *"}, "server_port": port}
    config = tmp_path / "schedule.yaml"
    config.write_text(yaml.safe_dump(settings))
    env = {**os.environ, "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2", "PREFECT_RUNNER_POLL_FREQUENCY": "2",
           "PREFECT_HOME": str(tmp_path / "prefect-home")}
    env.pop("PREFECT_API_URL", None)
    log = tmp_path / "schedule.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("churn")), "schedule", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    completed = None
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and completed is None and proc.poll() is None:
            time.sleep(3)
            try:
                runs = _get(f"{api}/flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
                                                        "limit": 5})
            except OSError:
                continue  # the server is still starting
            completed = next((r for r in runs if r.get("deployment_id")), None)
        assert completed is not None, log.read_text()[-3000:]
        deployment = _get(f"{api}/deployments/{completed['deployment_id']}")
        assert deployment["name"] == "score"
        assert completed["auto_scheduled"]  # created by the schedule, not by hand
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(timeout=90)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "stopped serving; schedules paused" in text
    with pytest.raises(OSError):  # the server it started is gone
        _get(f"{api}/health")


def test_prefect_yaml_declares_the_served_deployments_with_the_configured_schedules():
    from common.config import load_config
    from pipelines import flows

    declared = yaml.safe_load((Path(__file__).parents[2] / "prefect.yaml").read_text())
    schedule = load_config().schedule
    by_name = {d["name"]: d for d in declared["deployments"]}
    assert set(by_name) == {"score", "train"}
    for name in ("score", "train"):
        deployment = by_name[name]
        module, function = deployment["entrypoint"].split(":")
        assert module == "pipelines.flows" and getattr(flows, function).name == name  # importable when installed
        entry = getattr(schedule, name)
        assert deployment["schedules"] == [{"cron": entry.cron, "timezone": schedule.timezone}]


@pytest.mark.slow
def test_churn_run_on_spark_publishes_the_lists_duckdb_publishes(pipeline, tmp_path_factory, generated):
    """`churn run --engine spark` from nothing: features on Spark (local[2]), written by the executors, training on
    that stack, scores and TreeSHAP reasons on the executors, the same publisher. Its lists are those DuckDB's run
    first published: the same customers in the same order, probabilities within 1e-9, every other column equal
    (the run id names the engine's snapshot). Last in this module: its run's artifacts become the latest ones,
    which the tests above read as the fixture's."""
    from features.synthetic.simulate import TABLES
    from serving.lists import LISTS

    folder = tmp_path_factory.mktemp("spark_run")
    shutil.copytree(generated, folder / "raw")
    config = write_config(folder, {name: {"source": {"path": f"raw/{name}.parquet"}} for name in TABLES},
                          as_of=GENERATED_AS_OF.isoformat())
    result = runner.invoke(app, ["run", "--engine", "spark", "--config", str(config)])
    assert result.exit_code == 0, _failure(result)
    for name in ("training_snapshots", f"snapshot_{SCORING_AS_OF}"):
        assert json.loads((folder / "features" / name / "metadata.json").read_text())["engine"] == "spark"
    for spec in LISTS:
        path = Path(spec.name) / f"as_of={SCORING_AS_OF}" / f"{spec.name}.parquet"
        duck, spark = pipeline["lists_first"][spec.name], pd.read_parquet(folder / "outputs" / path)
        assert len(duck) > 20 and list(spark.columns) == list(duck.columns)
        assert spark["customer_id"].tolist() == duck["customer_id"].tolist()
        numbers = [c for c in duck.columns if pd.api.types.is_float_dtype(duck[c])]
        assert spec.probability in numbers
        pd.testing.assert_frame_equal(spark[numbers], duck[numbers], check_exact=False, rtol=1e-9, atol=1e-9)
        others = [c for c in duck.columns if c not in numbers and c != "run_id"]
        assert {"reason_1", "shap_contributions", "contact_group"} <= set(others)
        pd.testing.assert_frame_equal(spark[others], duck[others])
        assert spark["run_id"].nunique() == 1 and spark["run_id"].iloc[0] != duck["run_id"].iloc[0]
