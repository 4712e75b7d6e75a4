"""Ingest and validate every configured table against the data contract; quarantine what breaks it.

A row that breaks the contract is never dropped silently: it is written, with its original values and a
``reject_reason``, to ``<data_dir>/quarantine/<table>/<run_id>.parquet``. Clean tables are typed and renamed to
the contract's column names (timestamps naive, in the configured time zone; amounts converted to the base
currency) and written to ``<data_dir>/validated/`` only when every table passes, so a failed run leaves the last
good outputs untouched. Customer PII is split off into ``validated/customer_contacts.parquet``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pycountry

from common.config import PipelineConfig
from features.contract import CONTRACT, PII_COLUMNS, Column, value_checks
from common.errors import DataError
from common.files import replace_folder
from common.privacy import load_suppressed, suppressed_mask
from features.sources import PROVENANCE, SOURCE_FILE, SOURCE_LINE, SOURCE_ROW, SourceBatches, source_batches

# fx_rates first (transactions need it), customers second (other tables are checked against it)
INGEST_ORDER = ("fx_rates", "customers", "transactions", "support_tickets", "surveys", "web_sessions",
                "email_events", "subscriptions")
# A UTC offset ('Z', '+HH', '+HHMM' or '+HH:MM') ends a timestamp only right after its time of day (hh:mm[:ss[.f]]
# or ISO's basic Thh[mm[ss]]): the '-2026' of '05-10-2026' is a year, not an offset of -20:26.
_OFFSET = re.compile(r"(?:\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?|T\d{2}(?:\d{2}(?:\d{2}(?:[.,]\d+)?)?)?)"
                     r"\s?(?:Z|[+-]\d{2}(?::?\d{2})?)$")
# How exports write a missing value; in these kinds of column they are missing, not text. Text columns (names,
# categories, plans) keep them, since 'None' may be a real value there, and so do country codes ('NA' is Namibia).
_MISSING = frozenset({"", "nan", "-nan", "nat", "null", "none", "n/a", "na", "<na>", "#n/a", "#na", "nil"})
_MISSING_KINDS = frozenset({"id", "timestamp", "date", "float", "int", "bool", "currency"})
# Money is summed in whole millionths of the base currency in 64-bit integers by the feature engine
# (features.definitions.MICROS): one customer's total must stay below 2**63 / 1e6 = 9.2e12. An amount this large
# is an error in the data (or in the exchange rate), not an order.
MAX_AMOUNT = 1e12
_MAX_AMOUNT_TEXT = "1e12"
MONEY_COLUMNS = ("amount", "discount", "monthly_amount")
# Whole numbers are exact in a 64-bit float (which every numeric column passes through) below 2**53.
MAX_INT = 2**53
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:[,.' ]\d{3})+(?:[.,]\d+)?$|^[+-]?\d+,\d+$")
_ISO_CURRENCIES = frozenset(c.alpha_3 for c in pycountry.currencies)
_ISO_COUNTRIES = frozenset(c.alpha_2 for c in pycountry.countries)
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


@dataclass
class TableReport:
    """What happened to one table."""

    table: str
    rows_in: int
    rows_ok: int
    reasons: dict[str, int] = field(default_factory=dict)
    quarantine_path: Path | None = None
    suppressed: int = 0  # rows of forgotten customers dropped before validation (common.privacy)
    hints: dict[str, str] = field(default_factory=dict)  # reason -> an example of a rejected value, what to do
    unmapped: list[str] = field(default_factory=list)  # source columns no contract column reads
    unfilled: list[str] = field(default_factory=list)  # optional contract columns the source does not provide

    @property
    def unmapped_message(self) -> str | None:
        """What the unused source columns are and the config key that would map one (None when all are used)."""
        if not self.unmapped:
            return None
        options = (f"; this table's contract columns without a source column: {', '.join(self.unfilled)}"
                   if self.unfilled else "")
        return (f"{self.table}: source column(s) {', '.join(repr(c) for c in self.unmapped)} not used; to use one, "
                f"set tables.{self.table}.columns.<contract column>: <source column>{options}")

    @property
    def rejected(self) -> int:
        return self.rows_in - self.rows_ok

    @property
    def rejected_share(self) -> float:
        return self.rejected / self.rows_in if self.rows_in else 0.0


@dataclass
class IngestResult:
    """Validated tables (contract names and types) and a report per table."""

    run_id: str
    as_of: dt.date
    tables: Mapping[str, pd.DataFrame]  # read from the validated files when asked for (see ingest)
    contacts_source: pd.DataFrame | Path | None  # the customers' contact columns, or their file
    reports: dict[str, TableReport]

    @property
    def contacts(self) -> pd.DataFrame | None:
        """The customers' contact (PII) columns with their ids, or None without any."""
        source = self.contacts_source
        return pd.read_parquet(source) if isinstance(source, Path) else source


class _Reasons:
    """Collects reject reasons per row; a row may have several, joined with '; '."""

    def __init__(self, index: pd.Index):
        self.values = pd.Series(pd.NA, index=index, dtype="object")

    def add(self, mask: pd.Series | np.ndarray, reason: str) -> None:
        mask = pd.Series(mask, index=self.values.index).fillna(False).astype(bool)
        if not mask.any():
            return
        current = self.values[mask]
        self.values[mask] = current.where(current.isna(), current + "; " + reason).fillna(reason)

    def add_each(self, problems: pd.Series) -> None:
        """Add each row's reason of ``problems`` (a reason text per row, missing where there is none)."""
        for reason in problems.dropna().unique():
            self.add(problems.eq(reason), str(reason))

    @property
    def rejected(self) -> pd.Series:
        return self.values.notna()


def _text(series: pd.Series) -> pd.Series:
    """Values as stripped text; empty strings become missing."""
    if pd.api.types.is_float_dtype(series) and series.dropna().mod(1).eq(0).all():
        series = series.astype("Int64")  # ids read as floats (a column with gaps) keep no trailing '.0'
    elif series.dtype == object:  # files of a glob stacked with different types: 7 and 7.0 and '7' are one id
        series = series.map(lambda v: int(v) if isinstance(v, float) and v.is_integer() else v)
    out = series.astype("str").str.strip()
    return out.where(series.notna() & out.ne(""))


def _present_text(series: pd.Series, kind: str) -> pd.Series:
    """:func:`_text`, with the usual spellings of a missing value (``NULL``, ``None``, ``N/A``, ``nan``, ...) as
    missing in the kinds of column where they cannot be a value."""
    text = _text(series)
    if kind in _MISSING_KINDS:
        text = text.where(~text.str.lower().isin(_MISSING))
    return text


def _to_naive(aware: pd.Series, tz: str) -> pd.Series:
    return aware.dt.tz_convert(tz).dt.tz_localize(None).astype("datetime64[us]")


def _parse_each(text: pd.Series, fmt: str | None, tz: str) -> pd.Series:
    """Value by value (slow; only when a vectorised parse met offsets it was not told about)."""
    def one(value: str):
        try:
            stamp = pd.Timestamp(pd.to_datetime(value, format=fmt or "ISO8601"))
        except (ValueError, TypeError, OverflowError):
            return pd.NaT
        return stamp.tz_convert(tz).tz_localize(None) if stamp.tzinfo is not None else stamp

    parsed = {v: one(v) for v in text.dropna().unique()}
    return pd.Series([parsed.get(v, pd.NaT) if isinstance(v, str) else pd.NaT for v in text], index=text.index,
                     dtype="datetime64[us]")


def _parse_naive(text: pd.Series, fmt: str | None, tz: str) -> pd.Series:
    try:
        parsed = pd.to_datetime(text, errors="coerce", format=fmt or "ISO8601")
    except (ValueError, TypeError):  # offsets mixed with naive values in a form the offset pattern does not know
        return _parse_each(text, fmt, tz)
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        return _parse_each(text, fmt, tz)
    return parsed.astype("datetime64[us]")


def _parse_datetime(series: pd.Series, fmt: str | None, tz: str, name: str) -> tuple[pd.Series, pd.Series]:
    """Naive timestamps in ``tz`` and a reject reason per value that is present but cannot be read.

    ISO 8601 unless ``fmt`` (a strptime format) is given. A value with a UTC offset ('Z', '+02', '+0200',
    '+02:00' after the time of day) is converted to ``tz``; with a ``fmt`` that has no ``%z``, such a value is
    rejected rather than guessed (its offset would be dropped, or its year read as one).
    """
    problems = pd.Series(pd.NA, index=series.index, dtype="object")
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return _to_naive(series, tz), problems
    if pd.api.types.is_datetime64_dtype(series):
        return series.astype("datetime64[us]"), problems
    text = _present_text(series, "timestamp")
    out = pd.Series(pd.NaT, index=series.index, dtype="datetime64[us]")
    present = text.notna()
    if fmt is not None and ("%z" in fmt or "%Z" in fmt):
        out[present] = _to_naive(pd.to_datetime(text[present], errors="coerce", format=fmt, utc=True), tz)
    elif fmt is not None:
        out[present] = _parse_naive(text[present], fmt, tz)
        offset = present & out.isna() & text.str.contains(_OFFSET, na=False)
        problems[offset] = f"unparseable {name} (a UTC offset, but the date_format has no %z)"
    else:
        offset = text.str.contains(_OFFSET, na=False)
        if offset.any():
            out[offset] = _to_naive(pd.to_datetime(text[offset], errors="coerce", format="ISO8601", utc=True), tz)
        naive = present & ~offset
        if naive.any():
            out[naive] = _parse_naive(text[naive], None, tz)
    problems[present & out.isna() & problems.isna()] = f"unparseable {name}"
    return out, problems


def _parse_bool(series: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(series):
        return series.astype("boolean")
    text = _text(series).str.lower()
    out = pd.Series(pd.NA, index=series.index, dtype="boolean")
    out[text.isin(_TRUE)] = True
    out[text.isin(_FALSE)] = False
    return out


def _parse_number(series: pd.Series, col: Column) -> tuple[pd.Series, pd.Series]:
    """Floats (or whole numbers, ``Int64``) and a reject reason per value that is present but no usable number.

    Infinite values and whole numbers of magnitude 2**53 or more are out of range; money columns (infinite ones
    too) are checked against :data:`MAX_AMOUNT` after conversion to the base currency (:func:`validate_table`).
    """
    problems = pd.Series(pd.NA, index=series.index, dtype="object")
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        text = _present_text(series, col.kind)
        present = text.notna()
        typed = pd.to_numeric(text, errors="coerce").astype("float64")
        not_number = present & typed.isna()
        problems[not_number] = f"non-numeric {col.name}" if col.kind == "float" else f"non-integer {col.name}"
        separated = not_number & text.str.match(_THOUSANDS, na=False)
        problems[separated] = (f"non-numeric {col.name} (a thousands separator or decimal comma: write the "
                               "number as 1234.5)")
    else:
        typed = series.astype("float64")
    infinite = np.isinf(typed)
    if col.kind == "int":
        problems[typed.notna() & ~infinite & typed.mod(1).ne(0)] = f"non-integer {col.name}"
        problems[typed.abs().ge(MAX_INT)] = f"{col.name} out of range (|{col.name}| >= 2^53)"
        typed = typed.where(problems.isna() & typed.notna()).astype("Int64")
    else:
        if col.name not in MONEY_COLUMNS:  # money is checked once in the base currency (validate_table)
            problems[infinite] = f"{col.name} out of range (not finite)"
        typed = typed.where(problems.isna())
    return typed, problems


def _type_column(series: pd.Series, col: Column, fmt: str | None, tz: str) -> tuple[pd.Series, pd.Series]:
    """Type one column; return the typed values and a reject reason per value that was present but invalid
    (missing where there is none)."""
    if col.kind in ("timestamp", "date"):
        typed, problems = _parse_datetime(series, fmt, tz, col.name)
        if col.kind == "date":
            typed = typed.dt.normalize()
        return typed, problems
    if col.kind in ("float", "int"):
        return _parse_number(series, col)
    text = _present_text(series, col.kind)
    if col.kind in ("id", "str"):
        typed = text
    elif col.kind == "bool":
        typed = _parse_bool(series)
    elif col.kind == "currency":
        typed = text.str.upper()
        typed = typed.where(typed.isin(_ISO_CURRENCIES))
    elif col.kind == "country":
        typed = text.str.upper()
        typed = typed.where(typed.isin(_ISO_COUNTRIES))
    else:  # pragma: no cover - the contract only uses the kinds above
        raise ValueError(f"unknown column kind {col.kind!r}")
    present = text.notna()
    problems = pd.Series(pd.NA, index=series.index, dtype="object")
    problems[present & typed.isna()] = f"{_INVALID[col.kind]} {col.name}"
    return typed, problems


_INVALID = {"id": "empty", "str": "empty", "timestamp": "unparseable", "date": "unparseable",
            "float": "non-numeric", "int": "non-integer", "bool": "not a boolean",
            "currency": "unknown currency (not ISO 4217) in", "country": "unknown country (not ISO 3166-1 alpha-2) in"}


def _map_columns(raw: pd.DataFrame, cfg: PipelineConfig, table: str) -> dict[str, str]:
    """Contract column -> source column, for the contract columns the source has; checks required ones."""
    mapping = cfg.tables[table].columns
    unknown = sorted(set(mapping) - {c.name for c in CONTRACT[table].columns})
    if unknown:
        raise DataError(f"{table}: tables.{table}.columns names {unknown}, which the contract does not have; "
                        f"expected some of {[c.name for c in CONTRACT[table].columns]}")
    found = {}
    for col in CONTRACT[table].columns:
        source_name = mapping.get(col.name, col.name)
        if source_name in raw.columns:
            found[col.name] = source_name
        elif col.required:
            raise DataError(f"{table}: column '{source_name}' is missing; found {list(map(str, raw.columns))} "
                            f"(set tables.{table}.columns.{col.name} in the config to the name of the column "
                            f"that holds {col.name}){_delimiter_hint(raw, cfg, table)}")
        elif col.name in mapping:
            raise DataError(f"{table}: tables.{table}.columns.{col.name} names '{source_name}', which is not a "
                            f"column of the source; found {list(map(str, raw.columns))}")
    return found


def _delimiter_hint(raw: pd.DataFrame, cfg: PipelineConfig, table: str) -> str:
    """When a CSV header was read as one column that holds another delimiter: say which setting to change."""
    source = cfg.tables[table].source
    if source.url or len(raw.columns) != 1:
        return ""
    found = [d for d in (";", "\t", "|", ",") if d != source.csv_delimiter and d in str(raw.columns[0])]
    if not found:
        return ""
    return (f"; the header was read as a single column, so the file may be separated by {found[0]!r}, not "
            f"{source.csv_delimiter!r}: set tables.{table}.source.csv_delimiter")


ORDER_KEY = ("customer_id", "ts", "amount")  # what a derived order_id is made of


def _order_key(df: pd.DataFrame) -> pd.Series:
    return pd.util.hash_pandas_object(df[list(ORDER_KEY)], index=False)


def _derive_order_id(df: pd.DataFrame, occurrences: np.ndarray | None = None) -> pd.Series:
    """A stable id from the row's content (customer, time, amount) plus its occurrence number (``occurrences``:
    the rows' numbers counted over the whole table, when ``df`` is one batch of it)."""
    key = _order_key(df)
    occurrence = (key.groupby(key).cumcount() if occurrences is None else
                  pd.Series(np.asarray(occurrences), index=key.index))
    return key.map("{:016x}".format) + "-" + occurrence.astype("str")


def _convert_currency(df: pd.DataFrame, date_col: str, amount_cols: list[str], fx: pd.DataFrame | None,
                      cfg: PipelineConfig, reasons: _Reasons) -> pd.DataFrame:
    """Convert ``amount_cols`` to the base currency with the latest rate on or before the row's date."""
    df = df.copy()
    if "currency" not in df.columns:
        df["currency"] = cfg.base_currency
    df["currency"] = df["currency"].fillna(cfg.base_currency)
    rate = pd.Series(np.where(df["currency"] == cfg.base_currency, 1.0, np.nan), index=df.index)
    foreign = (df["currency"] != cfg.base_currency) & df[date_col].notna()
    if foreign.any() and fx is not None and len(fx):
        left = pd.DataFrame({"_row": df.index[foreign], "date": df.loc[foreign, date_col].dt.normalize(),
                             "currency": df.loc[foreign, "currency"]}).sort_values("date")
        right = fx[["date", "currency", "rate_to_base"]].sort_values("date")
        joined = pd.merge_asof(left, right, on="date", by="currency", direction="backward",
                               tolerance=pd.Timedelta(days=cfg.validation.fx_max_staleness_days))
        rate.loc[joined["_row"].to_numpy()] = joined["rate_to_base"].to_numpy()
    reasons.add(foreign & rate.isna(),
                f"no fx rate for the currency within {cfg.validation.fx_max_staleness_days} days before the date")
    for col in amount_cols:
        if col in df.columns:
            df[f"{col}_local"] = df[col]
            df[col] = df[col] * rate
    return df


def validate_table(table: str, raw: pd.DataFrame, cfg: PipelineConfig, as_of: dt.date,
                   fx: pd.DataFrame | None = None,
                   known_customers: pd.Series | None = None, duplicates: np.ndarray | None = None,
                   occurrences: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Type and check one table's rows.

    Parameters
    ----------
    raw
        The table as read from its source (any column names; CSV columns as text), with the provenance columns
        of :func:`features.sources.read_source` when it has them (they are never mapped or passed on).
    as_of
        The data's as-of date: timestamps on or after the following day are rejected as future rows.
    fx
        Validated ``fx_rates`` (``date``, ``currency``, ``rate_to_base``), needed for foreign amounts.
    known_customers
        When given (ids, or :func:`known_ids` of them), rows whose ``customer_id`` is not in it are rejected.
    duplicates, occurrences
        When ``raw`` is one batch of a larger table (:func:`ingest`): per row, whether it repeats the unique key
        of an earlier row of the table, and (transactions without ``order_id``) its occurrence number for the
        derived id, both counted over the whole table (:func:`_cross_batch_keys`). Otherwise both are counted in
        ``raw``.

    Returns
    -------
    clean, rejected
        ``clean`` has the contract's column names and types; ``rejected`` has the original values (as text) of
        the rejected rows plus ``reject_reason``, ``source_file``, ``source_line`` (1-based line of a CSV file the
        row starts on, the header being line 1; 1-based row number in a Parquet file or SQL result) and
        ``source_row`` (0-based position in its file or SQL result; in
        ``raw`` when it has no provenance columns).
    """
    contract = CONTRACT[table]
    if raw.empty:
        raise DataError(f"{table}: the source has no rows (check tables.{table}.source, or remove the table "
                        "from the config if you do not have it)")
    raw = raw.reset_index(drop=True)
    origin = pd.DataFrame({SOURCE_FILE: pd.Series(None, index=raw.index, dtype="object"),
                           SOURCE_LINE: pd.Series(pd.NA, index=raw.index, dtype="Int64"),
                           SOURCE_ROW: raw.index.to_numpy(dtype="int64")})
    for column in PROVENANCE:
        if column in raw.columns:
            origin[column] = raw[column].to_numpy()
    raw = raw.drop(columns=[c for c in PROVENANCE if c in raw.columns])
    mapping = _map_columns(raw, cfg, table)
    fmt = cfg.tables[table].date_format
    reasons = _Reasons(raw.index)
    df = pd.DataFrame(index=raw.index)
    for name, source_name in mapping.items():
        col = contract.column(name)
        typed, problems = _type_column(raw[source_name], col, fmt, cfg.timezone)
        reasons.add_each(problems)
        if not col.nullable:
            reasons.add(typed.isna() & problems.isna(), f"missing {name}")
        df[name] = typed

    if table == "transactions" and "order_id" not in df.columns:
        df["order_id"] = _derive_order_id(df, occurrences)
    for key_cols in ([list(contract.unique)] if contract.unique else []):
        if set(key_cols) <= set(df.columns):
            dup = (pd.Series(duplicates, index=df.index) if duplicates is not None else
                   df.duplicated(subset=key_cols, keep="first") & df[key_cols].notna().all(axis=1))
            reasons.add(dup, f"duplicate {', '.join(key_cols)}")
    if known_customers is not None and "customer_id" in df.columns:
        reasons.add(df["customer_id"].notna() & ~_known(df["customer_id"], known_customers),
                    "unknown customer_id (not in customers)")
    if table == "transactions":
        df = _convert_currency(df, "ts", ["amount", "discount"], fx, cfg, reasons)
    elif table == "subscriptions" and "monthly_amount" in df.columns:
        df = _convert_currency(df, "started_at", ["monthly_amount"], fx, cfg, reasons)
    for column in (c for c in MONEY_COLUMNS if c in df.columns):
        reasons.add(df[column].notna() & ~(df[column].abs() < MAX_AMOUNT),
                    f"{column} out of range (|{column}| >= {_MAX_AMOUNT_TEXT} {cfg.base_currency}, or not finite)")

    ok = ~reasons.rejected
    try:
        value_checks(table, list(df.columns), as_of).validate(df[ok], lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases.dropna(subset=["index"])
        for check, rows in cases.groupby("check")["index"]:
            reasons.add(df.index.isin(rows.astype("int64")), str(check))

    bad = reasons.rejected
    rejected = raw[bad].astype("str").where(raw[bad].notna())
    rejected = rejected.assign(reject_reason=reasons.values[bad].astype("str"),
                               source_file=origin.loc[bad, SOURCE_FILE].astype("object"),
                               source_line=origin.loc[bad, SOURCE_LINE].astype("Int64"),
                               source_row=origin.loc[bad, SOURCE_ROW].astype("int64"))
    return df[~bad].reset_index(drop=True), rejected.reset_index(drop=True)


def known_ids(ids: pd.Series):
    """The customers' ids as an Arrow array, for :func:`validate_table`'s ``known_customers`` (built once per
    run: pandas' ``isin`` on Arrow strings makes a Python object of every value it is given, each time)."""
    import pyarrow as pa

    return pa.array(pd.Series(ids).astype("str"))


def _known(ids: pd.Series, known) -> np.ndarray:
    """Per id, whether it is one of ``known`` (a :func:`known_ids` array, or any sequence of ids)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = pa.array(ids.astype("str"))
    known = known if isinstance(known, pa.Array) else known_ids(known)
    return pc.is_in(values, value_set=known.cast(values.type)).to_numpy(zero_copy_only=False)


def _write_quarantine(rejected: pd.DataFrame, cfg: PipelineConfig, table: str, run_id: str) -> Path:
    folder = cfg.quarantine_dir / table
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_id}.parquet"
    tmp = path.with_suffix(".parquet.tmp")
    rejected.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def _without_forgotten(raw: pd.DataFrame, id_column: str, forgotten: set[str]) -> tuple[pd.DataFrame, int]:
    """``raw`` without the rows of customers on the suppression list (their rows are never read further), and how
    many were dropped."""
    if not forgotten or id_column not in raw.columns:
        return raw, 0
    drop = suppressed_mask(raw[id_column], forgotten)
    return raw[~drop.to_numpy()].reset_index(drop=True), int(drop.sum())


def _cross_batch_keys(table: str, source: SourceBatches, cfg: PipelineConfig, forgotten: set[str],
                      folder: Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A first pass over a table read in several batches, for the two checks that look across rows: the positions
    (0-based, over the rows left after suppression, in source order) of the rows repeating the unique key of an
    earlier row (found by DuckDB over the typed keys, which spills to ``folder`` beyond
    ``validation.duckdb_memory_limit``), and, for transactions without
    an ``order_id``, every row's occurrence number of its content key (:func:`_derive_order_id`). Only the key
    columns are typed here, exactly as :func:`validate_table` types them; None where the check does not apply."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    contract, mapping = CONTRACT[table], cfg.tables[table].columns
    fmt, id_column = cfg.tables[table].date_format, mapping.get("customer_id", "customer_id")
    derived = table == "transactions" and mapping.get("order_id", "order_id") not in source.columns
    keys = [] if derived or not contract.unique else list(contract.unique)
    needed = list(ORDER_KEY) if derived else keys
    # nothing to count, or a column the source does not have (then validate_table makes no such check either)
    if not needed or not all(mapping.get(k, k) in source.columns for k in needed):
        return None, None
    hashes, writer, path, position = [], None, folder / f".keys-{table}.parquet", 0
    try:
        for raw in source:
            raw, _ = _without_forgotten(raw, id_column, forgotten)
            typed = pd.DataFrame({k: _type_column(raw[mapping.get(k, k)], contract.column(k), fmt, cfg.timezone)[0]
                                  for k in needed})
            if derived:
                hashes.append(_order_key(typed).to_numpy())
            else:
                chunk = pa.Table.from_pandas(typed.assign(_position=np.arange(position, position + len(typed))),
                                             preserve_index=False)
                writer = writer or pq.ParquetWriter(path, chunk.schema)
                writer.write_table(chunk.cast(writer.schema))
            position += len(typed)
        if derived:
            key = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
            order = np.argsort(key, kind="stable")
            ordered = key[order]
            first = np.r_[True, ordered[1:] != ordered[:-1]] if len(key) else np.zeros(0, bool)
            run_start = np.maximum.accumulate(np.where(first, np.arange(len(key)), 0))
            occurrences = np.empty(len(key), np.int64)
            occurrences[order] = np.arange(len(key)) - run_start
            return None, occurrences
        if writer is None:
            return np.zeros(0, np.int64), None
        writer.close()
        writer = None
        import duckdb

        with duckdb.connect(config={"memory_limit": cfg.validation.duckdb_memory_limit,
                                    "temp_directory": str(folder / ".duckdb")}) as con:
            columns = ", ".join(f'"{k}"' for k in keys)
            present = " AND ".join(f'"{k}" IS NOT NULL' for k in keys)
            repeated = con.execute(
                f"SELECT _position FROM read_parquet(?) WHERE {present} "
                f"QUALIFY row_number() OVER (PARTITION BY {columns} ORDER BY _position) > 1 ORDER BY _position",
                [str(path)]).fetchnumpy()["_position"]
        return np.asarray(repeated, dtype=np.int64), None
    finally:
        if writer is not None:
            writer.close()
        path.unlink(missing_ok=True)
        shutil.rmtree(folder / ".duckdb", ignore_errors=True)  # what DuckDB spilled (never a validated file)


class _TableWriter:
    """One validated table written batch by batch into a Parquet file (every batch cast to the first's schema)."""

    def __init__(self, path: Path):
        self.path, self.writer = path, None

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema)
        elif not table.schema.equals(self.writer.schema):
            table = table.cast(self.writer.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _ingest_table(name: str, cfg: PipelineConfig, as_of: dt.date, run_id: str, folder: Path, forgotten: set[str],
                  fx: pd.DataFrame | None, known, write: bool,
                  batch_rows: int) -> tuple[TableReport, pd.DataFrame | None]:
    """Validate one table batch by batch into ``folder/<name>.parquet`` (and the customers' contacts into
    ``folder/customer_contacts.parquet``), quarantining its rejects (``write``). Returns its report and, for the
    tables later ones read (fx_rates whole, customers' ids), the clean rows."""
    source = source_batches(cfg, name, batch_rows)
    id_column = cfg.tables[name].columns.get("customer_id", "customer_id")
    duplicates = occurrences = None
    if source.rows > batch_rows:  # checks across rows need the whole table: a first pass over its keys
        duplicates, occurrences = _cross_batch_keys(name, source, cfg, forgotten, folder)
    writer, contacts = _TableWriter(folder / f"{name}.parquet"), _TableWriter(folder / "customer_contacts.parquet")
    rows_in = rows_ok = suppressed = position = 0
    rejected_parts, kept, columns = [], [], None
    try:
        for raw in source:
            columns = columns if columns is not None else raw.iloc[:0]  # for the unused-column check
            raw, dropped = _without_forgotten(raw, id_column, forgotten)  # before anything else
            suppressed += dropped
            if raw.empty:
                continue
            span = np.arange(position, position + len(raw))
            clean, rejected = validate_table(
                name, raw, cfg, as_of, fx=fx, known_customers=known,
                duplicates=None if duplicates is None else np.isin(span, duplicates),
                occurrences=None if occurrences is None else occurrences[span])
            position += len(raw)
            rows_in, rows_ok = rows_in + len(raw), rows_ok + len(clean)
            if name == "customers":
                pii = [c for c in PII_COLUMNS if c in clean.columns]
                if pii:
                    contacts.write(clean[["customer_id", *pii]])
                clean = clean.drop(columns=pii)
                kept.append(clean[["customer_id"]])
            elif name == "fx_rates":
                kept.append(clean)
            writer.write(clean)
            if len(rejected):
                rejected_parts.append(rejected)
    finally:
        writer.close()
        contacts.close()
    if not rows_in:
        if suppressed:
            raise DataError(f"{name}: every one of its {suppressed:,} rows belongs to a customer on the suppression "
                            "list (`churn forget`), so nothing is left to validate; remove the table from the config "
                            "if that is expected")
        validate_table(name, pd.DataFrame(), cfg, as_of)  # raises: the source has no rows
    rejected = (pd.concat(rejected_parts, ignore_index=True) if rejected_parts else
                pd.DataFrame({"reject_reason": pd.Series(dtype="str")}))
    report = TableReport(name, rows_in=rows_in, rows_ok=rows_ok, reasons=_count_reasons(rejected["reject_reason"]),
                         suppressed=suppressed)
    report.hints = _hints(name, rejected, report.reasons, cfg)
    report.unmapped, report.unfilled = _unused_columns(columns, cfg, name)
    if len(rejected) and write:
        report.quarantine_path = _write_quarantine(rejected, cfg, name, run_id)
    return report, (pd.concat(kept, ignore_index=True) if kept else None)


class _ValidatedTables(Mapping):
    """The validated tables of a run, read from their Parquet files when asked for (they are never all in memory
    at once)."""

    def __init__(self, folder: Path, names: list[str]):
        self.folder, self.names = folder, names

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self.names:
            raise KeyError(name)
        return pd.read_parquet(self.folder / f"{name}.parquet")

    def __iter__(self):
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def ingest(cfg: PipelineConfig, as_of: dt.date, run_id: str,
           on_table: Callable[[str, TableReport], None] | None = None, write: bool = True) -> IngestResult:
    """Read, type and validate every configured table; write quarantine files and the validated tables.

    Each table is read and validated in batches of ``validation.batch_rows`` rows (:func:`source_batches`), each
    batch written out before the next is read, into a folder aside that is swapped in for the validated tables
    only when every table passed (:func:`common.files.replace_folder`): the rules, messages and results are those
    of validating the table at once (duplicates and derived order ids are counted over the whole table,
    :func:`_cross_batch_keys`).

    Raises :class:`DataError` after all tables were checked (and their rejects quarantined) when any table's
    rejected share exceeds ``validation.max_reject_share``; the validated outputs are then left as they were.
    ``on_table(name, report)`` is called as each table finishes, for progress display. Without ``write`` nothing
    is written (the tables are validated in a temporary folder and returned in memory).
    """
    forgotten = load_suppressed(cfg.data_dir)
    done: dict[str, IngestResult] = {}

    def fill(folder: Path) -> None:
        reports: dict[str, TableReport] = {}
        fx = known = None
        for name in (t for t in INGEST_ORDER if t in cfg.tables):
            report, kept = _ingest_table(name, cfg, as_of, run_id, folder, forgotten, fx,
                                         known if name != "customers" else None, write, cfg.validation.batch_rows)
            if name == "fx_rates":
                fx = kept
            elif name == "customers":
                known = known_ids(kept["customer_id"]) if kept is not None else None
            reports[name] = report
            if on_table:
                on_table(name, report)
        limit = cfg.validation.max_reject_share
        over = [r for r in reports.values() if r.rejected_share > limit]
        unusable = [r for r in reports.values() if r.rows_in and not r.rows_ok and r not in over]
        if over or unusable:
            advice = []
            if over:
                advice.append(f"That is above validation.max_reject_share = {limit:.2%}: fix the source (the "
                              "quarantine file gives each row's reject_reason) or raise the threshold in the config")
            if unusable:
                advice.append(f"No row of {', '.join(r.table for r in unusable)} is valid, and a table without "
                              "valid rows cannot be used whatever the threshold: fix the source (the quarantine "
                              "file gives each row's reject_reason) or remove the table from the config")
            details = "; ".join(_failure(r) for r in [*over, *unusable])
            raise DataError(f"{details}. {'. '.join(advice)}. The last validated tables were left untouched.")
        if "transactions" in reports:  # the cutoff-free per-day rows every snapshot reads
            from features.snapshots import write_purchase_days

            write_purchase_days(folder, cfg.validation.duckdb_memory_limit)
        manifest = {"run_id": run_id, "as_of": as_of.isoformat(),
                    "tables": {n: {"rows_in": r.rows_in, "rows_ok": r.rows_ok, "reasons": r.reasons}
                               for n, r in reports.items()}}
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        contacts = folder / "customer_contacts.parquet"
        tables = (_ValidatedTables(cfg.validated_dir, list(reports)) if write else
                  {n: pd.read_parquet(folder / f"{n}.parquet") for n in reports})
        contacts = (None if not contacts.exists() else
                    cfg.validated_dir / contacts.name if write else pd.read_parquet(contacts))
        done["result"] = IngestResult(run_id, as_of, tables, contacts, reports)

    if write:
        replace_folder(cfg.validated_dir, fill)
    else:  # validated beside the real folder (DuckDB spills next to it), then discarded
        cfg.validated_dir.parent.mkdir(parents=True, exist_ok=True)
        folder = cfg.validated_dir
        with tempfile.TemporaryDirectory(prefix=f".{folder.name}-check-", dir=folder.parent) as tmp:
            fill(Path(tmp))
    return done["result"]


_REASON_COLUMN = re.compile(r"^(?:unparseable|non-numeric|non-integer|empty|not a boolean) (\w+)|^(\w+) out of range"
                            r"|^unknown (?:currency|country) .* in (\w+)$")


def _hints(table: str, rejected: pd.DataFrame, counts: dict[str, int], cfg: PipelineConfig) -> dict[str, str]:
    """For the commonest reasons about a value: an example of the value as written, its column, and what to do."""
    hints = {}
    for reason in sorted(counts, key=counts.get, reverse=True)[:3]:
        match = _REASON_COLUMN.match(reason)
        column = next((g for g in match.groups() if g), None) if match else None
        if column not in {c.name for c in CONTRACT[table].columns}:
            continue
        source_name = cfg.tables[table].columns.get(column, column)
        rows = rejected["reject_reason"].str.split("; ").map(lambda found, reason=reason: reason in found)
        values = rejected.loc[rows.astype(bool), source_name].dropna() if source_name in rejected else []
        if not len(values):
            continue
        value = str(values.iloc[0])
        hint = f"e.g. {value if len(value) <= 40 else value[:40] + '...'!r} in column '{source_name}'"
        fmt = cfg.tables[table].date_format
        if reason.startswith("unparseable") and CONTRACT[table].column(column).kind in ("timestamp", "date"):
            if "UTC offset" in reason:
                hint += f", which has a UTC offset: add %z to tables.{table}.date_format {fmt!r}"
            elif fmt:
                hint += f", which does not match tables.{table}.date_format {fmt!r}"
            elif re.fullmatch(r"\d{4,6}(?:\.\d+)?", value):
                hint += ", a number (an Excel serial date?): export the dates as text, e.g. 2026-10-05"
            else:
                hint += (", not ISO 8601 (such as 2026-10-05 or 2026-10-05T14:30:00+02:00): set "
                         f"tables.{table}.date_format, e.g. '%d/%m/%Y'")
        hints[reason] = hint
    return hints


def _failure(report: TableReport) -> str:
    """One table's rejects in a sentence: counts, the commonest reasons with an example, the quarantine file."""
    top = sorted(report.reasons, key=report.reasons.get, reverse=True)[:3]
    reasons = ", ".join(f"{reason}: {report.reasons[reason]:,}"
                        + (f" ({report.hints[reason]})" if reason in report.hints else "") for reason in top)
    where = f", see {report.quarantine_path}" if report.quarantine_path else ""
    return (f"{report.table}: {report.rejected:,} of {report.rows_in:,} rows rejected ({report.rejected_share:.2%})"
            f"{': ' + reasons if reasons else ''}{where}")


def check_validated(cfg: PipelineConfig, deep: bool = False) -> None:
    """Every validated table in ``validated_dir`` can be opened as Parquet (``deep``: and read to the end);
    otherwise a :class:`DataError` that names the file and says to validate again (a run only ever swaps in
    complete files, so the file was changed or damaged afterwards)."""
    import pyarrow.parquet as pq

    for path in sorted(cfg.validated_dir.glob("*.parquet")):
        try:
            pq.read_table(path) if deep else pq.read_metadata(path)
        except (OSError, ValueError) as exc:
            detail = (str(exc).splitlines()[0] if str(exc) else type(exc).__name__).rstrip(".")
            raise DataError(f"{path} cannot be read as Parquet ({detail}): it was damaged or changed after "
                            "`churn validate` wrote it; run `churn validate` again to rewrite the validated "
                            "tables") from None


def _unused_columns(raw: pd.DataFrame, cfg: PipelineConfig, table: str) -> tuple[list[str], list[str]]:
    """Source columns no contract column reads, and the optional contract columns the source does not provide."""
    mapping = cfg.tables[table].columns
    wanted = {c.name: mapping.get(c.name, c.name) for c in CONTRACT[table].columns}
    present = [str(c) for c in raw.columns if c not in PROVENANCE]
    unmapped = [c for c in present if c not in wanted.values()]
    unfilled = [name for name, source in wanted.items() if source not in present]
    return unmapped, unfilled


def _count_reasons(reasons: pd.Series) -> dict[str, int]:
    counts = reasons.str.split("; ").explode().value_counts() if len(reasons) else pd.Series(dtype="int64")
    return {str(k): int(v) for k, v in counts.items()}
