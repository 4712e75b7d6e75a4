"""`churn report` (issue 20) on the generated fixture: the HTML (self-contained: no script, nothing fetched), the
tables and the JSON summary under <outputs>/reports/as_of=<DATE>/, months and quarters, "no data" instead of 0,
and a failed report that leaves the previous one untouched."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from common.config import load_config
from features.kpis import KPI_COLUMNS
from pipelines.cli import app
from serving.report import FILES

runner = CliRunner()


@pytest.fixture(scope="module")
def reported(generated_config, validated_dir):
    result = runner.invoke(app, ["report", "--config", str(generated_config)])
    assert result.exit_code == 0, result.output
    cfg = load_config(generated_config)
    folder = next((cfg.resolve(cfg.outputs.dir) / "reports").glob("as_of=*"))
    return {"output": result.output, "folder": folder, "cfg": cfg}


def test_the_report_writes_its_files_and_prints_the_headline(reported):
    folder = reported["folder"]
    assert folder.name == "as_of=2026-11-01"  # the day after the fixture's last transaction (October 31)
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    out = " ".join(reported["output"].split())
    assert "retention KPIs, 2026-10" in out and "Churn rate" in out and "report.html" in out
    info = json.loads((folder / "summary.json").read_text())
    assert info["latest_period"] == "2026-10" and len(info["periods"]) == 12 and info["currency"] == "USD"
    head = info["headline"]
    assert set(head) == set(KPI_COLUMNS)
    assert 0 < head["churn_rate"] < 1 and head["customers_start"] > 0 and head["nps"] is not None
    assert head["referral_rate"] is not None  # the generator says how customers were acquired
    assert info["mean_predicted_cltv"] is None  # nothing scored in this folder: no data, not 0
    assert set(info["markets"]) >= {"US", "DE", "CZ"} and "Champions" in info["segments"]
    kpis, csv = pd.read_parquet(folder / "kpis.parquet"), pd.read_csv(folder / "kpis.csv")
    assert list(csv.columns) == list(kpis.columns) and len(csv) == len(kpis)
    assert csv["churn_rate"].to_numpy() == pytest.approx(kpis["churn_rate"].to_numpy(), nan_ok=True)
    assert set(kpis["grouping"]) == {"overall", "market", "segment"}


def test_the_html_is_self_contained_and_says_no_data(reported):
    html = (reported["folder"] / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing fetched from anywhere
    assert html.count('src="data:image/png;base64,') >= 4  # trends and cohort heat maps, embedded
    assert "Retention KPIs as of 2026-11-01" in html and "Headline: 2026-10" in html
    assert 'mean predicted CLTV of the active customers (next 365 days)</td><td class="nodata">no data</td>' in html
    assert "Per market: 2026-10" in html and "Cohort retention" in html


def test_quarters_and_a_failed_report_leave_the_previous_one(reported, monkeypatch):
    from pipelines import jobs
    import serving.report

    cfg, folder = reported["cfg"], reported["folder"]
    before = (folder / "report.html").read_bytes()
    _, info = jobs.report(cfg, period="quarter", periods=4)
    assert info["latest_period"] == "2026-Q3" and info["periods"] == ["2025-Q4", "2026-Q1", "2026-Q2", "2026-Q3"]

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(serving.report, "render_html", broken)
    written = (folder / "report.html").read_bytes()
    with pytest.raises(OSError, match="disk full"):
        jobs.report(cfg)
    assert (folder / "report.html").read_bytes() == written != b""
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    assert before  # the monthly report was there before the quarterly one replaced it
