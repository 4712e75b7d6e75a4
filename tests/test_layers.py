"""The architecture as a test: no stage imports a later one, domain code never imports Prefect, and one module
talks to MLflow."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAGES = ["common", "features", "models", "serving", "pipelines"]  # each may import only itself and earlier ones


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _modules(stage: str) -> list[Path]:
    return sorted((ROOT / stage).rglob("*.py"))


@pytest.mark.parametrize("stage", STAGES)
def test_no_stage_imports_a_later_one(stage):
    later = set(STAGES[STAGES.index(stage) + 1:])
    wrong = {f"{p.relative_to(ROOT)} imports {name}" for p in _modules(stage) for name in _imports(p)
             if name.split(".")[0] in later}
    assert not wrong, sorted(wrong)


def test_domain_code_never_imports_prefect_and_one_module_talks_to_mlflow():
    domain = [p for stage in ("common", "features", "models", "serving") for p in _modules(stage)]
    prefect = [str(p.relative_to(ROOT)) for p in domain if any(n.split(".")[0] == "prefect" for n in _imports(p))]
    assert not prefect
    mlflow = [str(p.relative_to(ROOT)) for stage in STAGES for p in _modules(stage)
              if any(n.split(".")[0] == "mlflow" for n in _imports(p))]
    assert mlflow == ["models/tracking.py"]
