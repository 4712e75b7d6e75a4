"""The three notebooks run top to bottom on the small generated retailer (tests/conftest.py), executed by nbclient
from their jupytext text in a kernel of this very Python, and show what each is for: the KPI headline and the
cohort and rhythm plots, the models against their baselines and the biggest misses, one customer's reasons and
waterfall. Nothing they write lands in the shared fixture's outputs."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from pathlib import Path

import jupytext
import pytest
import yaml
from nbclient import NotebookClient

from features.snapshots import latest_labeled_cutoff
from models.catalog import MODELS
from serving.lists import LISTS
from tests.conftest import GENERATED_AS_OF, write_config

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
KERNEL = "churn-pipeline-tests"
CELL_TIMEOUT = 600  # seconds; the longest cell re-runs the backtest
# the evaluate notebook re-runs the backtest and a copy of the fixture may have to be trained: a few boosting rounds
# run every line of either at a fraction of the cost
FEW_ROUNDS = {"max_rounds": 25}
FINAL_CHECK = "import sys; print(sys.executable)"


def _trained(config: Path) -> bool:
    """Whether the session's generated data already has champions and a backtest report (tests/models/
    test_training.py trains it; its registry is only read here, never created)."""
    from common.config import load_config
    from models.tracking import champion_versions
    from pipelines import jobs

    cfg = load_config(config)
    if not ((cfg.data_dir / "mlflow" / "mlflow.db").exists() and jobs.default_report_path(cfg).exists()):
        return False
    versions = champion_versions(cfg)
    return all(versions[spec.name] is not None for spec in MODELS if spec.required)


@pytest.fixture(scope="module")
def notebook_config(generated, generated_config, validated_dir, tmp_path_factory) -> Path:
    """A config over trained data for the notebooks: the session's generated data when it is trained already (a
    whole run of the suite), else a copy trained here; its outputs go to a folder of this module (with a copy of
    the backtest reports, which the evaluate notebook compares with), and few boosting rounds."""
    from common.config import load_config
    from features.synthetic.simulate import TABLES
    from pipelines import jobs

    folder = tmp_path_factory.mktemp("notebooks")
    config = generated_config
    if not _trained(generated_config):
        data = folder / "data"
        shutil.copytree(generated, data / "raw")
        shutil.copytree(validated_dir, data / "validated")
        config = write_config(data, {name: {"source": {"path": f"raw/{name}.parquet"}} for name in TABLES},
                              as_of=GENERATED_AS_OF.isoformat(), models=FEW_ROUNDS)
        jobs.train(load_config(config))
    cfg = load_config(config)
    outputs = folder / "outputs"
    shutil.copytree(cfg.resolve(cfg.outputs.dir) / "backtest", outputs / "backtest")
    settings = yaml.safe_load(config.read_text())
    settings["models"] = {**settings.get("models", {}), **FEW_ROUNDS}
    settings["outputs"] = {**settings.get("outputs", {}), "dir": str(outputs)}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


NAMES = ("explore_data", "evaluate_backtest", "explain_customers")


def _execute(name: str) -> dict:
    """Run ``notebooks/<name>.py`` and gather its cells' printed and displayed outputs; a last cell added here
    prints which Python ran them."""
    notebook = jupytext.read(NOTEBOOKS / f"{name}.py")
    notebook.cells.append(jupytext.reads(f"# %%\n{FINAL_CHECK}\n", fmt="py:percent").cells[0])
    NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name=KERNEL,
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                     + o.get("data", {}).get("text/html", "") for o in outputs)
    return {"text": text,
            "stderr": "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stderr"),
            "images": sum("image/png" in o.get("data", {}) for o in outputs),
            "python": notebook.cells[-1].outputs[0].text.strip()}


@pytest.fixture(scope="module")
def executed(notebook_config, tmp_path_factory) -> dict:
    """Every notebook executed with ``CHURN_CONFIG`` set to the notebook config, in a kernel whose spec names
    ``sys.executable`` (nothing found on a PATH or in another Jupyter folder): its outputs, or the error that
    stopped it. The three run side by side, each in its own kernel (a kernel's start and imports are mostly
    waiting on one core)."""
    from concurrent.futures import ThreadPoolExecutor

    jupyter = tmp_path_factory.mktemp("jupyter")
    spec = jupyter / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "churn-pipeline tests", "language": "python"}))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JUPYTER_PATH", str(jupyter))
        env.setenv("CHURN_CONFIG", str(notebook_config))
        for name in ("CHURN_DATA_DIR", "CHURN_BACKTEST_AS_OF", "MPLBACKEND"):  # the notebooks' defaults, inline
            env.delenv(name, raising=False)
        with ThreadPoolExecutor(len(NAMES)) as pool:
            futures = {name: pool.submit(_execute, name) for name in NAMES}
            return {name: (future.exception() or future.result()) for name, future in futures.items()}


@pytest.fixture
def run(executed):
    """``run(name)``: that notebook's outputs (its error, if it stopped, is raised here)."""
    def outputs(name: str) -> dict:
        result = executed[name]
        if isinstance(result, BaseException):
            raise result
        return result
    return outputs


def _ran_cleanly(result: dict) -> None:
    assert result["python"] == sys.executable  # the kernel is this environment's Python
    assert "Warning" not in result["stderr"] and "Traceback" not in result["stderr"], result["stderr"]


def test_explore_data_shows_the_kpis_cohorts_and_purchase_rhythm(run):
    result = run("explore_data")
    _ran_cleanly(result)
    text = result["text"]
    # the headline of the KPI report, read from the report the notebook wrote (as `churn report` does)
    for kpi in ("Churn rate", "Customer retention rate", "Revenue retention", "NPS", "Referral rate"):
        assert kpi in text, kpi
    assert "per market" in text and "per segment" in text
    # trends, markets, the cohort heat map, retention curves, gaps, seasons, churn by rhythm
    assert result["images"] >= 7
    cutoff = latest_labeled_cutoff(GENERATED_AS_OF - dt.timedelta(days=1), 90)  # the data end on 2026-10-31
    assert f"active customers at {cutoff}" in text


def test_evaluate_backtest_compares_models_baselines_and_misses(run):
    result = run("evaluate_backtest")
    _ran_cleanly(result)
    text = result["text"]
    churn = MODELS[0]
    assert "the saved report at" in text  # compared with the report `churn train` wrote
    for column in ("roc_auc", "ece", "top_decile_lift", *(b.name for b in churn.baselines), "oracle"):
        assert column in text, column
    assert "per market and RFM segment" in text and "model - best baseline" in text
    assert "predicted highest above what happened" in text and "predicted lowest below what happened" in text
    # the backtest's own plots (ROC, calibration, gain of each classifier with plots; CLTV deciles), the misses'
    # SHAP values and the score by tenth
    assert result["images"] >= 6


def test_explain_customers_draws_shap_and_one_customers_waterfall(run):
    result = run("explain_customers")
    _ran_cleanly(result)
    text = result["text"]
    for spec in MODELS:
        if spec.required:
            assert spec.name in text  # its champion is listed
    assert "reason" in text and "population median" in text
    # the SHAP summary and importance, the dependence plots, the waterfall, the purchase timeline
    assert result["images"] >= 5
    assert LISTS[0].probability in text  # the customer's row of the list
