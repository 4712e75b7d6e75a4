"""Settings that keep Prefect and MLflow local, quiet and offline; applied before Prefect is first imported.

Each value is a default: whatever is already in the environment wins, so ``PREFECT_API_URL`` pointing at a server
sends the flows there unchanged (../shared/ENVIRONMENT.md lists why each one is needed).
"""

from __future__ import annotations

import os
from pathlib import Path

QUIET_OFFLINE = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # else the server's heartbeat looks up an external host
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",  # the default is missed on a busy machine
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_LOG_PRINTS": "false",
    "PREFECT_UI_ENABLED": "false",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_LOGGING_LEVEL": "WARNING",  # MLflow's INFO lines would drown the flow logs
}


def configure(data_dir: Path) -> None:
    """Set the defaults; ``PREFECT_HOME`` goes under ``data_dir`` (the temporary API's SQLite database and the
    task cache live there, never in ``~/.prefect``)."""
    for key, value in QUIET_OFFLINE.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("PREFECT_HOME", str((Path(data_dir) / "prefect").resolve()))
    os.environ.setdefault("MPLCONFIGDIR", str((Path(data_dir) / "tmp" / "matplotlib").resolve()))


def notebook_config(config: str | None = None, data_dir: str | None = None):
    """The notebooks' start: the config at ``config`` (None: ``$CHURN_CONFIG``, else the default) with ``data_dir``
    replacing its own when given, read from the project's folder (a kernel started in ``notebooks/`` moves up one,
    since a config's paths are relative to where ``churn`` runs), and :func:`configure` applied. Prints the data
    folder."""
    from common.config import load_config

    if Path.cwd().name == "notebooks":
        os.chdir(Path.cwd().parent)
    cfg = load_config(config, {"data_dir": data_dir})
    configure(cfg.data_dir)
    print(f"data: {cfg.data_dir.resolve()}")
    return cfg
