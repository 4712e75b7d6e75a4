"""`churn schedule`: serve the scoring and retraining deployments on a persistent Prefect server.

Schedules need a server that outlives a run (a cron deployment never fires on the temporary API). When
``PREFECT_API_URL`` is set, that server is used; otherwise a local one is started on 127.0.0.1 at
``schedule.server_port`` (its database under ``<data_dir>/prefect``) and stopped again on exit. Served runs execute
in child processes of this one. SIGTERM and Ctrl-C stop serving, pause the schedules and stop the server this
process started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from common.config import PipelineConfig, ScheduleEntry
from common.errors import ChurnError

DEPLOYMENTS = ("score", "train")


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def local_server(port: int, log_file: Path, timeout_s: float = 120) -> Iterator[str]:
    """Start ``prefect server start`` on 127.0.0.1:``port``, wait until it answers, yield its API URL, stop it."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise ChurnError(f"port {port} on 127.0.0.1 is already in use; set schedule.server_port to a free port, "
                             "or PREFECT_API_URL to use the Prefect server that is running there")
    api_url = f"http://127.0.0.1:{port}/api"
    prefect = Path(sys.executable).with_name("prefect")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        server = subprocess.Popen([str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                  stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while not _healthy(api_url):
            if server.poll() is not None:
                raise ChurnError(f"the local Prefect server stopped at start (exit {server.returncode}); "
                                 f"see {log_file}")
            if time.monotonic() > deadline:
                raise ChurnError(f"the local Prefect server did not answer within {timeout_s:.0f} s; see {log_file}")
            time.sleep(0.5)
        yield api_url
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def _schedule_kwargs(entry: ScheduleEntry, timezone: str) -> dict:
    if entry.cron is not None:
        from prefect.client.schemas.schedules import CronSchedule

        return {"schedules": [CronSchedule(cron=entry.cron, timezone=timezone)]}
    return {"interval": entry.interval_seconds}


def serve(cfg: PipelineConfig, config_path: Path, announce: Callable[[str], None]) -> None:
    """Serve the deployments of ``cfg.schedule`` until SIGTERM or Ctrl-C (Prefect must be importable: call
    :func:`pipelines.runtime.configure` first)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C even when started with SIGINT ignored
    parameters = {"config_path": str(Path(config_path).resolve()), "data_dir": str(cfg.data_dir.resolve())}
    with contextlib.ExitStack() as stack:
        if not os.environ.get("PREFECT_API_URL"):
            announce(f"starting a local Prefect server on 127.0.0.1:{cfg.schedule.server_port}")
            url = stack.enter_context(local_server(cfg.schedule.server_port,
                                                   cfg.data_dir / "prefect" / "server.log"))
            os.environ["PREFECT_API_URL"] = url
        else:
            url = os.environ["PREFECT_API_URL"]
            if not _healthy(url):
                raise ChurnError(f"no Prefect server answers at PREFECT_API_URL={url}; start it or unset the "
                                 "variable to let `churn schedule` start a local one")
        from prefect.runner import Runner

        from pipelines import flows

        runner = Runner(name="churn-schedule", limit=1, pause_on_shutdown=True)  # one run at a time
        runner.handle_sigterm = _graceful_stop(runner)  # Prefect's own handler calls sys.exit inside the loop
        runner.add_deployment(flows.score.to_deployment(
            name="score", parameters=parameters, description="batch scoring",
            **_schedule_kwargs(cfg.schedule.score, cfg.schedule.timezone)))
        runner.add_deployment(flows.train.to_deployment(
            name="train", parameters=parameters, description="retraining",
            **_schedule_kwargs(cfg.schedule.train, cfg.schedule.timezone)))
        announce(f"serving deployments score and train against {url}; stop with Ctrl-C or SIGTERM")
        try:
            asyncio.run(runner.start())
        except KeyboardInterrupt:
            pass
        finally:
            from prefect.events.worker import EventsWorker
            from prefect.logging.handlers import APILogWorker

            for worker in (APILogWorker, EventsWorker):  # send the last logs and events while the server is up
                worker.drain_all(timeout=10)
            announce("stopped serving; schedules paused")


def _graceful_stop(runner) -> Callable:
    """A SIGTERM handler that asks the runner to stop from inside its event loop (it then cancels the runs in
    progress, pauses the schedules and returns)."""

    def handler(*_) -> None:
        loop = asyncio.get_running_loop()
        loop.call_soon_threadsafe(lambda: loop.create_task(runner.astop()))

    return handler
