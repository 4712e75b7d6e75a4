"""Commands that run no flow never start (or import) Prefect (issue 21): the modules behind `churn models`,
`promote`, `features`, `backtest`, `validate`, `users`, `serve` and `forget` import without it, and `churn models`
and `churn users list` run to the end in a fresh interpreter without it; the registry listing imports no
estimator library. The flow commands (`run`, `train`,
`score`, `schedule`) import it only inside their bodies."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import write_config

ROOT = Path(__file__).resolve().parents[2]

# what the commands without a flow import in their bodies (pipelines/cli.py)
NON_FLOW_MODULES = ("pipelines.cli", "pipelines.jobs", "pipelines.summaries", "models.tracking", "models.training",
                    "models.backtest", "models.preflight", "features.ingest", "features.snapshots", "serving.app", "serving.users",
                    "serving.forget", "serving.publish", "common.config")


def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def test_the_modules_of_the_commands_without_a_flow_do_not_import_prefect():
    done = _fresh(f"""
        import importlib, sys
        for name in {NON_FLOW_MODULES!r}:
            importlib.import_module(name)
        print(sorted(m for m in sys.modules if m == "prefect" or m.startswith("prefect.")))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_registry_listing_imports_no_estimator_library():
    # `churn models` reads the catalogue and MLflow's registry: LightGBM, scikit-learn, SciPy, Ibis and pandera
    # (seconds of imports) wait until something trains, scores or builds features
    done = _fresh("""
        import sys
        import models.tracking, pipelines.cli
        print(sorted(m for m in ("lightgbm", "sklearn", "scipy", "ibis", "pandera", "prefect") if m in sys.modules))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_churn_models_and_users_list_run_without_prefect(tmp_path):
    config = write_config(tmp_path, {"transactions": {"source": {"path": "raw/transactions.parquet"}}})
    done = _fresh(f"""
        import sys
        from typer.testing import CliRunner
        from pipelines.cli import app

        for command in (["models"], ["users", "list"]):
            result = CliRunner().invoke(app, [*command, "--config", {str(config)!r}])
            assert result.exit_code == 0, result.output
            print(result.output)
        print("prefect imported:", "prefect" in sys.modules)
    """)
    assert done.returncode == 0, done.stderr
    assert "no registered models yet" in done.stdout and "prefect imported: False" in done.stdout
