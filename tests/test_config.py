from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from common.config import DEFAULT_CONFIG, load_config
from common.errors import ConfigError
from tests.conftest import write_config

TX = {"transactions": {"source": {"path": "tx.csv"}}}


def test_default_config_loads_every_section():
    cfg = load_config(DEFAULT_CONFIG)
    assert cfg.data_dir == Path("data")
    assert cfg.base_currency == "USD"
    assert set(cfg.tables) == {"transactions", "customers", "support_tickets", "surveys", "web_sessions",
                               "email_events", "subscriptions", "fx_rates"}
    assert cfg.horizons.churn_days == 90 and cfg.horizons.cltv_days == 365
    assert cfg.validation.max_reject_share == 0.01
    assert cfg.raw_path == Path("data/raw")


def test_unknown_key_names_the_key_and_the_file(tmp_path):
    path = write_config(tmp_path, TX, validaton={"max_reject_share": 0.1})
    with pytest.raises(ConfigError, match=r"config\.yaml: unknown key 'validaton'"):
        load_config(path)


def test_unknown_nested_key_is_named_with_its_path(tmp_path):
    path = write_config(tmp_path, {"transactions": {"source": {"path": "tx.csv", "delimiter": ";"}}})
    with pytest.raises(ConfigError, match=r"unknown key 'tables\.transactions\.source\.delimiter'"):
        load_config(path)


def test_wrong_type_names_the_key(tmp_path):
    path = write_config(tmp_path, TX, horizons={"churn_days": "ninety"})
    with pytest.raises(ConfigError, match=r"'horizons\.churn_days': Input should be a valid integer"):
        load_config(path)


def test_transactions_table_is_required(tmp_path):
    path = write_config(tmp_path, {"customers": {"source": {"path": "c.csv"}}})
    with pytest.raises(ConfigError, match="the 'transactions' table is required"):
        load_config(path)


def test_sql_source_needs_a_table_or_a_query(tmp_path):
    path = write_config(tmp_path, {"transactions": {"source": {"url": "sqlite:///x.db"}}})
    with pytest.raises(ConfigError, match="needs exactly one of 'table' or 'query'"):
        load_config(path)


def test_bad_currency_and_timezone_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="'base_currency'.*not an ISO 4217"):
        load_config(write_config(tmp_path, TX, base_currency="XYZ"))
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Base'"):
        load_config(write_config(tmp_path, TX, timezone="Mars/Base"))


def test_overrides_and_environment_variable(tmp_path, monkeypatch):
    path = write_config(tmp_path, TX, as_of="2026-01-31")
    monkeypatch.setenv("CHURN_CONFIG", str(path))
    cfg = load_config(overrides={"as_of": "2026-02-01", "validation.max_reject_share": 0.05})
    assert cfg.as_of == dt.date(2026, 2, 1)
    assert cfg.validation.max_reject_share == 0.05
    assert cfg.resolve("tx.csv") == tmp_path / "tx.csv"


def test_missing_file_says_how_to_choose_one(tmp_path):
    with pytest.raises(ConfigError, match="config file not found.*--config PATH or set CHURN_CONFIG"):
        load_config(tmp_path / "nope.yaml")
