"""Ingestion and validation: each case of the contract, with expected values worked out by hand."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from common.config import load_config
from common.errors import DataError
from features.ingest import ingest
from tests.conftest import write_config

AS_OF = dt.date(2026, 1, 31)

FX_CSV = """date,currency,rate_to_base
2026-01-02,EUR,1.10
2026-01-05,EUR,1.20
2025-12-01,CZK,0.05
"""
# columns renamed: cust, date, dollar_value, order, cur
TX_CSV = """cust,date,dollar_value,order,cur
A,2026-01-03 10:00,10.00,o1,EUR
A,2026-01-05,20.00,o2,eur
B,2026-01-04,-5.00,o3,
,2026-01-04,5,o4,USD
C,not-a-date,5,o5,USD
C,2026-01-04,abc,o6,USD
B,2026-01-06,7,o2,USD
B,2026-02-01,7,o7,USD
B,2026-01-06,7,o8,ABC
B,2026-01-06,7,o9,CZK
C,2026-01-10T09:00:00+01:00,3.5,o10,USD
C,2026-01-31 23:59:59,1,o11,USD
"""
MAPPING = {"customer_id": "cust", "ts": "date", "amount": "dollar_value", "order_id": "order", "currency": "cur"}


def _setup(tmp_path: Path, tx_csv: str = TX_CSV, mapping: dict = MAPPING, date_format: str | None = None,
           **settings) -> Path:
    (tmp_path / "tx.csv").write_text(tx_csv)
    (tmp_path / "fx.csv").write_text(FX_CSV)
    tables = {"transactions": {"source": {"path": "tx.csv"}, "columns": mapping, "date_format": date_format},
              "fx_rates": {"source": {"path": "fx.csv"}}}
    settings.setdefault("validation", {"max_reject_share": 1.0, "fx_max_staleness_days": 7})
    return write_config(tmp_path, tables, **settings)


def test_renamed_csv_with_corrupt_rows_keeps_good_rows_and_quarantines_the_rest(tmp_path):
    cfg = load_config(_setup(tmp_path))
    result = ingest(cfg, AS_OF, run_id="run1")

    tx = result.tables["transactions"]
    expected = pd.DataFrame({
        "order_id": ["o1", "o2", "o3", "o10", "o11"],
        "customer_id": ["A", "A", "B", "C", "C"],
        # o1 is on a Saturday: Friday's EUR rate 1.10 is in force; o2 uses Monday's 1.20; o3 has no currency
        # (base); o10 is 09:00 at +01:00, i.e. 08:00 UTC; o11 is on the as-of date itself, so it is kept.
        "ts": pd.to_datetime(["2026-01-03 10:00", "2026-01-05", "2026-01-04", "2026-01-10 08:00",
                              "2026-01-31 23:59:59"], format="ISO8601").astype("datetime64[us]"),
        "amount": [10.0 * 1.10, 20.0 * 1.20, -5.0, 3.5, 1.0],
        "currency": ["EUR", "EUR", "USD", "USD", "USD"],
        "amount_local": [10.0, 20.0, -5.0, 3.5, 1.0],
    })
    assert_frame_equal(tx[expected.columns].sort_values("ts").reset_index(drop=True),
                       expected.sort_values("ts").reset_index(drop=True), check_dtype=False)

    report = result.reports["transactions"]
    assert (report.rows_in, report.rows_ok, report.rejected) == (12, 5, 7)
    quarantine = pd.read_parquet(tmp_path / "quarantine" / "transactions" / "run1.parquet")
    reasons = dict(zip(quarantine["order"], quarantine["reject_reason"]))
    assert reasons == {
        "o4": "missing customer_id",
        "o5": "unparseable ts",
        "o6": "non-numeric amount",
        "o2": "duplicate order_id",
        "o7": "ts after the as-of date 2026-01-31",
        "o8": "unknown currency (not ISO 4217) in currency",
        "o9": "no fx rate for the currency within 7 days before the date",
    }
    # the original text is kept, including the bad value, and the row's position in the source
    row = quarantine.set_index("order").loc["o6"]
    assert row["dollar_value"] == "abc" and row["source_row"] == 5
    assert report.reasons["duplicate order_id"] == 1


def test_missing_required_column_names_it_the_columns_found_and_the_config_key(tmp_path):
    cfg = load_config(_setup(tmp_path, tx_csv="cust,date,order\nA,2026-01-03,o1\n"))
    with pytest.raises(DataError, match=r"transactions: column 'dollar_value' is missing; found \['cust', 'date', "
                                        r"'order'\] \(set tables\.transactions\.columns\.amount"):
        ingest(cfg, AS_OF, run_id="r")


def test_unmapped_missing_column_uses_the_contract_name(tmp_path):
    (tmp_path / "tx.csv").write_text("customer_id,ts\nA,2026-01-03\n")
    cfg = load_config(write_config(tmp_path, {"transactions": {"source": {"path": "tx.csv"}}}))
    with pytest.raises(DataError, match=r"column 'amount' is missing.*tables\.transactions\.columns\.amount"):
        ingest(cfg, AS_OF, run_id="r")


@pytest.mark.parametrize("content", ["cust,date,dollar_value\n", ""])
def test_empty_table_has_its_own_message(tmp_path, content):
    cfg = load_config(_setup(tmp_path, tx_csv=content))
    with pytest.raises(DataError, match="transactions: the source has no rows"):
        ingest(cfg, AS_OF, run_id="r")


def test_unreadable_file_has_its_own_message(tmp_path):
    (tmp_path / "tx.parquet").write_bytes(b"this is not parquet at all")
    cfg = load_config(write_config(tmp_path, {"transactions": {"source": {"path": "tx.parquet"}}}))
    with pytest.raises(DataError, match=r"transactions: cannot read '.*tx\.parquet' as PARQUET"):
        ingest(cfg, AS_OF, run_id="r")


def test_no_matching_file_names_the_config_key(tmp_path):
    cfg = load_config(write_config(tmp_path, {"transactions": {"source": {"path": "missing/*.csv"}}}))
    with pytest.raises(DataError, match=r"no file matches 'missing/\*\.csv'.*tables\.transactions\.source\.path"):
        ingest(cfg, AS_OF, run_id="r")


@pytest.mark.parametrize("url, message", [
    ("notadialect://user@host/db", r"is not a usable SQLAlchemy URL"),
    ("sqlite:////nonexistent-folder/sub/x.db", r"cannot read from .*unable to open database file"),
])
def test_wrong_sql_url_has_a_clear_message(tmp_path, url, message):
    cfg = load_config(write_config(tmp_path, {"transactions": {"source": {"url": url, "table": "tx"}}}))
    with pytest.raises(DataError, match=message):
        ingest(cfg, AS_OF, run_id="r")


def test_sql_source_table_and_query(tmp_path):
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        pd.DataFrame({"cust": ["A", "B"], "date": ["2026-01-03", "2026-01-04"], "dollar_value": [1.5, 2.5]}
                     ).to_sql("orders", conn, index=False)
    mapping = {"customer_id": "cust", "ts": "date", "amount": "dollar_value"}
    for source in ({"url": f"sqlite:///{db}", "table": "orders"},
                   {"url": f"sqlite:///{db}", "query": "select * from orders where dollar_value > 2"}):
        cfg = load_config(write_config(tmp_path, {"transactions": {"source": source, "columns": mapping}}))
        tx = ingest(cfg, AS_OF, run_id="r").tables["transactions"]
        assert tx["amount"].sum() == (4.0 if "table" in source else 2.5)
    cfg = load_config(write_config(tmp_path, {"transactions": {"source": {"url": f"sqlite:///{db}",
                                                                          "table": "nope"}}}))
    with pytest.raises(DataError, match="table 'nope' not found"):
        ingest(cfg, AS_OF, run_id="r")


def test_too_many_rejects_fails_keeps_quarantine_and_leaves_last_good_outputs(tmp_path):
    good = "cust,date,dollar_value,order,cur\n" + "".join(f"A,2026-01-0{i},1,g{i},USD\n" for i in range(1, 10))
    cfg_path = _setup(tmp_path, tx_csv=good, validation={"max_reject_share": 0.01})
    ingest(load_config(cfg_path), AS_OF, run_id="good")
    validated = tmp_path / "validated" / "transactions.parquet"
    before = validated.read_bytes()

    (tmp_path / "tx.csv").write_text(good + "A,garbage,1,g10,USD\n")  # 1 of 10 rows = 10% > 1%
    with pytest.raises(DataError, match=r"transactions: 1 of 10 rows rejected \(10\.00%\).*above "
                                        r"validation\.max_reject_share = 1\.00%.*left untouched"):
        ingest(load_config(cfg_path), AS_OF, run_id="bad")
    assert validated.read_bytes() == before
    assert len(pd.read_parquet(tmp_path / "quarantine" / "transactions" / "bad.parquet")) == 1


def test_custom_date_format(tmp_path):
    mapping = {"customer_id": "cust", "ts": "date", "amount": "dollar_value"}
    cfg = load_config(_setup(tmp_path, tx_csv="cust,date,dollar_value\nA,13/01/2026,2\nB,2026-01-13,3\n",
                             mapping=mapping, date_format="%d/%m/%Y"))
    result = ingest(cfg, AS_OF, run_id="r")
    assert result.tables["transactions"]["ts"].tolist() == [pd.Timestamp("2026-01-13")]
    assert result.reports["transactions"].reasons == {"unparseable ts": 1}


def test_optional_tables_rules_pii_split_and_unknown_customers(tmp_path):
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount\nA,2026-01-03,5\nZ,2026-01-03,5\n")
    (tmp_path / "customers.csv").write_text(
        "customer_id,signup_date,country,marketing_consent,email\n"
        "A,2025-05-01,cz,yes,a@example.com\nB,2025-05-02,XX,no,b@example.com\nA,2025-05-03,GR,1,dup@example.com\n")
    (tmp_path / "surveys.csv").write_text(
        "customer_id,ts,nps,csat,ces\nA,2026-01-04,9,,\nA,2026-01-05,11,,\nA,2026-01-06,,,\nA,2026-01-07,,6,\n")
    (tmp_path / "tickets.csv").write_text(
        "customer_id,opened_at,resolved_at,ticket_id\nA,2026-01-04,2026-01-05,t1\nA,2026-01-04,2026-01-02,t2\n"
        "A,2026-01-04,,t3\n")
    tables = {"transactions": {"source": {"path": "tx.csv"}}, "customers": {"source": {"path": "customers.csv"}},
              "surveys": {"source": {"path": "surveys.csv"}},
              "support_tickets": {"source": {"path": "tickets.csv"}}}
    cfg = load_config(write_config(tmp_path, tables, validation={"max_reject_share": 1.0}))
    result = ingest(cfg, AS_OF, run_id="r")
    r = result.reports
    assert r["customers"].reasons == {"unknown country (not ISO 3166-1 alpha-2) in country": 1,
                                      "duplicate customer_id": 1}
    assert r["transactions"].reasons == {"unknown customer_id (not in customers)": 1}
    assert r["surveys"].reasons == {"nps outside 0-10": 1, "no score (nps, csat or ces)": 1,
                                    "csat outside 1-5": 1}
    assert r["support_tickets"].reasons == {"resolved_at before opened_at": 1}
    customers = result.tables["customers"]
    assert list(customers.columns) == ["customer_id", "signup_date", "country", "marketing_consent"]
    assert customers.iloc[0].to_dict() == {"customer_id": "A", "signup_date": pd.Timestamp("2025-05-01"),
                                           "country": "CZ", "marketing_consent": True}
    assert result.contacts.to_dict("records") == [{"customer_id": "A", "email": "a@example.com"}]
    contacts = pd.read_parquet(tmp_path / "validated" / "customer_contacts.parquet")
    assert "email" not in pd.read_parquet(tmp_path / "validated" / "customers.parquet").columns
    assert contacts["email"].tolist() == ["a@example.com"]


def test_generated_data_validates_with_zero_rejects(generated_config):
    from tests.conftest import GENERATED_AS_OF

    result = ingest(load_config(generated_config), GENERATED_AS_OF, run_id="gen", write=False)
    assert {name: r.rejected for name, r in result.reports.items()} == dict.fromkeys(result.reports, 0)
    tx = result.tables["transactions"]
    assert (tx["amount"] < 0).any() and tx["currency"].nunique() >= 4


def test_batches_give_the_tables_of_a_whole_validation(generated_config):
    """The generated data (Parquet, 1,500 customers) validated 20,000 rows at a time: transactions and the event
    tables span several batches; every validated table, report and the contacts are those of one batch."""
    from tests.conftest import GENERATED_AS_OF

    whole = ingest(load_config(generated_config), GENERATED_AS_OF, run_id="gen", write=False)
    batched = ingest(load_config(generated_config, {"validation.batch_rows": 20_000}), GENERATED_AS_OF,
                     run_id="gen", write=False)
    assert len(whole.tables["transactions"]) > 3 * 20_000
    assert list(batched.tables) == list(whole.tables)
    for name in whole.tables:
        assert_frame_equal(batched.tables[name], whole.tables[name], obj=name)
        assert batched.reports[name] == whole.reports[name], name
    assert_frame_equal(batched.contacts, whole.contacts)


def test_duplicates_and_derived_order_ids_are_counted_across_batches(tmp_path):
    # batches of 2 rows: [1, 2] [3, 4] [5, 6]; o1 comes back in the third batch, and with no order_id column the
    # second A/2026-01-03/10 row must be occurrence 1 of its content although it is in another batch
    tx = ("cust,date,dollar_value,order\nA,2026-01-03,10,o1\nB,2026-01-04,5,o2\nA,2026-01-03,10,o3\n"
          "B,2026-01-05,6,o4\nA,2026-01-06,7,o1\nC,2026-01-07,8,o5\n")
    mapping = {k: v for k, v in MAPPING.items() if k != "currency"}
    config = _setup(tmp_path, tx, mapping)
    result = ingest(load_config(config, {"validation.batch_rows": 2}), AS_OF, run_id="r")
    report = result.reports["transactions"]
    assert (report.rows_in, report.rows_ok, report.reasons) == (6, 5, {"duplicate order_id": 1})
    quarantine = pd.read_parquet(report.quarantine_path)
    assert quarantine[["order", "source_line", "source_row"]].to_dict("records") == [
        {"order": "o1", "source_line": 6, "source_row": 4}]
    (tmp_path / "derived").mkdir()
    config = _setup(tmp_path / "derived", tx, {k: v for k, v in mapping.items() if k != "order_id"})
    ids = {}
    for rows in (2, 1_000_000):
        tables = ingest(load_config(config, {"validation.batch_rows": rows}), AS_OF, run_id="r").tables
        ids[rows] = tables["transactions"]["order_id"].tolist()
    assert ids[2] == ids[1_000_000] and len(set(ids[2])) == 6
    assert ids[2][0].endswith("-0") and ids[2][2] == ids[2][0][:-1] + "1"
