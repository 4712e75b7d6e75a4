"""The installable tool: the wheel, installed with the locked requirements into a fresh virtual environment outside
the checkout, starts a project with `churn init` and runs the pipeline on it from its own shipped files; Prefect
loads the flows of prefect.yaml's entrypoints from the installed package.

The user's steps, in a temporary folder outside the repository: `churn init proj`; edit proj/config.yaml (the
tables' sources point at Parquet files under raw/, the commented example tables are uncommented, as_of is set to
the data's date); then, inside proj (``data_dir: .`` is the folder churn runs in), `churn generate` writes the
synthetic retailer into raw/ (the config's raw_dir), `churn validate` and `churn run --dry-run` (with no champion
yet, the dry run scores with the models it trained and registers and publishes nothing).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from common.config import TABLE_NAMES
from tests.conftest import _QUIET
from tests.test_starter import enable_table

ROOT = Path(__file__).resolve().parent.parent
AS_OF = "2026-11-01"  # the generated data's as-of date

# what a worker does with prefect.yaml: run the pull steps (only set_working_directory here; no blocks or
# variables, so the templates are the environment's), then import each deployment's entrypoint
LOAD_ENTRYPOINTS = textwrap.dedent("""
    import inspect, json, os, sys
    import yaml
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.importtools import import_object
    from prefect.utilities.templating import apply_values

    spec = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
    for step in spec["pull"]:
        (fqn, inputs), = step.items()
        import_object(fqn)(**apply_values(inputs, os.environ))
    flows = {}
    for deployment in spec["deployments"]:
        loaded = load_flow_from_entrypoint(deployment["entrypoint"], use_placeholder_flow=False)
        flows[deployment["name"]] = {"flow": loaded.name, "file": inspect.getsourcefile(loaded.fn),
                                     "parameters": deployment["parameters"]}
    print(json.dumps({"cwd": os.getcwd(), "flows": flows}))
""")


def _uv() -> str:
    local = ROOT / ".tools" / "bin" / "uv"  # where `make venv` installs it
    found = str(local) if local.exists() else shutil.which("uv")
    assert found is not None, "uv is not installed: run `make venv` (it puts uv in .tools/bin)"
    return found


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "CHURN_CONFIG", "CHURN_FAIL_AT", "PREFECT_API_URL",
                        "UV_PROJECT_ENVIRONMENT")}
    return {**env, **_QUIET, "PREFECT_HOME": str(tmp / "prefect-home"), "UV_PYTHON_DOWNLOADS": "never",
            "NO_COLOR": "1"}


def _run(args: list, cwd: Path, env: dict, timeout: float) -> str:
    """Run a command; fail with its output unless it exits with 0; return its stdout and stderr."""
    start = time.perf_counter()
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    shown = " ".join(str(a).strip().splitlines()[0][:60] for a in args[:4])
    print(f"{time.perf_counter() - start:6.1f} s  {shown}", file=sys.stderr)  # seen with pytest -s
    assert proc.returncode == 0, f"{args} exited with {proc.returncode}:\n{output[-4000:]}"
    return output


def _flat(text: str) -> str:
    """Output with rich's line wrapping and table borders undone."""
    return " ".join(re.sub("[\u2500-\u257f]", " ", text).split())


@pytest.mark.slow
def test_the_installed_wheel_starts_a_project_and_runs_the_pipeline_outside_the_checkout(tmp_path):
    assert ROOT not in tmp_path.parents
    uv, env = _uv(), _env(tmp_path)
    had_dist = (ROOT / "dist").exists()

    # build and install: the wheel plus the locked third-party requirements, into a fresh venv
    _run([uv, "build", "--wheel", "--out-dir", tmp_path / "dist"], ROOT, env, 300)
    wheel, = (tmp_path / "dist").glob("churn_pipeline-*.whl")
    requirements = tmp_path / "requirements.txt"
    _run([uv, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes", "--quiet",
          "--output-file", requirements], ROOT, env, 120)
    venv = tmp_path / "venv"
    _run([uv, "venv", "--python", "python3.11", venv], tmp_path, env, 120)
    python, churn = venv / "bin" / "python", venv / "bin" / "churn"
    _run([uv, "pip", "install", "--python", python, "-r", requirements, wheel], tmp_path, env, 600)
    assert (ROOT / "dist").exists() == had_dist  # nothing was built into the repository

    work = tmp_path / "work"
    work.mkdir()
    where = _run([python, "-c", "import common, configs, pipelines; from common.config import DEFAULT_CONFIG; "
                                "print(common.__file__, configs.__file__, pipelines.__file__, DEFAULT_CONFIG)"],
                 work, env, 60).split()
    assert all(Path(p).is_relative_to(venv) for p in where), where  # the installed package, not the checkout
    assert Path(where[-1]).is_file()

    # the user's steps
    assert "Start a project for your own data" in _run([churn, "--help"], work, env, 60)
    started = _flat(_run([churn, "init", "proj"], work, env, 60))
    assert "wrote proj/config.yaml, proj/playbooks.yaml, proj/reasons.yaml" in started
    assert "churn validate --config config.yaml" in started
    project = work / "proj"
    config = project / "config.yaml"
    text = config.read_text(encoding="utf-8")
    for table in TABLE_NAMES:
        if table != "transactions":
            text = enable_table(text, table)
    text = text.replace(".csv}", ".parquet}").replace("as_of: null ", f"as_of: {AS_OF}", 1)
    config.write_text(text, encoding="utf-8")

    generated = _flat(_run([churn, "generate", "--customers", "1500", "--seed", "7", "--config", "config.yaml"],
                           project, env, 300))
    assert "generated into raw in" in generated and f"data as of {AS_OF}" in generated
    validated = _flat(_run([churn, "validate", "--config", "config.yaml", "--as-of", AS_OF], project, env, 300))
    assert f"validation as of {AS_OF}" in validated and "validated tables in validated" in validated
    assert all(f"{table} " in validated for table in TABLE_NAMES)
    ran = _flat(_run([churn, "run", "--dry-run", "--config", "config.yaml"], project, env, 900))
    assert "nothing registered" in ran and "no champion yet: the dry run scored with churn-classifier" in ran
    assert f"batch scoring as of {AS_OF}" in ran and "customers scored" in ran and "dry run: nothing published" in ran
    assert "pipeline finished in" in ran
    assert not (project / "outputs" / "at_risk").exists()  # nothing published
    assert (project / "outputs" / "backtest").is_dir() and (project / "validated").is_dir()
    assert not (work / "data").exists()  # everything under the project
    registry = _run([churn, "models", "--config", "config.yaml"], project, env, 120)
    assert "no registered models yet" in registry  # nothing registered

    # a Prefect worker's view of prefect.yaml (kept beside the project, outside the checkout)
    shutil.copy(ROOT / "prefect.yaml", work / "prefect.yaml")
    loaded = json.loads(_run([python, "-c", LOAD_ENTRYPOINTS, "prefect.yaml"], work,
                             {**env, "CHURN_PROJECT_DIR": str(project)}, 120).splitlines()[-1])
    assert Path(loaded["cwd"]) == project
    assert {name: f["flow"] for name, f in loaded["flows"].items()} == {"score": "score", "train": "train"}
    assert all(Path(f["file"]) == venv / "lib" / "python3.11" / "site-packages" / "pipelines" / "flows.py"
               for f in loaded["flows"].values())
    assert all(f["parameters"]["config_path"] is None for f in loaded["flows"].values())  # $CHURN_CONFIG
