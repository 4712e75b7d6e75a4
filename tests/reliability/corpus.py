"""The validation corpus: classes of bad input, each with the outcome a data engineer expects from `churn validate`.

Each :class:`Case` writes its small input files into a fresh folder and says what must happen: either one clear
error line (a fragment of it, as a regular expression) or a finished validation with so many rows kept and
quarantined (and, where it matters, the reasons and a check of the values). :func:`run_case` runs one case and
returns its counts; ``tests/reliability/test_validation_corpus.py`` and ``bench/bench_reliability.py`` iterate
over :data:`CASES`. Every finished validation must conserve rows: per table, rows read from the source = rows
kept + rows quarantined + rows suppressed (forgotten customers).
"""

from __future__ import annotations

import datetime as dt
import gzip
import re
import sqlite3
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

AS_OF = dt.date(2026, 12, 31)
HEADER = "customer_id,ts,amount,order_id\n"
ALL = {"max_reject_share": 1.0}  # keep what can be kept, however much is rejected

Input = str | bytes | pd.DataFrame | Callable[[Path], None]


@dataclass
class CaseRun:
    """What a finished (or failed) case left, for its ``check``."""

    folder: Path
    message: str
    result: object | None  # features.ingest.IngestResult when the validation finished
    quarantine: dict[str, pd.DataFrame]

    def table(self, name: str = "transactions") -> pd.DataFrame:
        return self.result.tables[name]


@dataclass(frozen=True)
class Case:
    """One class of bad input and its expected outcome.

    ``inputs`` maps a file name (relative to the case's folder, which is ``data_dir``) to its content: text
    (written as UTF-8, line endings as given), bytes, a DataFrame (written as Parquet) or a function that writes
    the file itself. ``error`` is a regular expression the one-line error must match; otherwise the validation
    must finish with ``kept`` and ``quarantined`` rows of ``table`` (when given), exactly ``reasons`` (when
    given) and pass ``check``.
    """

    name: str
    what: str
    inputs: dict[str, Input]
    tables: dict | None = None  # default: transactions from tx.csv
    settings: dict = field(default_factory=dict)
    error: str | None = None
    not_in_message: tuple[str, ...] = ()
    kept: int | None = None
    quarantined: int | None = None
    reasons: dict[str, int] | None = None
    table: str = "transactions"
    forget: tuple[str, ...] = ()
    check: Callable[[CaseRun], None] | None = None


def _tx(**extra) -> dict:
    return {"transactions": {"source": {"path": "tx.csv"}, **extra}}


def _ts(expected: dict[str, str]) -> Callable[[CaseRun], None]:
    """Check: the kept transactions' ``ts`` by ``order_id`` (naive, in the configured time zone)."""
    def check(run: CaseRun) -> None:
        got = run.table().set_index("order_id")["ts"].to_dict()
        want = {k: pd.Timestamp(v) for k, v in expected.items()}
        assert got == want, f"ts {got} != {want}"
    return check


def _provenance(expected: list[tuple[str | None, int | None, int]],
                table: str = "transactions") -> Callable[[CaseRun], None]:
    """Check: the quarantined rows' (source_file, source_line, source_row), in any order."""
    def check(run: CaseRun) -> None:
        q = run.quarantine[table]
        got = sorted((None if pd.isna(f) else f, None if pd.isna(line) else int(line), int(row))
                     for f, line, row in zip(q["source_file"], q["source_line"], q["source_row"]))
        assert got == sorted(expected, key=str), f"provenance {got} != {expected}"
    return check


def _parquet(frame: pd.DataFrame) -> Callable[[Path], None]:
    return lambda path: frame.to_parquet(path, index=False)


def _gzip(text: str) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(gzip.compress(text.encode()))


def _sqlite(rows: list[tuple]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with sqlite3.connect(path) as conn:
            conn.execute("create table orders (customer_id text, ts text, amount real, order_id text)")
            conn.executemany("insert into orders values (?, ?, ?, ?)", rows)
        conn.close()
    return write


def _orders_left(run: CaseRun) -> None:
    with sqlite3.connect(run.folder / "shop.db") as conn:
        left = conn.execute("select count(*) from orders").fetchone()[0]
    conn.close()
    assert left == 2, f"the source database lost rows: {left} left of 2"


def _missing_db_not_created(run: CaseRun) -> None:
    assert not (run.folder / "missing.db").exists(), "reading the source created missing.db"


def _config_base_currency(run: CaseRun) -> None:
    assert set(run.table()["currency"]) == {"USD"}, set(run.table()["currency"])


def _one_customer(run: CaseRun) -> None:
    assert set(run.table()["customer_id"]) == {"A"}, set(run.table()["customer_id"])


def _customers(expected: set[str]) -> Callable[[CaseRun], None]:
    def check(run: CaseRun) -> None:
        assert set(run.table()["customer_id"]) == expected, set(run.table()["customer_id"])
    return check


def _discount_null(run: CaseRun) -> None:
    tx = run.table()
    assert "discount" in tx.columns and tx["discount"].isna().all(), tx.get("discount")


def _long_values_kept(run: CaseRun) -> None:
    tx = run.table().set_index("order_id")
    assert len(tx.loc["o1", "category"]) == 200_000 and len(tx.loc["o1", "customer_id"]) == 1_000


CASES: tuple[Case, ...] = (
    # ---- the cases of issue 16 ----------------------------------------------------------------------------------
    Case("offset with hours only", "'+02' (no minutes), '+0530' and 'Z' offsets, converted to America/New_York",
         {"tx.csv": HEADER + "A,2026-10-05T00:00:00+02,5,o1\nA,2026-10-05T10:00+0530,5,o2\n"
                             "A,2026-10-05T12:00:00Z,5,o3\n"},
         settings={"timezone": "America/New_York"}, kept=3, quarantined=0,
         check=_ts({"o1": "2026-10-04 18:00", "o2": "2026-10-05 00:30", "o3": "2026-10-05 08:00"})),
    Case("date_format does not match the data", "ISO dates with date_format '%d-%m-%Y', default threshold",
         {"tx.csv": HEADER + "A,2026-10-05,5,o1\nA,2026-10-06,5,o2\nA,07-10-2026,5,o3\n"},
         _tx(date_format="%d-%m-%Y"),
         error=r"transactions: 2 of 3 rows rejected \(66\.67%\): unparseable ts: 2 \(e\.g\. '2026-10-05' in column "
               r"'ts', which does not match tables\.transactions\.date_format '%d-%m-%Y'\), see .*above "
               r"validation\.max_reject_share"),
    Case("date_format does not match some rows", "one ISO date among '%d-%m-%Y' dates, threshold 1.0",
         {"tx.csv": HEADER + "A,2026-10-05,5,o1\nA,06-10-2026,5,o2\nA,07-10-2026,5,o3\n"},
         _tx(date_format="%d-%m-%Y"), settings={"validation": ALL}, kept=2, quarantined=1,
         reasons={"unparseable ts": 1}, check=_ts({"o2": "2026-10-06", "o3": "2026-10-07"})),
    Case("amounts out of range", "1e13, -1e13, 1e308, 1e999, inf, -inf; 999999999999.99 is still an amount",
         {"tx.csv": HEADER + "".join(f"A,2026-10-05,{v},o{i}\n" for i, v in enumerate(
             ["1e13", "-1e13", "1e308", "1e999", "inf", "-inf", "999999999999.99", "5"]))},
         settings={"validation": ALL}, kept=2, quarantined=6,
         reasons={"amount out of range (|amount| >= 1e12 USD, or not finite)": 6}),
    Case("large local amount in a weak currency", "5e12 JPY at 0.0067 USD is 3.35e10 USD: kept",
         {"tx.csv": "customer_id,ts,amount,order_id,currency\nA,2026-10-05,5e12,o1,JPY\nA,2026-10-05,2e14,o2,JPY\n",
          "fx.csv": "date,currency,rate_to_base\n2026-10-05,JPY,0.0067\n"},
         {**_tx(), "fx_rates": {"source": {"path": "fx.csv"}}}, settings={"validation": ALL}, kept=1,
         quarantined=1, reasons={"amount out of range (|amount| >= 1e12 USD, or not finite)": 1}),
    Case("quantity beyond int64", "quantities 99999999999999999999, 1e19, 2.5 (rejected) and -3, 7 (kept: a "
                                  "negative quantity is a return)",
         {"tx.csv": "customer_id,ts,amount,order_id,quantity\n" + "".join(
             f"A,2026-10-05,5,o{i},{q}\n" for i, q in enumerate(["99999999999999999999", "1e19", "2.5", "-3", "7"]))},
         settings={"validation": ALL}, kept=2, quarantined=3,
         reasons={"quantity out of range (|quantity| >= 2^53)": 2, "non-integer quantity": 1}),
    Case("unknown csv_encoding", "csv_encoding: utf-9", {"tx.csv": HEADER + "A,2026-10-05,5,o1\n"},
         {"transactions": {"source": {"path": "tx.csv", "csv_encoding": "utf-9"}}},
         error=r"'tables\.transactions\.source\.csv_encoding': unknown text encoding 'utf-9'"),
    Case("day-first date_format year is no offset", "'05-10-2026' with date_format '%d-%m-%Y' in America/New_York",
         {"tx.csv": HEADER + "A,05-10-2026,5,o1\nA,31-12-2026,5,o2\n"}, _tx(date_format="%d-%m-%Y"),
         settings={"timezone": "America/New_York"}, kept=2, quarantined=0,
         check=_ts({"o1": "2026-10-05", "o2": "2026-12-31"})),
    Case("month-first date_format year is no offset", "'10-05-2026' with date_format '%m-%d-%Y' in New York",
         {"tx.csv": HEADER + "A,10-05-2026,5,o1\n"}, _tx(date_format="%m-%d-%Y"),
         settings={"timezone": "America/New_York"}, kept=1, quarantined=0, check=_ts({"o1": "2026-10-05"})),
    Case("offset with a date_format without %z", "'05-10-2026 10:00+02:00' with date_format '%d-%m-%Y %H:%M'",
         {"tx.csv": HEADER + "A,05-10-2026 10:00+02:00,5,o1\nA,05-10-2026 10:00,5,o2\n"},
         _tx(date_format="%d-%m-%Y %H:%M"), settings={"validation": ALL, "timezone": "America/New_York"},
         kept=1, quarantined=1, reasons={"unparseable ts (a UTC offset, but the date_format has no %z)": 1},
         check=_ts({"o2": "2026-10-05 10:00"})),
    Case("offset with a date_format with %z", "'05-10-2026 10:00+0200' with date_format '%d-%m-%Y %H:%M%z'",
         {"tx.csv": HEADER + "A,05-10-2026 10:00+0200,5,o1\nA,05-10-2026 10:00,5,o2\n"},
         _tx(date_format="%d-%m-%Y %H:%M%z"), settings={"validation": ALL, "timezone": "America/New_York"},
         kept=1, quarantined=1, reasons={"unparseable ts": 1}, check=_ts({"o1": "2026-10-05 04:00"})),
    Case("duplicated header name", "two columns named 'amount' (pandas would read the second as 'amount.1')",
         {"tx.csv": "customer_id,ts,amount,amount\nA,2026-10-05,5,6\n"},
         error=r"transactions: '.*tx\.csv' has the column name\(s\) \['amount'\] more than once"),
    Case("missing id spellings", "customer_id nan, NULL, None, N/A, null, NaN, '', blanks and NA; order_id None",
         {"tx.csv": HEADER + "".join(f"{c},2026-10-05,5,o{i}\n" for i, c in enumerate(
             ["nan", "NULL", "None", "N/A", "null", "NaN", "", "   ", "NA", '" "'])) + "A,2026-10-05,5,None\n"
          + "B,2026-10-05,5,o99\n"},
         settings={"validation": ALL}, kept=1, quarantined=11,
         reasons={"missing customer_id": 10, "missing order_id": 1}),
    Case("missing ticket_id spellings", "support_tickets with ticket_id NULL and #N/A",
         {"tx.csv": HEADER + "A,2026-10-05,5,o1\n",
          "tickets.csv": "customer_id,opened_at,ticket_id\nA,2026-10-05,NULL\nA,2026-10-05,#N/A\nA,2026-10-05,t1\n"},
         {**_tx(), "support_tickets": {"source": {"path": "tickets.csv"}}}, settings={"validation": ALL},
         table="support_tickets", kept=1, quarantined=2, reasons={"missing ticket_id": 2}),
    Case("null spellings in values", "amount NULL (missing, required), discount None and currency null (missing, "
                                     "optional: kept as missing and in the base currency)",
         {"tx.csv": "customer_id,ts,amount,order_id,discount,currency\nA,2026-10-05,NULL,o1,,USD\n"
                    "A,2026-10-05,5,o2,None,null\n"},
         settings={"validation": ALL}, kept=1, quarantined=1, reasons={"missing amount": 1},
         check=lambda run: (_discount_null(run), _config_base_currency(run))),
    Case("base_currency in lower case", "base_currency: usd, currencies USD, usd and none",
         {"tx.csv": "customer_id,ts,amount,order_id,currency\nA,2026-10-05,5,o1,USD\nA,2026-10-05,5,o2,usd\n"
                    "A,2026-10-05,5,o3,\n"},
         settings={"base_currency": "usd"}, kept=3, quarantined=0, check=_config_base_currency),
    Case("base_currency not ISO", "base_currency: dollars", {"tx.csv": HEADER + "A,2026-10-05,5,o1\n"},
         settings={"base_currency": "dollars"}, error=r"'base_currency': 'dollars' is not an ISO 4217 currency code"),
    Case("missing SQLite file", "tables.transactions.source.url names a file that does not exist", {},
         {"transactions": {"source": {"url": "sqlite:///{folder}/missing.db", "table": "orders"}}},
         error=r"no such database file .*missing\.db", check=_missing_db_not_created),
    Case("SQLite source is opened read-only", "a query that would delete the source's rows",
         {"shop.db": _sqlite([("A", "2026-10-05", 5.0, "o1"), ("B", "2026-10-05", 6.0, "o2")])},
         {"transactions": {"source": {"url": "sqlite:///{folder}/shop.db",
                                      "query": "delete from orders returning *"}}},
         error=r"cannot read from .*attempt to write a readonly database", check=_orders_left),
    Case("glob of several files: provenance", "two CSV files of a glob with a bad row each: quarantine names the "
                                              "file, its line and its row in that file",
         {"exports/orders-1.csv": HEADER + "A,2026-10-05,5,o1\nA,bad,5,o2\n",
          "exports/orders-2.csv": HEADER + "B,2026-10-05,5,o3\nB,2026-10-05,5,o4\nB,2026-10-05,x,o5\n"},
         {"transactions": {"source": {"path": "exports/orders-*.csv"}}}, settings={"validation": ALL},
         kept=3, quarantined=2,
         check=_provenance([("exports/orders-1.csv", 3, 1), ("exports/orders-2.csv", 4, 2)])),
    Case("provenance after suppression", "a forgotten customer's rows come first; the bad row's line is still "
                                         "its line in the file",
         {"tx.csv": HEADER + "F,2026-10-05,5,o1\nF,2026-10-05,5,o2\nA,2026-10-05,5,o3\nA,nope,5,o4\n"},
         settings={"validation": ALL}, forget=("F",), kept=1, quarantined=1,
         check=_provenance([("tx.csv", 5, 3)])),
    Case("every row rejected, threshold 1.0", "no valid row at all with validation.max_reject_share: 1.0",
         {"tx.csv": HEADER + "A,soon,5,o1\nB,later,5,o2\n"}, settings={"validation": ALL},
         error=r"transactions: 2 of 2 rows rejected \(100\.00%\): unparseable ts: 2 .*No row of transactions is "
               r"valid, and a table without valid rows cannot be used",
         not_in_message=(".validated-", "run `churn validate`")),
    # ---- what a demanding data engineer adds --------------------------------------------------------------------
    Case("UTF-8 byte-order mark", "Excel's UTF-8: a BOM before the first header name",
         {"tx.csv": ("\ufeff" + HEADER + "A,2026-10-05,5,o1\n").encode()}, kept=1, quarantined=0),
    Case("CRLF line endings", "Windows line endings; the bad row's line number is still right",
         {"tx.csv": (HEADER + "A,2026-10-05,5,o1\nA,2026-10-05,abc,o2\n").replace("\n", "\r\n")},
         settings={"validation": ALL}, kept=1, quarantined=1, reasons={"non-numeric amount": 1},
         check=_provenance([("tx.csv", 3, 1)])),
    Case("semicolon-delimited file", "';' separators read with the default ','",
         {"tx.csv": "customer_id;ts;amount\nA;2026-10-05;5\n"},
         error=r"column 'customer_id' is missing.*separated by ';'.*csv_delimiter"),
    Case("semicolon-delimited file, delimiter set", "';' separators with csv_delimiter: ';'",
         {"tx.csv": "customer_id;ts;amount\nA;2026-10-05;5\n"},
         {"transactions": {"source": {"path": "tx.csv", "csv_delimiter": ";"}}}, kept=1, quarantined=0),
    Case("header only", "a CSV file with a header and no rows", {"tx.csv": HEADER},
         error=r"transactions: the source has no rows"),
    Case("empty file", "a CSV file of zero bytes", {"tx.csv": ""}, error=r"transactions: the source has no rows"),
    Case("blank lines only", "a CSV file of blank lines", {"tx.csv": "\n\n  \n"},
         error=r"transactions: the source has no rows"),
    Case("embedded newlines", "a quoted category spanning three lines and a blank line: line numbers follow the "
                              "file",
         {"tx.csv": "customer_id,ts,amount,order_id,category\nA,2026-10-05,5,o1,\"two\nline\nvalue\"\n\n"
                    "A,2026-10-05,abc,o2,x\n"},
         settings={"validation": ALL}, kept=1, quarantined=1, check=_provenance([("tx.csv", 6, 1)])),
    Case("mixed date formats", "ISO dates mixed with '10/05/2026' and '5 Oct 2026' (ambiguous or not ISO: "
                               "rejected, never guessed) and '2026/10/05' (year first: read as ISO)",
         {"tx.csv": HEADER + "A,2026-10-05,5,o1\nA,10/05/2026,5,o2\nA,5 Oct 2026,5,o3\nA,2026/10/06,5,o4\n"},
         settings={"validation": ALL}, kept=2, quarantined=2, reasons={"unparseable ts": 2},
         check=_ts({"o1": "2026-10-05", "o4": "2026-10-06"})),
    Case("whitespace around ids", "' A', 'A ' and 'A' are one customer; ' o1' repeats 'o1'",
         {"tx.csv": HEADER + " A,2026-10-05,5,o1\nA ,2026-10-06,5, o1\nA,2026-10-07,5,o2\n"},
         settings={"validation": ALL}, kept=2, quarantined=1, reasons={"duplicate order_id": 1},
         check=_one_customer),
    Case("thousands separator", "'1,234.50' and '1.234,50' (quoted) are rejected with a reason that says why",
         {"tx.csv": HEADER + 'A,2026-10-05,"1,234.50",o1\nA,2026-10-05,"1.234,50",o2\nA,2026-10-05,1234.50,o3\n'},
         settings={"validation": ALL}, kept=1, quarantined=2,
         reasons={"non-numeric amount (a thousands separator or decimal comma: write the number as 1234.5)": 2}),
    Case("optional column all empty", "a discount column with no value at all: kept, discount missing",
         {"tx.csv": "customer_id,ts,amount,order_id,discount\nA,2026-10-05,5,o1,\nB,2026-10-05,5,o2,\n"},
         kept=2, quarantined=0, check=_discount_null),
    Case("required column all empty", "an amount column with no value at all",
         {"tx.csv": HEADER + "A,2026-10-05,,o1\nB,2026-10-05,,o2\n"},
         error=r"2 of 2 rows rejected \(100\.00%\): missing amount: 2"),
    Case("Excel serial dates", "dates exported as Excel day numbers (46300)",
         {"tx.csv": HEADER + "A,46300,5,o1\nA,46301,5,o2\n"},
         error=r"unparseable ts: 2 \(e\.g\. '46300' in column 'ts', a number \(an Excel serial date\?\)"),
    Case("gzipped CSV", "tx.csv.gz", {"tx.csv.gz": _gzip(HEADER + "A,2026-10-05,5,o1\nA,x,5,o2\n")},
         {"transactions": {"source": {"path": "tx.csv.gz"}}}, settings={"validation": ALL}, kept=1, quarantined=1,
         check=_provenance([("tx.csv.gz", 3, 1)])),
    Case("very long strings", "a 200,000-character category and a 1,000-character id (beyond the csv module's "
                              "default field limit): kept, line numbers intact",
         {"tx.csv": "customer_id,ts,amount,order_id,category\n" + "C" * 1_000 + ",2026-10-05,5,o1," + "x" * 200_000
          + "\nA,2026-10-05,abc,o2,y\n"},
         settings={"validation": ALL}, kept=1, quarantined=1, check=lambda run: (
             _long_values_kept(run), _provenance([("tx.csv", 3, 1)])(run))),
    Case("non-UTF-8 bytes", "a cp1252 'é' in a file read as UTF-8",
         {"tx.csv": (HEADER + "A,2026-10-05,5,o1\nCaf\xe9,2026-10-05,5,o2\n").encode("cp1252")},
         error=r"transactions: '.*tx\.csv' is not utf-8 text \(byte 0xe9 on line 3\); set "
               r"tables\.transactions\.source\.csv_encoding"),
    Case("non-UTF-8 bytes, encoding set", "the same file with csv_encoding: cp1252",
         {"tx.csv": (HEADER + "A,2026-10-05,5,o1\nCaf\xe9,2026-10-05,5,o2\n").encode("cp1252")},
         {"transactions": {"source": {"path": "tx.csv", "csv_encoding": "cp1252"}}}, kept=2, quarantined=0,
         check=_customers({"A", "Caf\xe9"})),
    Case("Parquet glob with id types that differ", "customer_id int64 in one file, text in another, float with a "
                                                   "gap in a third: 7, '7' and 7.0 are one customer",
         {"p/a.parquet": _parquet(pd.DataFrame({"customer_id": [7, 8], "ts": ["2026-10-05"] * 2,
                                                "amount": [1.0, 2.0]})),
          "p/b.parquet": _parquet(pd.DataFrame({"customer_id": ["7", "9"], "ts": ["2026-10-05"] * 2,
                                                "amount": [1.0, 2.0]})),
          "p/c.parquet": _parquet(pd.DataFrame({"customer_id": [7.0, None], "ts": ["2026-10-05"] * 2,
                                                "amount": [1.0, 2.0]}))},
         {"transactions": {"source": {"path": "p/*.parquet"}}}, settings={"validation": ALL}, kept=5,
         quarantined=1, reasons={"missing customer_id": 1}, check=lambda run: (
             _customers({"7", "8", "9"})(run), _provenance([("p/c.parquet", 2, 1)])(run))),
    Case("row with an extra field", "a row with more fields than the header (an unquoted delimiter in a value)",
         {"tx.csv": HEADER + "A,2026-10-05,5,o1\nA,2026-10-05,5,o2,oops\n"},
         error=r"cannot read '.*tx\.csv' as CSV: Expected 4 fields in line 3, saw 5"),
    Case("trailing delimiter", "every line ends with ',' (an unnamed empty last column): ignored",
         {"tx.csv": "customer_id,ts,amount,\nA,2026-10-05,5,\n"}, kept=1, quarantined=0),
    Case("SQL result with a repeated column", "select amount twice",
         {"shop.db": _sqlite([("A", "2026-10-05", 5.0, "o1")])},
         {"transactions": {"source": {"url": "sqlite:///{folder}/shop.db",
                                      "query": "select customer_id, ts, amount, amount from orders"}}},
         error=r"has the column name\(s\) \['amount'\] more than once"),
    Case("SQL query with a syntax error", "query: 'selec * from orders'",
         {"shop.db": _sqlite([("A", "2026-10-05", 5.0, "o1")])},
         {"transactions": {"source": {"url": "sqlite:///{folder}/shop.db", "query": "selec * from orders"}}},
         error=r"transactions: cannot read from '.*shop\.db': .*syntax error; check tables\.transactions\.source"),
    Case("SQL source provenance", "a bad row of a SQL result: no file, its row number (1-based) and position "
                                  "(0-based) in the result",
         {"shop.db": _sqlite([("A", "2026-10-05", 5.0, "o1"), ("B", "bad", 6.0, "o2")])},
         {"transactions": {"source": {"url": "sqlite:///{folder}/shop.db", "table": "orders"}}},
         settings={"validation": ALL}, kept=1, quarantined=1, check=_provenance([(None, 2, 1)])),
    Case("every row of a table suppressed", "the only customer of the file was forgotten",
         {"tx.csv": HEADER + "F,2026-10-05,5,o1\n"}, forget=("F",),
         error=r"transactions: every one of its 1 rows belongs to a customer on the suppression list"),
    Case("date_format without a year", "date_format: '%d-%m'", {"tx.csv": HEADER + "A,05-10,5,o1\n"},
         _tx(date_format="%d-%m"), error=r"'tables\.transactions\.date_format': date_format '%d-%m' has no year"),
    Case("date_format with an unknown directive", "date_format: '%Y-%Q'", {"tx.csv": HEADER + "A,2026-10,5,o1\n"},
         _tx(date_format="%Y-%Q"), error=r"date_format '%Y-%Q' is not a strftime format"),
    Case("Parquet timestamps with a time zone", "a tz-aware UTC timestamp column, converted to Europe/Prague",
         {"tx.parquet": _parquet(pd.DataFrame({"customer_id": ["A"], "order_id": ["o1"], "amount": [5.0],
                                               "ts": pd.to_datetime(["2026-10-05 22:30"]).tz_localize("UTC")}))},
         {"transactions": {"source": {"path": "tx.parquet"}}}, settings={"timezone": "Europe/Prague"}, kept=1,
         quarantined=0, check=_ts({"o1": "2026-10-06 00:30"})),
)


def _in_folder(value, folder: Path):
    """``value`` with '{folder}' in its texts replaced by the case's folder (SQLite URLs)."""
    if isinstance(value, dict):
        return {k: _in_folder(v, folder) for k, v in value.items()}
    return value.replace("{folder}", str(folder)) if isinstance(value, str) else value


def _write_inputs(case: Case, folder: Path) -> Path:
    for name, content in case.inputs.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8", newline="")
        elif isinstance(content, pd.DataFrame):
            content.to_parquet(path, index=False)
        else:
            content(path)
    tables = _in_folder(case.tables or _tx(), folder)
    config = {"data_dir": str(folder), "as_of": AS_OF.isoformat(), "tables": tables, **case.settings}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _quarantine(folder: Path) -> dict[str, pd.DataFrame]:
    root = folder / "quarantine"
    return {p.name: pd.concat([pd.read_parquet(f) for f in sorted(p.glob("*.parquet"))], ignore_index=True)
            for p in sorted(root.iterdir()) if any(p.glob("*.parquet"))} if root.exists() else {}


def _problem(case: Case, outcome: str, message: str, run: CaseRun, counts: dict[str, dict]) -> str | None:
    """Why the case did not turn out as expected (None: it did)."""
    if outcome == "crash":
        return f"a traceback instead of a clear error: {message}"
    if "\n" in message:
        return f"the message is not one line: {message!r}"
    if "__source" in message or any(c.startswith("__source") for q in run.quarantine.values() for c in q.columns):
        return "the hidden provenance columns leaked into the message or the quarantine"
    if run.result is not None and any(c.startswith("__source") for t in run.result.tables.values() for c in t.columns):
        return "the hidden provenance columns leaked into a validated table"
    if case.error is not None:
        if outcome != "error":
            return f"expected an error matching {case.error!r}, but the validation finished"
        if not re.search(case.error, message):
            return f"the error {message!r} does not match {case.error!r}"
        forbidden = [text for text in case.not_in_message if text in message]
        if forbidden:
            return f"the error names {forbidden}: {message!r}"
    else:
        if outcome != "ok":
            return f"expected a finished validation, got the error {message!r}"
        main = counts.get(case.table, {})
        for key in ("kept", "quarantined"):
            if getattr(case, key) is not None and main.get(key) != getattr(case, key):
                return f"{case.table}: {key} {main.get(key)} != expected {getattr(case, key)}"
        reasons = run.result.reports[case.table].reasons
        if case.reasons is not None and reasons != case.reasons:
            return f"{case.table}: reasons {reasons} != expected {case.reasons}"
        for table, c in counts.items():
            if c["rows_read"] != c["kept"] + c["quarantined"] + c["suppressed"]:
                return f"{table}: rows are not conserved: {c}"
    if case.check is not None:
        try:
            case.check(run)
        except AssertionError as exc:
            return f"check failed: {exc}"
    return None


def run_case(case: Case, folder: Path, batch_rows: int | None = None) -> dict:
    """Write the case's inputs into ``folder`` (its data_dir), validate them, and say what happened.

    Returns ``outcome`` ('ok' for a finished validation, 'error' when it stopped), ``crashed`` (it stopped with
    an exception other than a :class:`common.errors.ChurnError`: a traceback, never expected), ``rows_read`` (read
    again from the sources, independently of the validation), ``kept``, ``quarantined`` (rows in the quarantine
    files) and ``suppressed``, summed over the tables that finished, the same per table under ``tables``,
    ``message`` (the error line; for a crash the exception's last line), ``passed`` (whether the outcome is the
    expected one) and ``problem`` (why not).
    """
    from common.config import load_config
    from common.errors import ChurnError
    from common.privacy import add_suppressed
    from features.ingest import ingest
    from features.sources import read_source

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = _write_inputs(case, folder)
    if case.forget:
        add_suppressed(folder, list(case.forget))
    reports, result, cfg = {}, None, None
    try:
        cfg = load_config(config, {"validation.batch_rows": batch_rows} if batch_rows else None)
        result = ingest(cfg, AS_OF, run_id="corpus", on_table=lambda name, report: reports.__setitem__(name, report))
        outcome, message = "ok", ""
    except ChurnError as exc:
        outcome, message = "error", str(exc)
    except Exception:  # noqa: BLE001 - a traceback is what the corpus exists to catch
        outcome, message = "crash", traceback.format_exc(limit=-3).strip().splitlines()[-1]
    quarantine = _quarantine(folder)
    counts = {}
    for name, report in reports.items():
        counts[name] = {"rows_read": len(read_source(cfg, name)),
                        "kept": report.rows_ok if result is None else len(result.tables[name]),
                        "quarantined": len(quarantine.get(name, ())), "suppressed": report.suppressed}
    run = CaseRun(folder, message, result, quarantine)
    problem = _problem(case, outcome, message, run, counts)
    totals = {key: sum(c[key] for c in counts.values()) for key in ("rows_read", "kept", "quarantined", "suppressed")}
    return {"outcome": "error" if outcome == "crash" else outcome, "crashed": outcome == "crash", **totals,
            "tables": counts, "message": message, "passed": problem is None, "problem": problem}
