"""`churn users` (keys printed once, stored hashed, revoked at once) and `churn ui` (the MLflow and Prefect UIs over
the project's stores, stopped with every child process on Ctrl-C)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from typer.testing import CliRunner

from pipelines.cli import app
from tests.conftest import write_config

runner = CliRunner()


def _config(folder: Path) -> Path:
    return write_config(folder, {"transactions": {"source": {"path": "raw/transactions.parquet"}}})


def test_users_add_list_revoke(tmp_path):
    from serving.users import store_for

    config = _config(tmp_path)
    added = runner.invoke(app, ["users", "add", "ana", "--role", "admin", "--config", str(config)])
    assert added.exit_code == 0, added.output
    key = added.output.strip().splitlines()[-1]
    assert key.startswith("ck_") and "shown only now" in added.output
    store = store_for(tmp_path / "outputs")
    assert store.verify(key).role == "admin"
    listed = runner.invoke(app, ["users", "list", "--config", str(config)])
    assert "ana" in listed.output and "admin" in listed.output and key not in listed.output
    bad = runner.invoke(app, ["users", "add", "bob", "--role", "owner", "--config", str(config)])
    assert bad.exit_code == 2 and "unknown role 'owner'" in bad.output
    assert runner.invoke(app, ["users", "revoke", "ana", "--config", str(config)]).exit_code == 0
    assert store.verify(key) is None
    again = runner.invoke(app, ["users", "revoke", "ana", "--config", str(config)])
    assert again.exit_code == 2 and "no active user named 'ana'" in again.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_churn_ui_starts_both_uis_and_ctrl_c_stops_every_process(tmp_path):
    config = _config(tmp_path)
    mlflow_port, prefect_port = _free_port(), _free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    child = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "ui", "--mlflow-port", str(mlflow_port),
                              "--prefect-port", str(prefect_port), "--config", str(config)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = child.stdout.readline()
            lines.append(line)
            if "Ctrl-C stops both" in line or not line:
                break
        assert any(f"MLflow UI: http://127.0.0.1:{mlflow_port}/" in l for l in lines), lines
        assert any(f"Prefect UI: http://127.0.0.1:{prefect_port}/" in l for l in lines), lines
        for url in (f"http://127.0.0.1:{mlflow_port}/health", f"http://127.0.0.1:{prefect_port}/api/health"):
            with urllib.request.urlopen(url, timeout=5) as response:
                assert response.status == 200
        page = urllib.request.urlopen(f"http://127.0.0.1:{prefect_port}/", timeout=5).read().decode()
        assert page  # the Prefect UI is served by its own API
        assert _processes_mentioning(str(prefect_port)) and _processes_mentioning(str(mlflow_port))
        child.send_signal(signal.SIGINT)
        assert child.wait(60) == 0, "".join(lines) + child.stdout.read()
    finally:
        if child.poll() is None:
            child.kill()
    time.sleep(1)
    assert _processes_mentioning(str(mlflow_port)) == [] and _processes_mentioning(str(prefect_port)) == []
    for port in (mlflow_port, prefect_port):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more
