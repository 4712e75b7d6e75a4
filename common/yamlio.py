"""YAML settings files read into pydantic models, with errors that name the file, the key and the problem."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from common.errors import ConfigError


def validation_problems(exc: ValidationError) -> str:
    """Every problem of a pydantic validation error as ``'key.path': message`` (or ``unknown key``), joined."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown key '{where}'")
        else:
            problems.append(f"'{where}': {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)


def load_yaml_model(path: str | Path, model: type[BaseModel], what: str):
    """Read the YAML file ``path`` into the pydantic ``model``; errors name the file, the key and the problem."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {validation_problems(exc)}") from None
