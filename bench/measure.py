"""The figures every bench prints, measured the same way everywhere: wall time, CPU seconds, peak RSS and the
1-minute load average before and after.

* :func:`measured` measures a block of this process: wall time (``time.perf_counter``), CPU seconds (user +
  system) of this process and of the children it waited for (``getrusage`` ``RUSAGE_SELF`` + ``RUSAGE_CHILDREN``),
  the peak RSS (:func:`peak_rss_mb`: the larger of this process's and its largest child's) and
  ``os.getloadavg()[0]`` at both ends. A peak is a high-water mark: for a block that does not start in a fresh
  process it is the peak of the process so far, so the figures also keep what it was when the block began.
* :func:`in_fresh_process` runs a function in a fresh process (spawned, never forked: no memory or state inherited
  from the bench), one process per call, so that each measurement has its own peak RSS. Engines compared with each
  other all run this way, the same input loaded into each before its timed block.
* :func:`run_command` runs a command and reads that one command's own figures (``os.wait4``, through a small
  launcher: see there).

Linux carries a process's ``ru_maxrss`` over from its parent: a child started by a 2 GB bench reports at least
2 GB, whatever it used. So a process's own peak is read from ``VmHWM`` in ``/proc/self/status`` (the high-water
mark of its memory since it started its program), never from its own ``ru_maxrss``.

A shared machine stretches wall time far more than CPU seconds (which still grow somewhat under contention):
compare CPU seconds when the load moved, and engines measured back to back.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of every child it has waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _own_peak_kb() -> int:
    """This process's high-water resident memory (KB) since it started its program: ``VmHWM`` (Linux), else
    ``ru_maxrss`` (which may include what the parent had)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss_mb() -> float:
    """The high-water resident memory (MB) of this process or of its largest waited-for child. A child's
    ``ru_maxrss`` includes at most what this process had when it started the child, never more than this
    process's own peak, so the larger of the two is never inflated by the carry-over."""
    return max(_own_peak_kb(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024


def load() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


@dataclass
class Figures:
    """What one measured block cost. ``rss_at_start_mb`` is the peak RSS when the block began (None for a whole
    command: its process started with the block)."""

    label: str
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    load_before: float = 0.0
    load_after: float = 0.0
    rss_at_start_mb: float | None = None

    def line(self) -> str:
        """One line, the same in every bench."""
        cores = f" ({self.cpu_s / self.wall_s:.1f} cores)" if self.wall_s > 0 else ""
        start = f" ({self.rss_at_start_mb:,.0f} MB at its start)" if self.rss_at_start_mb is not None else ""
        return (f"{self.label}: wall {self.wall_s:.2f} s, CPU {self.cpu_s:.2f} s{cores}, "
                f"peak RSS {self.peak_rss_mb:,.0f} MB{start}, load {self.load_before:.2f} -> {self.load_after:.2f}")

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Figures:
        return cls(**data)


def combined(label: str, parts: Sequence[Figures]) -> Figures:
    """Blocks run one after another: wall and CPU seconds add up, the peak RSS is the largest, the load is the
    first block's before and the last one's after."""
    if not parts:
        return Figures(label)
    return Figures(label, sum(p.wall_s for p in parts), sum(p.cpu_s for p in parts),
                   max(p.peak_rss_mb for p in parts), parts[0].load_before, parts[-1].load_after)


@contextmanager
def measured(label: str) -> Iterator[Figures]:
    """Measure the block; the yielded :class:`Figures` are filled in when it ends (also when it raises)."""
    figures = Figures(label, load_before=load(), rss_at_start_mb=peak_rss_mb())
    cpu, start = cpu_seconds(), time.perf_counter()
    try:
        yield figures
    finally:
        figures.wall_s = time.perf_counter() - start
        figures.cpu_s = cpu_seconds() - cpu
        figures.peak_rss_mb = peak_rss_mb()
        figures.load_after = load()


# ---- one fresh process per measurement ---------------------------------------------------------------------------


def _worker(conn, fn: Callable, args: tuple, env: dict[str, str]) -> None:
    os.environ.update(env)
    try:
        conn.send(("ok", fn(*args)))
    except BaseException:  # noqa: BLE001 - the parent re-raises it with the worker's traceback
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def in_fresh_process(fn: Callable, *args, timeout: float | None = None, env: dict[str, str] | None = None):
    """``fn(*args)`` in a fresh spawned process, its result returned (it must pickle); None when it has not finished
    within ``timeout`` seconds (the process is killed). ``env`` is set in the process before ``fn`` runs (before
    any engine is imported, so for example ``POLARS_MAX_THREADS`` takes effect). An exception in the process is
    raised here as a RuntimeError carrying its traceback.

    ``fn`` is found by name: a module-level function of an importable module or of the running script."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_worker, args=(send, fn, args, env or {}), daemon=True)
    process.start()
    send.close()  # the worker holds the only write end: its death reads as end of file
    try:
        if not receive.poll(timeout):
            process.kill()
            process.join()
            return None
        try:
            status, value = receive.recv()
        except EOFError:
            process.join()
            raise RuntimeError(f"{getattr(fn, '__name__', fn)}{args!r}: the worker died (exit code "
                               f"{process.exitcode}) before returning") from None
        process.join()
    finally:
        receive.close()
    if status == "error":
        raise RuntimeError(f"{getattr(fn, '__name__', fn)}{args!r} failed in its worker:\n{value}")
    return value


# ---- one command ------------------------------------------------------------------------------------------------

# Started as `python -I -S -c LAUNCHER FD TIMEOUT COMMAND...` (about 10 MB): it runs the command, reaps it with
# wait4 and writes what the kernel counted to FD. The command inherits the launcher's high-water mark, not the
# bench's (see the module docstring); its own children's peaks and CPU seconds are in the counts.
_LAUNCHER = """
import json, os, signal, subprocess, sys, time
fd, timeout, args = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
start = time.perf_counter()
try:
    child = subprocess.Popen(args)
except OSError as error:
    os.write(fd, json.dumps({"error": f"{type(error).__name__}: {error}"}).encode())
    sys.exit(127)
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the command's to handle; its figures still come back
while True:
    pid, status, usage = os.wait4(child.pid, os.WNOHANG if timeout > 0 else 0)
    if pid:
        break
    if time.perf_counter() - start > timeout:
        child.kill()
        timeout = 0
    else:
        time.sleep(0.02)
child.returncode = os.waitstatus_to_exitcode(status)
os.write(fd, json.dumps({"returncode": child.returncode, "wall_s": time.perf_counter() - start,
                         "cpu_s": usage.ru_utime + usage.ru_stime, "maxrss_kb": usage.ru_maxrss}).encode())
"""


def run_command(args: Sequence[str], label: str | None = None, *, capture: bool = True, cwd=None, env=None,
                timeout: float | None = None) -> tuple[subprocess.CompletedProcess, Figures]:
    """Run ``args`` and return its completed process (output as text when ``capture``, else discarded) and that
    command's own figures: wall time, CPU seconds and peak RSS as the kernel counted them for it and the processes
    it waited for (``os.wait4`` in a small launcher, whose own start is not counted). After ``timeout`` seconds
    the command is killed and its return code is negative."""
    args = [str(a) for a in args]
    figures = Figures(label or shlex.join(args), load_before=load())
    read_end, write_end = os.pipe()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        target = (out, err) if capture else (subprocess.DEVNULL, subprocess.DEVNULL)
        try:
            launcher = subprocess.Popen([sys.executable, "-I", "-S", "-c", _LAUNCHER, str(write_end),
                                         str(timeout or 0), *args], stdout=target[0], stderr=target[1], cwd=cwd,
                                        env=env, pass_fds=(write_end,))
        finally:
            os.close(write_end)
        with os.fdopen(read_end, "rb") as report:
            counted = json.loads(report.read() or b'{"error": "the launcher died"}')
        launcher.wait()
        figures.load_after = load()
        texts = []
        for stream in (out, err):
            stream.seek(0)
            texts.append(stream.read().decode("utf-8", errors="replace") if capture else None)
    if "error" in counted:
        raise OSError(f"{shlex.join(args)}: {counted['error']}")
    figures.wall_s, figures.cpu_s = counted["wall_s"], counted["cpu_s"]
    figures.peak_rss_mb = counted["maxrss_kb"] / 1024
    return subprocess.CompletedProcess(args, counted["returncode"], *texts), figures


# ---- what every bench prints first and last ----------------------------------------------------------------------


def started(argv: Iterable[str] | None = None) -> str:
    """Print (and return) the bench's header line: UTC time stamp, the command, cores and load averages."""
    argv = list(sys.argv if argv is None else argv)
    command = shlex.join([Path(sys.executable).name, *argv])
    one, five, fifteen = os.getloadavg()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    print(f"{stamp}  command: {command}\n{os.cpu_count()} cores, load average {one:.2f} / {five:.2f} / "
          f"{fifteen:.2f} (1 / 5 / 15 min)", flush=True)
    return command


def finished(figures: Figures, command: str) -> None:
    """Print the whole run's figures and the command again (the last lines a reader sees)."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    print(f"\n{figures.line()}\n{stamp}  command: {command}", flush=True)
