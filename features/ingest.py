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
from collections.abc import Callable
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
from features.sources import read_source

# fx_rates first (transactions need it), customers second (other tables are checked against it)
INGEST_ORDER = ("fx_rates", "customers", "transactions", "support_tickets", "surveys", "web_sessions",
                "email_events", "subscriptions")
_TZ_SUFFIX = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")
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
    tables: dict[str, pd.DataFrame]
    contacts: pd.DataFrame | None
    reports: dict[str, TableReport]


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

    @property
    def rejected(self) -> pd.Series:
        return self.values.notna()


def _text(series: pd.Series) -> pd.Series:
    """Values as stripped text; empty strings become missing."""
    if pd.api.types.is_float_dtype(series) and series.dropna().mod(1).eq(0).all():
        series = series.astype("Int64")  # ids read as floats (a column with gaps) keep no trailing '.0'
    out = series.astype("str").str.strip()
    return out.where(series.notna() & out.ne(""))


def _parse_datetime(series: pd.Series, fmt: str | None, tz: str) -> pd.Series:
    """Naive timestamps in ``tz``. Values with an offset or 'Z' are converted to ``tz``."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series.dt.tz_convert(tz).dt.tz_localize(None).astype("datetime64[us]")
    if pd.api.types.is_datetime64_dtype(series):
        return series.astype("datetime64[us]")
    text = _text(series)
    out = pd.Series(pd.NaT, index=series.index, dtype="datetime64[us]")
    has_tz = text.str.contains(_TZ_SUFFIX, na=False)
    if has_tz.any():
        aware = pd.to_datetime(text[has_tz], errors="coerce", format=fmt or "ISO8601", utc=True)
        out[has_tz] = aware.dt.tz_convert(tz).dt.tz_localize(None).astype("datetime64[us]")
    naive = ~has_tz & text.notna()
    if naive.any():
        out[naive] = pd.to_datetime(text[naive], errors="coerce", format=fmt or "ISO8601").astype("datetime64[us]")
    return out


def _parse_bool(series: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(series):
        return series.astype("boolean")
    text = _text(series).str.lower()
    out = pd.Series(pd.NA, index=series.index, dtype="boolean")
    out[text.isin(_TRUE)] = True
    out[text.isin(_FALSE)] = False
    return out


def _type_column(series: pd.Series, col: Column, fmt: str | None, tz: str) -> tuple[pd.Series, pd.Series]:
    """Type one column; return the typed values and a mask of values that were present but invalid."""
    present = series.notna() & ~(series.astype("str").str.strip() == "")
    if col.kind in ("id", "str"):
        typed = _text(series)
    elif col.kind in ("timestamp", "date"):
        typed = _parse_datetime(series, fmt, tz)
        if col.kind == "date":
            typed = typed.dt.normalize()
    elif col.kind in ("float", "int"):
        typed = pd.to_numeric(series, errors="coerce").astype("float64")
        typed = typed.where(np.isfinite(typed))
        if col.kind == "int":
            typed = typed.where(typed.mod(1).eq(0)).astype("Int64")
    elif col.kind == "bool":
        typed = _parse_bool(series)
    elif col.kind == "currency":
        typed = _text(series).str.upper()
        typed = typed.where(typed.isin(_ISO_CURRENCIES))
    elif col.kind == "country":
        typed = _text(series).str.upper()
        typed = typed.where(typed.isin(_ISO_COUNTRIES))
    else:  # pragma: no cover - the contract only uses the kinds above
        raise ValueError(f"unknown column kind {col.kind!r}")
    return typed, present & typed.isna()


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
                            f"that holds {col.name})")
        elif col.name in mapping:
            raise DataError(f"{table}: tables.{table}.columns.{col.name} names '{source_name}', which is not a "
                            f"column of the source; found {list(map(str, raw.columns))}")
    return found


def _derive_order_id(df: pd.DataFrame) -> pd.Series:
    """A stable id from the row's content (customer, time, amount) plus its occurrence number."""
    key = pd.util.hash_pandas_object(df[["customer_id", "ts", "amount"]], index=False)
    occurrence = key.groupby(key).cumcount()
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
                   known_customers: pd.Series | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Type and check one table's rows.

    Parameters
    ----------
    raw
        The table as read from its source (any column names; CSV columns as text).
    as_of
        The data's as-of date: timestamps on or after the following day are rejected as future rows.
    fx
        Validated ``fx_rates`` (``date``, ``currency``, ``rate_to_base``), needed for foreign amounts.
    known_customers
        When given, rows whose ``customer_id`` is not in it are rejected.

    Returns
    -------
    clean, rejected
        ``clean`` has the contract's column names and types; ``rejected`` has the original values of the
        rejected rows plus ``reject_reason`` and ``source_row`` (0-based position in the source).
    """
    contract = CONTRACT[table]
    if raw.empty:
        raise DataError(f"{table}: the source has no rows (check tables.{table}.source, or remove the table "
                        "from the config if you do not have it)")
    raw = raw.reset_index(drop=True)
    mapping = _map_columns(raw, cfg, table)
    fmt = cfg.tables[table].date_format
    reasons = _Reasons(raw.index)
    df = pd.DataFrame(index=raw.index)
    for name, source_name in mapping.items():
        col = contract.column(name)
        typed, invalid = _type_column(raw[source_name], col, fmt, cfg.timezone)
        reasons.add(invalid, f"{_INVALID[col.kind]} {name}")
        if not col.nullable:
            reasons.add(typed.isna() & ~invalid, f"missing {name}")
        df[name] = typed

    if table == "transactions" and "order_id" not in df.columns:
        df["order_id"] = _derive_order_id(df)
    for key_cols in ([list(contract.unique)] if contract.unique else []):
        if set(key_cols) <= set(df.columns):
            dup = df.duplicated(subset=key_cols, keep="first") & df[key_cols].notna().all(axis=1)
            reasons.add(dup, f"duplicate {', '.join(key_cols)}")
    if known_customers is not None and "customer_id" in df.columns:
        reasons.add(df["customer_id"].notna() & ~df["customer_id"].isin(known_customers),
                    "unknown customer_id (not in customers)")
    if table == "transactions":
        df = _convert_currency(df, "ts", ["amount", "discount"], fx, cfg, reasons)
    elif table == "subscriptions" and "monthly_amount" in df.columns:
        df = _convert_currency(df, "started_at", ["monthly_amount"], fx, cfg, reasons)

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
                               source_row=raw.index[bad].astype("int64"))
    return df[~bad].reset_index(drop=True), rejected.reset_index(drop=True)


def _write_quarantine(rejected: pd.DataFrame, cfg: PipelineConfig, table: str, run_id: str) -> Path:
    folder = cfg.quarantine_dir / table
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_id}.parquet"
    tmp = path.with_suffix(".parquet.tmp")
    rejected.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def _write_validated(result: IngestResult, cfg: PipelineConfig) -> None:
    """Write every validated table at once (with the per-customer-day rows derived from the transactions, see
    :func:`features.snapshots.write_purchase_days`): into a folder aside, then swapped in for the old one."""
    def fill(tmp: Path) -> None:
        for name, frame in result.tables.items():
            frame.to_parquet(tmp / f"{name}.parquet", index=False)
        if "transactions" in result.tables:  # the cutoff-free per-day rows every snapshot reads
            from features.snapshots import write_purchase_days

            write_purchase_days(tmp)
        if result.contacts is not None:
            result.contacts.to_parquet(tmp / "customer_contacts.parquet", index=False)
        manifest = {"run_id": result.run_id, "as_of": result.as_of.isoformat(),
                    "tables": {n: {"rows_in": r.rows_in, "rows_ok": r.rows_ok, "reasons": r.reasons}
                               for n, r in result.reports.items()}}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))

    replace_folder(cfg.validated_dir, fill)


def ingest(cfg: PipelineConfig, as_of: dt.date, run_id: str,
           on_table: Callable[[str, TableReport], None] | None = None, write: bool = True) -> IngestResult:
    """Read, type and validate every configured table; write quarantine files and the validated tables.

    Raises :class:`DataError` after all tables were checked (and their rejects quarantined) when any table's
    rejected share exceeds ``validation.max_reject_share``; the validated outputs are then left as they were.
    ``on_table(name, report)`` is called as each table finishes, for progress display.
    """
    tables: dict[str, pd.DataFrame] = {}
    reports: dict[str, TableReport] = {}
    contacts = None
    forgotten = load_suppressed(cfg.data_dir)
    for name in (t for t in INGEST_ORDER if t in cfg.tables):
        raw = read_source(cfg, name)
        id_column = cfg.tables[name].columns.get("customer_id", "customer_id")
        suppressed = 0
        if forgotten and id_column in raw.columns:  # before anything else: their rows are never read further
            drop = suppressed_mask(raw[id_column], forgotten)
            suppressed = int(drop.sum())
            raw = raw[~drop.to_numpy()].reset_index(drop=True)
        customers = tables.get("customers")
        known = customers["customer_id"] if customers is not None and name != "customers" else None
        clean, rejected = validate_table(name, raw, cfg, as_of, fx=tables.get("fx_rates"), known_customers=known)
        if name == "customers":
            pii = [c for c in PII_COLUMNS if c in clean.columns]
            contacts = clean[["customer_id", *pii]] if pii else None
            clean = clean.drop(columns=pii)
        tables[name] = clean
        report = TableReport(name, rows_in=len(raw), rows_ok=len(clean),
                             reasons=_count_reasons(rejected["reject_reason"]), suppressed=suppressed)
        if len(rejected) and write:
            report.quarantine_path = _write_quarantine(rejected, cfg, name, run_id)
        reports[name] = report
        if on_table:
            on_table(name, report)
    result = IngestResult(run_id, as_of, tables, contacts, reports)
    limit = cfg.validation.max_reject_share
    failed = [r for r in reports.values() if r.rejected_share > limit]
    if failed:
        details = "; ".join(f"{r.table}: {r.rejected:,} of {r.rows_in:,} rows rejected ({r.rejected_share:.2%}), "
                            f"see {r.quarantine_path}" for r in failed)
        raise DataError(f"{details}. That is above validation.max_reject_share = {limit:.2%}: fix the source "
                        "(the quarantine file gives each row's reject_reason) or raise the threshold in the "
                        "config. The last validated tables were left untouched.")
    if write:
        _write_validated(result, cfg)
    return result


def _count_reasons(reasons: pd.Series) -> dict[str, int]:
    counts = reasons.str.split("; ").explode().value_counts() if len(reasons) else pd.Series(dtype="int64")
    return {str(k): int(v) for k, v in counts.items()}
