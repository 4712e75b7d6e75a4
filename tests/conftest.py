"""Shared fixtures. Tests run offline and quietly (../shared/ENVIRONMENT.md) with fixed seeds."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import pytest
import yaml

_QUIET = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "MPLCONFIGDIR": tempfile.mkdtemp(prefix="mpl-"),
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "PREFECT_HOME": tempfile.mkdtemp(prefix="prefect-home-"),  # never ~/.prefect
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}
os.environ.pop("PREFECT_API_URL", None)  # flows run against a temporary local API
os.environ.pop("CHURN_FAIL_AT", None)
os.environ.update(_QUIET)
os.environ.pop("CHURN_CONFIG", None)

GENERATED_AS_OF = dt.date(2026, 11, 1)


def write_config(folder: Path, tables: dict, **settings) -> Path:
    """Write a config YAML with ``tables`` (name -> table config) and other top-level ``settings``."""
    data = {"data_dir": str(folder), "tables": tables, **settings}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> Path:
    """A small generated retailer (1,500 customers, seed 7): the raw folder, with truth/ inside."""
    from features.synthetic.simulate import generate

    out = tmp_path_factory.mktemp("generated") / "raw"
    generate(out, n_customers=1_500, seed=7)
    return out


@pytest.fixture(scope="session")
def generated_config(generated: Path) -> Path:
    """A config reading every table of the ``generated`` data."""
    from features.synthetic.simulate import TABLES

    folder = generated.parent
    tables = {name: {"source": {"path": f"raw/{name}.parquet"}} for name in TABLES}
    return write_config(folder, tables, as_of=GENERATED_AS_OF.isoformat())


@pytest.fixture(scope="session")
def validated_dir(generated_config) -> Path:
    """The ``generated`` data, validated: ``<folder>/validated``."""
    from common.config import load_config
    from features.ingest import ingest

    cfg = load_config(generated_config)
    ingest(cfg, GENERATED_AS_OF, run_id="fixture")
    return cfg.validated_dir



@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server on 127.0.0.1 (:func:`tests.postgres.local_postgres`), stopped and deleted
    after the session: a function that creates a new, empty database and returns its SQLAlchemy URL."""
    from tests.postgres import PostgresMissing, local_postgres

    try:
        with local_postgres() as database:
            yield database
    except PostgresMissing as exc:
        pytest.fail(str(exc))
