"""Load on the retention workspace (issue 19): p50/p99 latency and errors of a filtered list page and a profile
lookup at fixed request rates, on loopback, against a published at-risk list of N customers.

Usage: python bench/bench_app.py [--customers 200000] [--rates 50,200] [--seconds 60] [--work DIR]
       [--database sqlite|postgresql]

A list of ``--customers`` rows (two as-of dates, so profiles have a history) is published with
:func:`serving.publish.publish_lists` into SQLite (default) or into a throwaway local PostgreSQL server
(``--database postgresql``: Debian's binaries, as the tests use, :mod:`tests.postgres`; it shares the two cores),
a viewer key is created, and ``churn serve``'s app runs in its
own process (uvicorn, one worker) on 127.0.0.1. For each rate and each request kind the client sends an open-loop
schedule for ``--seconds``: request i is started at ``i / rate`` seconds (a slow server cannot slow the schedule
down), at most ``rate x seconds`` requests, each with a 5 s timeout. The list page is ``/api/lists/at_risk``
filtered by tier and country on a random page of that view; the profile is ``/api/customers/<random id>``. The
first request of a view after a publish counts the view's totals and orders its customer ids (kept until the next
publish); the bench times that once per view (printed as the cold figure) and runs the load on warm views.
Latency is measured from the moment a request was due; an error is a failed request or any status but 200. The
client and the server share the machine's cores: the figures include the client's own cost. Each run starts once
the server is idle (the backlog of a run it could not keep up with would load the next) and its row ends with the
time it ended and the machine's 1-minute load average then: on a shared machine, compare runs close in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COUNTRIES = ("US", "GB", "DE", "FR", "CZ", "GR", "JP", "CA", "SI", "IL")


def _lists():
    from serving.lists import LISTS

    return LISTS[0], LISTS[1]  # the at-risk list (tiered, ranked by value at risk) and the win-back list


def published(folder: Path, customers: int, url: str | None = None, seed: int = 7) -> str:
    from serving.publish import publish_lists

    at_risk, winback = _lists()
    rng = np.random.default_rng(seed)
    ids = np.char.add("C", np.char.zfill(np.arange(customers).astype(str), 7))
    url = url or f"sqlite:///{folder / 'outputs' / 'lists.db'}"
    for as_of in (dt.date(2026, 10, 1), dt.date(2026, 11, 1)):
        p = rng.uniform(0.3, 0.99, customers)
        cltv = rng.gamma(2.0, 400.0, customers)
        frame = pd.DataFrame({"customer_id": ids, at_risk.probability: p,
                              "risk_tier": np.where(p >= 0.6, "high", "medium"), "predicted_cltv": cltv,
                              at_risk.value: p * cltv,
                              "rfm_segment": rng.choice(["At Risk", "Lost", "Loyal"], customers),
                              "country": rng.choice(COUNTRIES, customers), "language": "en",
                              "reason_1": "No purchase for 143 days", "recommended_action": "Automated e-mail",
                              "offer": "none", "playbook": "automated-email", "cost_per_contact": 0.2,
                              "success_rate": 0.03, "contact_group": np.where(rng.random(customers) < 0.1, "control",
                                                                              "treatment"),
                              "campaign_id": f"c-{as_of}", "run_id": "bench"})
        frame = frame.sort_values(at_risk.value, ascending=False).reset_index(drop=True)
        frame.insert(0, "rank", np.arange(1, customers + 1))
        empty = frame.iloc[:0][["rank", "customer_id"]]
        publish_lists({at_risk.name: frame, winback.name: empty}, folder / "outputs", as_of, {"run_id": "bench"},
                      sql=url)
    return url


SERVER = """
import sys, uvicorn
sys.path.insert(0, {root!r})
from serving.app import create_app
from serving.users import UserStore
uvicorn.run(create_app({url!r}, UserStore({users!r})), host="127.0.0.1", port={port}, log_level="warning")
"""


async def run_load(base: str, key: str, rate: int, seconds: float, make_path, rng) -> dict:
    """The open-loop schedule of one kind of request; aiohttp's client (C parsers) so that the client, which
    shares the cores with the server, costs as little as it can (httpx's pure-Python one took more CPU than
    the server and its backlog, not the server, set the latency)."""
    import aiohttp

    total = int(rate * seconds)
    latencies, errors = [], 0
    connector = aiohttp.TCPConnector(limit=512)
    timeout = aiohttp.ClientTimeout(total=5.0)
    async with aiohttp.ClientSession(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=timeout,
                                     connector=connector) as client:
        start, cpu = time.perf_counter(), time.process_time()

        async def one(due: float, path: str) -> None:
            nonlocal errors
            try:
                async with client.get(path) as response:
                    await response.read()
                    ok = response.status == 200
            except (aiohttp.ClientError, asyncio.TimeoutError):
                ok = False
            latencies.append(time.perf_counter() - due)
            errors += not ok

        # each request is started when it is due (not thousands of pending tasks queued at once on the client's
        # connection pool, which made the client, not the server, the bottleneck)
        running: set = set()
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(due, make_path(rng)))
            running.add(task)
            task.add_done_callback(running.discard)
        await asyncio.gather(*running)
        took, cpu = time.perf_counter() - start, time.process_time() - cpu
    values = np.array(latencies) * 1000
    return {"requests": total, "errors": errors, "p50_ms": float(np.percentile(values, 50)),
            "p99_ms": float(np.percentile(values, 99)), "max_ms": float(values.max()), "seconds": took,
            "client_cpu_s": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--rates", default="50,200")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = None
        if args.database == "postgresql":
            from tests.postgres import local_postgres

            url = stack.enter_context(local_postgres())()
        bench(args, url)


def bench(args, url: str | None) -> None:
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    work = (args.work or Path(tempfile.mkdtemp(prefix="bench-app-"))).resolve()
    print(f"command: {command}\nwork folder: {work}", flush=True)
    started = time.perf_counter()
    url = published(work, args.customers, url)
    print(f"published {args.customers:,} customers x 2 as-of dates in {time.perf_counter() - started:.0f} s",
          flush=True)
    from serving.users import UserStore

    users = work / "workspace.db"
    key = UserStore(users).add("bench", "viewer")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "DO_NOT_TRACK": "true"}
    server = subprocess.Popen([sys.executable, "-c", SERVER.format(root=str(ROOT), url=url, users=str(users),
                                                                    port=port)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(200):
            try:
                if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        name = _lists()[0].name
        kinds = {
            "list page (tier=high, country, random page)": lambda rng: (
                f"/api/lists/{name}?tier=high&country={rng.choice(COUNTRIES)}&page={rng.integers(1, 21)}"),
            "profile (random customer)": lambda rng: f"/api/customers/C{rng.integers(0, args.customers):07d}",
        }
        rng = np.random.default_rng(1)
        headers = {"Authorization": f"Bearer {key}"}
        cold = []  # the first request of a view after a publish counts its totals and orders its ids
        for country in COUNTRIES:
            took = time.perf_counter()
            httpx.get(f"{base}/api/lists/{name}?tier=high&country={country}", headers=headers, timeout=60)
            cold.append((time.perf_counter() - took) * 1000)
        httpx.get(base + kinds["profile (random customer)"](rng), headers=headers, timeout=30)
        print(f"first request of each of the {len(COUNTRIES)} views (cold, after a publish): median "
              f"{np.median(cold):.0f} ms, max {max(cold):.0f} ms; the load below runs on warm views", flush=True)
        rows = []
        for rate in (int(r) for r in args.rates.split(",")):
            for kind, make_path in kinds.items():
                settled(server.pid)
                cpu = server_cpu(server.pid)
                result = asyncio.run(run_load(base, key, rate, args.seconds, make_path, rng))
                result["server_cpu_s"] = server_cpu(server.pid) - cpu
                rows.append({"kind": kind, "rate": rate, **result, "ended": time.strftime("%H:%M:%S"),
                             "load": os.getloadavg()[0]})
                print(f"{kind} at {rate}/s: p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
                      f"{result['errors']} errors of {result['requests']}", flush=True)
    finally:
        server.terminate()
        server.wait(10)
    print("\n| request | rate/s | requests | errors | p50 ms | p99 ms | max ms | server CPU s | client CPU s | "
          "ended | load |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['kind']} | {r['rate']} | {r['requests']} | {r['errors']} | {r['p50_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {r['max_ms']:.1f} | {r['server_cpu_s']:.1f} | {r['client_cpu_s']:.1f} | "
              f"{r['ended']} | {r['load']:.2f} |")
    database = "PostgreSQL" if args.database == "postgresql" else "SQLite"
    print(f"\n{database}, {args.customers:,} customers, {time.strftime('%Y-%m-%d')}; load: the 1-minute load "
          f"average of the machine ({os.cpu_count()} cores) when each run ended")
    print(f"command: {command}")


def settled(pid: int, seconds: float = 30) -> None:
    """Wait (up to ``seconds``) until the server is idle: the backlog of a run it could not keep up with would
    otherwise load the next run."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        before = server_cpu(pid)
        time.sleep(0.5)
        if server_cpu(pid) - before < 0.05:
            return


def server_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
