"""`churn forget` leaves no trace of a forgotten customer under the data folder, whatever the layout of the
company's sources, and never writes the sources themselves; it survives an unreadable file and ``kill -9``.

Each project is a generated retailer of 200 customers (seed 1) with its sources laid out one way (raw/ or src/;
Parquet, CSV or a SQLite file; one file or a glob; a mapped id column; integer, float or padded text ids), two
rejected rows of a forgotten customer (a transaction dated after the as-of date, a duplicate customer row with
the contact fields), validated, with a scoring snapshot and published lists (files of two as-of dates and the SQL
tables). After `churn forget`, every byte under the data folder except the configured sources and the MLflow and
Prefect stores is scanned for the forgotten ids and their e-mail, name and phone; then `churn validate` must keep
them out.
"""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from common.config import load_config
from common.faults import FORGET_POINTS
from common.privacy import id_hash, id_text, suppressed_mask
from pipelines.cli import app
from serving.forget import LISTS_TARGET, plan_path
from serving.publish import publish_lists, sql_url
from tests.conftest import write_config

ROOT = Path(__file__).resolve().parents[2]
AS_OF = "2026-11-01"
TABLES = ("transactions", "customers", "fx_rates", "support_tickets", "surveys")
GONE = ("C0000007", "C0000042")  # the forgotten customers (as generated)
NUMBER = 555_000_000  # numeric ids: C0000007 -> 555000007 (nine digits: no file size or count looks like one)
runner = CliRunner()


def _flat(text: str) -> str:
    return " ".join(text.split())


def _failure(result) -> str:
    import traceback

    return result.output + ("".join(traceback.format_exception(result.exc_info[1])) if result.exc_info else "")


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    from features.synthetic.simulate import generate

    out = tmp_path_factory.mktemp("erasure") / "generated"
    generate(out, n_customers=200, seed=1)
    return out


# ---- a project ---------------------------------------------------------------------------------------------


def _ids(kind: str, values: pd.Series) -> pd.Series:
    """The generated ids ('C0000007') as the variant's source holds them."""
    number = values.str[1:].astype("int64") + NUMBER
    if kind == "int":
        return number
    if kind == "float":
        return number.astype("float64")
    if kind == "padded":
        return " " + values + "  "
    return values


def _gone(kind: str) -> list[str]:
    """The forgotten customers' ids as the user types them (the validated text form)."""
    return [str(int(c[1:]) + NUMBER) for c in GONE] if kind in ("int", "float") else list(GONE)


def _build(folder: Path, generated: Path, folder_name: str = "raw", fmt: str = "parquet", ids: str = "text",
           mapped: bool = False, glob_parts: int = 0, sqlite: bool = False) -> dict:
    """Write the sources, validate, build the scoring snapshot, publish lists; return what the checks need."""
    frames = {name: pd.read_parquet(generated / f"{name}.parquet") for name in TABLES}
    gone_rows = frames["customers"][frames["customers"]["customer_id"].isin(GONE)]
    contacts = {v for v in gone_rows[["email", "phone"]].to_numpy().ravel()}
    names = frames["customers"]["name"]
    contacts |= {n for n in gone_rows["name"] if (names == n).sum() == 1}  # a name another customer shares is no trace
    # rejected rows of a forgotten customer, which quarantine keeps with their original values (and contacts)
    late = frames["transactions"][frames["transactions"]["customer_id"] == GONE[0]].head(1).assign(
        ts=pd.Timestamp("2027-01-15 10:00"))
    frames["transactions"] = pd.concat([frames["transactions"], late], ignore_index=True)
    frames["customers"] = pd.concat([frames["customers"], gone_rows.head(1)], ignore_index=True)
    for name, frame in frames.items():
        if "customer_id" in frame.columns:
            frame["customer_id"] = _ids(ids, frame["customer_id"])
    if ids == "float":  # a column with gaps: why a Parquet id column is read as floats
        gaps = frames["transactions"].head(2).assign(customer_id=np.nan)
        frames["transactions"] = pd.concat([frames["transactions"], gaps], ignore_index=True)
    if mapped:
        frames["transactions"] = frames["transactions"].rename(columns={"customer_id": "cust"})

    src = folder / folder_name
    src.mkdir(parents=True)
    if folder_name == "raw" and fmt == "parquet" and ids == "text" and not mapped:
        shutil.copytree(generated / "truth", src / "truth")  # the layout `churn generate` writes
    tables = {}
    for name, frame in frames.items():
        path = f"{folder_name}/{name}.{fmt}"
        if name == "transactions" and sqlite:  # a SQLite file in the data folder, named by source.url
            import sqlalchemy as sa

            engine = sa.create_engine(f"sqlite:///{src / 'shop.db'}")
            with engine.begin() as connection:
                frame.to_sql("orders", connection, index=False)
            engine.dispose()
            tables[name] = {"source": {"url": f"sqlite:///{src / 'shop.db'}", "table": "orders"}}
            continue
        if name == "transactions" and glob_parts:
            (src / "tx").mkdir()
            for part, rows in enumerate(np.array_split(np.arange(len(frame)), glob_parts)):
                frame.iloc[rows].to_parquet(src / "tx" / f"part-{part}.parquet", index=False)
            path = f"{folder_name}/tx/part-*.parquet"
        elif fmt == "csv":
            frame.to_csv(folder / path, index=False)
        else:
            frame.to_parquet(folder / path, index=False)
        tables[name] = {"source": {"path": path}}
    if mapped:
        tables["transactions"]["columns"] = {"customer_id": "cust"}
    config = write_config(folder, tables, as_of=AS_OF)
    for command in (["validate"], ["features"]):
        result = runner.invoke(app, [*command, "--config", str(config)])
        assert result.exit_code == 0, _failure(result)
    cfg = load_config(config)
    gone = _gone(ids)
    assert set(gone) <= set(pd.read_parquet(cfg.validated_dir / "customers.parquet")["customer_id"])
    quarantined = pd.concat([pd.read_parquet(p) for p in cfg.quarantine_dir.glob("*/*.parquet")])
    assert len(quarantined) >= 2
    _publish(cfg, gone)
    return {"config": config, "cfg": cfg, "gone": gone, "needles": set(gone) | contacts,
            "sources": _digests(_source_files(cfg))}


def _publish(cfg, gone: list[str]) -> None:
    """The at-risk and win-back lists of two as-of dates, files and SQL, with the forgotten customers on them."""
    customers = pd.read_parquet(cfg.validated_dir / "customers.parquet")["customer_id"]
    ids = [*gone, *[c for c in customers if c not in gone][:6]]
    outputs = cfg.resolve(cfg.outputs.dir)
    for as_of in (dt.date(2026, 10, 1), dt.date(2026, 11, 1)):
        lists = {"at_risk": pd.DataFrame({"rank": range(1, 5), "customer_id": ids[:4], "churn_probability": 0.7,
                                          "value_at_risk": 12.5}),
                 "winback": pd.DataFrame({"rank": range(1, 5), "customer_id": ids[1:5],
                                          "reactivation_probability": 0.2})}
        publish_lists(lists, outputs, as_of, {"run_id": f"run-{as_of}"}, sql=sql_url(outputs, None))


def _source_files(cfg) -> list[Path]:
    """Every file the configured sources name (globs resolved as features.sources does, SQLite files of urls)."""
    return sorted(Path(p).resolve() for t in cfg.tables.values()
                  for p in ([t.source.url.removeprefix("sqlite:///")] if t.source.url
                            else glob.glob(str(cfg.resolve(t.source.path)))))


def _digests(paths: list[Path]) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _traces(cfg, needles: set[str]) -> list[str]:
    """``path: needle`` for every forgotten id or contact field found under the data folder: in any cell of a
    Parquet file (ids compared as validated text, so 555000007.0 counts) and in the bytes of every file, hidden
    folders (the versioned list store) and the SQLite list database included; a Parquet file that cannot be read
    counts as a trace. Not scanned: the configured sources, the MLflow and Prefect stores, and symbolic links
    (their targets are scanned)."""
    data_dir = Path(cfg.data_dir)
    skip = set(_source_files(cfg))
    found = []
    for root, dirs, files in os.walk(data_dir):
        dirs[:] = [d for d in dirs if Path(root, d) not in (data_dir / "mlflow", data_dir / "prefect")]
        for name in files:
            path = Path(root, name)
            if path.is_symlink() or path.resolve() in skip:
                continue
            cells: set[str] = set()
            blob = path.read_bytes()
            if blob[:4] == b"PAR1" or path.suffix == ".parquet":  # by content too: a leftover '.x.parquet.old-...'
                try:
                    frame = pq.ParquetFile(path).read().to_pandas()
                except pa.ArrowInvalid:  # a file that cannot be read cannot be shown to be clean
                    found.append(f"{path.relative_to(data_dir)}: unreadable")
                    frame = pd.DataFrame()
                for column in frame.columns:
                    cells |= set(id_text(frame[column]).dropna())
            found += [f"{path.relative_to(data_dir)}: {n}" for n in sorted(needles)
                      if n in cells or n.encode() in blob]
    return found


def _forget(project: dict, *args: str):
    return runner.invoke(app, ["forget", *args, "--config", str(project["config"])])


def _copy(project: dict, folder: Path) -> dict:
    """The same project in another folder (its own config, lists and SQLite file)."""
    old = Path(project["cfg"].data_dir)
    shutil.copytree(old, folder, symlinks=True)
    settings = yaml.safe_load((folder / "config.yaml").read_text())
    settings["data_dir"] = str(folder)
    (folder / "config.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    cfg = load_config(folder / "config.yaml")
    return {**project, "config": folder / "config.yaml", "cfg": cfg, "sources": _digests(_source_files(cfg))}


# ---- the ids ------------------------------------------------------------------------------------------------


def test_ids_are_compared_as_validated_text_whatever_the_source_type():
    forgotten = {id_hash("7")}
    assert id_text(pd.Series([7.0, np.nan, 17.0])).fillna("-").tolist() == ["7", "-", "17"]  # a column with gaps
    assert suppressed_mask(pd.Series([7.0, np.nan, 17.0]), forgotten).tolist() == [True, False, False]
    assert suppressed_mask(pd.Series([7, 70, 17]), forgotten).tolist() == [True, False, False]
    assert suppressed_mask(pd.Series([7, None], dtype="Int64"), forgotten).tolist() == [True, False]
    assert suppressed_mask(pd.Series(["7", " 7 ", "07", None]), forgotten).tolist() == [True, True, False, False]
    # a float column that is not all whole numbers validates as '7.0': another id, as validation sees it
    assert suppressed_mask(pd.Series([7.0, 7.5]), forgotten).tolist() == [False, False]


# ---- every layout -------------------------------------------------------------------------------------------

VARIANTS = {
    "default layout": {},
    "source in src/": {"folder_name": "src"},
    "mapped id column": {"folder_name": "src", "mapped": True},
    "integer ids": {"ids": "int"},
    "float ids with gaps": {"ids": "float"},
    "padded text ids": {"ids": "padded"},
    "CSV source": {"folder_name": "src", "fmt": "csv"},
    "glob of several files": {"folder_name": "src", "glob_parts": 3},
    "SQLite source": {"folder_name": "src", "sqlite": True},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_forget_leaves_no_trace_never_writes_a_source_and_validate_keeps_them_out(variant, generated, tmp_path):
    project = _build(tmp_path / "data", generated, **VARIANTS[variant])
    cfg, needles = project["cfg"], project["needles"]
    assert _traces(cfg, needles), "the project should hold the customers before forget"

    result = _forget(project, *project["gone"])
    assert result.exit_code == 0, _failure(result)
    assert _digests(_source_files(cfg)) == project["sources"]  # the company's sources: never written
    assert _traces(cfg, needles) == []
    assert not plan_path(cfg.data_dir).exists()

    again = runner.invoke(app, ["validate", "--config", str(project["config"])])  # the sources still have them
    assert again.exit_code == 0, _failure(again)
    assert _traces(cfg, needles) == []
    assert _digests(_source_files(cfg)) == project["sources"]
    validated = pd.read_parquet(cfg.validated_dir / "transactions.parquet")
    assert len(validated) > 5_000 and not set(project["gone"]) & set(validated["customer_id"])

    output = _flat(result.output)  # where -> rows removed, and the sources named as configured
    assert "2 on the suppression list" in output and "sql:at_risk" in output
    assert "quarantine/transactions/" in output and "quarantine/customers/" in output
    sources = ", ".join(t.source.path or t.source.url for t in cfg.tables.values())
    assert f"the sources themselves ({sources}) are yours to erase" in output


def test_a_snapshot_forget_rewrote_is_never_reused_as_built_from_its_inputs(generated, tmp_path):
    """The per-day rows stored beside the transactions go stale when forget rewrites the transactions; a snapshot
    forget rewrote keeps row counts that match its files and no longer claims its inputs key."""
    from features.snapshots import open_sources, stored_days_current
    from pipelines import keys

    project = _build(tmp_path / "data", generated)
    cfg = project["cfg"]
    folder = cfg.data_dir / "features" / f"snapshot_{AS_OF}"
    meta = json.loads((folder / "metadata.json").read_text())
    meta["inputs_key"] = keys.snapshot_key(cfg, [dt.date.fromisoformat(AS_OF)], False)  # as the flows record it
    (folder / "metadata.json").write_text(json.dumps(meta))
    assert stored_days_current(cfg.validated_dir)

    assert _forget(project, *project["gone"]).exit_code == 0
    assert not stored_days_current(cfg.validated_dir) and open_sources(cfg.validated_dir).days is None
    meta = json.loads((folder / "metadata.json").read_text())
    rows = pq.ParquetFile(next(folder.glob("cutoff=*/*.parquet"))).metadata.num_rows
    assert meta["rows_per_cutoff"] == {AS_OF: rows} and meta["inputs_key"] is None  # the flows rebuild it
    assert keys.folder_inputs_key(folder) != keys.snapshot_key(cfg, [dt.date.fromisoformat(AS_OF)], False)
    rebuilt = runner.invoke(app, ["features", "--config", str(project["config"])])
    assert rebuilt.exit_code == 0, _failure(rebuilt)
    assert _traces(cfg, project["needles"]) == []


# ---- an unreadable file, kill -9 ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base(generated, tmp_path_factory) -> dict:
    return _build(tmp_path_factory.mktemp("base") / "data", generated)


@pytest.mark.parametrize("junk, repair", [("validated/junk.parquet", "fix"), ("features/x/y.parquet", "delete")])
def test_an_unreadable_file_stops_with_one_line_and_resume_finishes(base, tmp_path, junk, repair):
    project = _copy(base, tmp_path / "data")
    cfg = project["cfg"]
    whole = (cfg.validated_dir / "customers.parquet").read_bytes()
    (cfg.data_dir / junk).parent.mkdir(parents=True, exist_ok=True)
    (cfg.data_dir / junk).write_bytes(whole[: len(whole) // 2])  # truncated: no footer

    result = _forget(project, *project["gone"])
    assert result.exit_code == 2 and result.exception is not None and "Traceback" not in result.output
    error = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error) == 1, result.output
    assert (f"error: could not erase {junk} (" in _flat(result.output)
            and "fix or delete it, then run `churn forget --resume`" in _flat(result.output))
    plan = json.loads(plan_path(cfg.data_dir).read_text())
    remaining = [t["target"] for t in plan["targets"] if not t["done"]]
    assert remaining == [junk] and LISTS_TARGET in [t["target"] for t in plan["targets"] if t["done"]]
    assert sorted(plan["id_hashes"]) == sorted(id_hash(c) for c in project["gone"])
    assert not [n for n in project["needles"] if n in plan_path(cfg.data_dir).read_text()]  # hashes, not ids
    assert "not erased yet" in result.output and junk in result.output
    assert "validated/transactions.parquet" in result.output  # what was erased is listed all the same
    assert {t.split(":")[0] for t in _traces(cfg, project["needles"])} <= {junk}  # only the file it could not read

    if repair == "fix":
        more = _forget(project, "C0000099")  # a new erasure while one is unfinished: folded in, started over
        assert more.exit_code == 2 and f"could not erase {junk}" in _flat(more.output)
        plan = json.loads(plan_path(cfg.data_dir).read_text())
        assert sorted(plan["id_hashes"]) == sorted(id_hash(c) for c in [*project["gone"], "C0000099"])
        (cfg.data_dir / junk).write_bytes(whole)
    else:
        (cfg.data_dir / junk).unlink()
    resumed = _forget(project, "--resume")
    assert resumed.exit_code == 0, _failure(resumed)
    assert "resumed the erasure" in _flat(resumed.output)
    assert not plan_path(cfg.data_dir).exists() and _traces(cfg, project["needles"]) == []
    assert _digests(_source_files(cfg)) == project["sources"]
    if repair == "fix":
        assert _traces(cfg, {"C0000099"}) == []
    nothing = _forget(project, "--resume")
    assert nothing.exit_code == 0 and "nothing to resume" in nothing.output


@pytest.mark.parametrize("point", FORGET_POINTS)
def test_kill_9_during_forget_leaves_a_plan_that_resume_finishes(base, tmp_path, point):
    project = _copy(base, tmp_path / "data")
    cfg = project["cfg"]
    child = subprocess.run([str(Path(sys.executable).with_name("churn")), "forget", *project["gone"], "--config",
                            str(project["config"])], env={**os.environ, "CHURN_KILL_AT": point}, cwd=ROOT,
                           capture_output=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    plan = json.loads(plan_path(cfg.data_dir).read_text())
    done = [t["target"] for t in plan["targets"] if t["done"]]
    assert (done == []) if point == "forget.after_plan" else (done[:1] == [LISTS_TARGET] or done == [])
    assert len(done) < len(plan["targets"]) and _traces(cfg, project["needles"])  # interrupted: not all erased
    assert not [n for n in project["needles"] if n in plan_path(cfg.data_dir).read_text()]

    resumed = _forget(project, "--resume")
    assert resumed.exit_code == 0, _failure(resumed)
    assert not plan_path(cfg.data_dir).exists() and _traces(cfg, project["needles"]) == []
    assert _digests(_source_files(cfg)) == project["sources"]
    again = runner.invoke(app, ["validate", "--config", str(project["config"])])
    assert again.exit_code == 0 and _traces(cfg, project["needles"]) == []


def test_forget_without_ids_or_resume_says_what_to_do(base, tmp_path):
    project = _copy(base, tmp_path / "data")
    result = _forget(project)
    assert result.exit_code == 2 and "name the customers" in _flat(result.output)


def test_a_plan_that_is_no_plan_any_more_is_rebuilt_from_the_suppression_list(base, tmp_path):
    """As a `churn forget` killed after putting the customers on the suppression list leaves it, with the plan
    then cut short (or edited by hand): `--resume` erases every suppressed customer."""
    from common.privacy import add_suppressed

    project = _copy(base, tmp_path / "data")
    cfg = project["cfg"]
    add_suppressed(cfg.data_dir, project["gone"])
    plan_path(cfg.data_dir).write_text('{"id_hashes": ["')
    assert _traces(cfg, project["needles"])
    resumed = _forget(project, "--resume")
    assert resumed.exit_code == 0, _failure(resumed)
    assert not plan_path(cfg.data_dir).exists() and _traces(cfg, project["needles"]) == []


def test_what_an_interrupted_file_replacement_left_behind_is_erased_too(base, tmp_path):
    """common.files.replace_all moves the old version aside as '.<name>.old-<8 hex>' before the swap; killed then
    (by whichever command was replacing the file), that copy stays."""
    project = _copy(base, tmp_path / "data")
    cfg = project["cfg"]
    shutil.copy(cfg.validated_dir / "customers.parquet", cfg.validated_dir / ".customers.parquet.old-1a2b3c4d")
    result = _forget(project, *project["gone"])
    assert result.exit_code == 0, _failure(result)
    assert "validated/.customers.parquet.old-1a2b3c4d" in _flat(result.output)
    assert _traces(cfg, project["needles"]) == []
