"""`churn init`: the starting configuration for a user's own data, its playbooks and reasons, and overwriting."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from typer.testing import CliRunner

from common.config import TABLE_NAMES, load_config
from common.resources import shipped
from common.starter import STARTER_FILES, write_starter
from pipelines.cli import app

runner = CliRunner()


def _flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def enable_table(config_text: str, table: str) -> str:
    """``config_text`` with the commented example of ``table`` uncommented, as a user does in an editor: the
    ``# `` after the two-space indent is removed from ``  # <table>:`` and the block's following lines."""
    lines = config_text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  # {table}:"))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("  #   ")), len(lines))
    lines[start:end] = ["  " + line[len("  # "):] for line in lines[start:end]]
    return "".join(lines)


def test_init_writes_the_config_playbooks_and_reasons_and_says_what_next(tmp_path):
    folder = tmp_path / "proj"
    result = runner.invoke(app, ["init", str(folder)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "playbooks.yaml", "reasons.yaml"]
    for written, source in STARTER_FILES.items():
        assert (folder / written).read_bytes() == shipped(source).read_bytes()
    text = _flat(result.output)
    assert f"cd {folder}" in text
    assert text.index("tables.transactions.source") < text.index("columns:") < text.index(
        "churn validate --config config.yaml") < text.index("churn run --config config.yaml")


def test_the_written_config_loads_with_its_playbooks_and_reasons(tmp_path, monkeypatch):
    from serving.reasons import load_reasons
    from serving.targeting import load_playbooks

    write_starter(tmp_path)
    monkeypatch.chdir(tmp_path)  # data_dir: . is the folder churn runs in
    cfg = load_config("config.yaml")
    assert cfg.data_dir == Path(".") and list(cfg.tables) == ["transactions"]
    assert cfg.tables["transactions"].source.path == "raw/transactions.csv"
    assert cfg.tables["transactions"].columns == {} and cfg.tables["transactions"].date_format is None
    assert cfg.resolve(cfg.targeting.playbooks_file) == Path("playbooks.yaml")
    assert cfg.resolve(cfg.scoring.reasons_file) == Path("reasons.yaml")
    assert load_playbooks(cfg.resolve(cfg.targeting.playbooks_file)).playbooks
    assert load_reasons(cfg.resolve(cfg.scoring.reasons_file)).templates


def test_every_commented_example_table_is_a_valid_entry(tmp_path):
    text = (shipped("starter.yaml")).read_text(encoding="utf-8")
    for table in TABLE_NAMES:
        if table != "transactions":
            text = enable_table(text, table)
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    cfg = load_config(path)
    assert set(cfg.tables) == set(TABLE_NAMES)
    assert {t: cfg.tables[t].source.path for t in TABLE_NAMES} == {t: f"raw/{t}.csv" for t in TABLE_NAMES}


def _table_blocks(text: str) -> dict[str, str]:
    """The ``tables:`` section of the starter config, one block of lines per table (commented out or not)."""
    section = text.split("\ntables:\n", 1)[1].split("\nscoring:", 1)[0]
    blocks = re.split(r"\n(?=  (?:# )?\w+:)", "\n" + section)[1:]
    return {re.match(r"  (?:# )?(\w+):", block).group(1): block for block in blocks}


def test_the_columns_the_starter_names_are_the_contracts():
    from features.contract import CONTRACT

    blocks = _table_blocks(shipped("starter.yaml").read_text(encoding="utf-8"))
    assert sorted(blocks) == sorted(TABLE_NAMES)
    for table, block in blocks.items():
        contract = CONTRACT[table]
        required = re.search(r"# required columns: (.*)", block).group(1).split(", ")
        optional = re.search(r"# optional columns: (.*)", block)
        assert required == contract.required, table
        assert set(optional.group(1).split(", ") if optional else []) <= {c.name for c in contract.columns}
        flow = [key for m in re.findall(r"columns: \{(.*?)\}", block) for key in re.findall(r"(\w+):", m)]
        listed = re.findall(r"^ *# {3}(\w+): \w", block, flags=re.MULTILINE)  # block-style example mapping
        assert set(flow + listed) <= {c.name for c in contract.columns}, table


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path):
    (tmp_path / "config.yaml").write_text("mine\n")
    result = runner.invoke(app, ["init", str(tmp_path)])
    assert result.exit_code == 2
    assert f"error: {tmp_path / 'config.yaml'} already exists; nothing was written (pass --force" in _flat(
        result.output)
    assert "Traceback" not in result.output
    assert (tmp_path / "config.yaml").read_text() == "mine\n"
    assert not (tmp_path / "playbooks.yaml").exists() and not (tmp_path / "reasons.yaml").exists()


def test_init_force_overwrites(tmp_path):
    write_starter(tmp_path)
    (tmp_path / "playbooks.yaml").write_text("edited\n")
    again = runner.invoke(app, ["init", str(tmp_path)])
    assert again.exit_code == 2 and "already exist;" in _flat(again.output)
    result = runner.invoke(app, ["init", str(tmp_path), "--force"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "playbooks.yaml").read_bytes() == shipped("playbooks.yaml").read_bytes()
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["targeting"]["playbooks_file"] == "playbooks.yaml"


def test_init_into_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "proj").write_text("")
    result = runner.invoke(app, ["init", str(tmp_path / "proj")])
    assert result.exit_code == 2 and "is a file; give a folder" in _flat(result.output)
