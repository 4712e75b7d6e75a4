"""A throwaway PostgreSQL server for the tests and bench/bench_app.py: Debian's binaries (``make test`` installs
the package ``postgresql`` when absent), a new cluster in a temporary folder, listening on 127.0.0.1 only, run as
the ``postgres`` user when we are root (initdb refuses root), stopped and deleted on exit."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


class PostgresMissing(RuntimeError):
    """PostgreSQL's server binaries are not installed."""


@contextlib.contextmanager
def local_postgres():
    """Start the server; yields a function that creates a new, empty database and returns its SQLAlchemy URL."""
    import sqlalchemy as sa

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise PostgresMissing("PostgreSQL's server binaries are missing: `make test` installs them (the apt package "
                              "postgresql)")
    bin_dir = Path(found[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="churn-postgres-"))  # not under pytest's root-only folder
    as_postgres = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data, run = folder / "data", dict(check=True, capture_output=True, cwd=folder)
    pg_ctl = [*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data)]
    admin = None
    try:
        subprocess.run([*as_postgres, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "churn",
                        "-E", "UTF8", "--no-sync"], **run)
        subprocess.run([*pg_ctl, "-l", str(folder / "server.log"), "-w", "-o",
                        f"-h 127.0.0.1 -p {port} -k {folder} -F", "start"], **run)
        admin = sa.create_engine(f"postgresql+psycopg://churn@127.0.0.1:{port}/postgres",
                                 isolation_level="AUTOCOMMIT")
        made = []

        def database() -> str:
            name = f"churn_{len(made)}"
            with admin.connect() as connection:
                connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
            made.append(name)
            return f"postgresql+psycopg://churn@127.0.0.1:{port}/{name}"

        yield database
    finally:
        if admin is not None:
            admin.dispose()
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True, cwd=folder)
        shutil.rmtree(folder, ignore_errors=True)
