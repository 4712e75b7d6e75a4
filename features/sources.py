"""Read one configured source (CSV or Parquet file or glob, or a SQL table or query) into a DataFrame."""

from __future__ import annotations

import glob
from pathlib import Path

import pandas as pd

from common.config import PipelineConfig, SourceConfig
from common.errors import DataError


def _files(cfg: PipelineConfig, table: str, source: SourceConfig) -> list[Path]:
    pattern = cfg.resolve(source.path)
    matches = sorted(Path(p) for p in glob.glob(str(pattern)))
    if not matches:
        hint = " (run `churn generate` to create the default data)" if table in cfg.tables else ""
        raise DataError(f"{table}: no file matches '{source.path}' (resolved to {pattern}); "
                        f"check tables.{table}.source.path{hint}")
    return matches


def _format(path: Path, source: SourceConfig) -> str:
    if source.format:
        return source.format
    suffix = "".join(path.suffixes[-2:]).lower()
    if suffix.endswith((".csv", ".csv.gz", ".txt")):
        return "csv"
    if suffix.endswith((".parquet", ".pq")):
        return "parquet"
    raise DataError(f"cannot tell the format of '{path}' from its extension; "
                    "set source.format to 'csv' or 'parquet'")


def _read_file(path: Path, source: SourceConfig, table: str) -> pd.DataFrame:
    fmt = _format(path, source)
    try:
        if fmt == "csv":
            # every column as text: typing happens in validation, which keeps the original text of bad rows
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""],
                               sep=source.csv_delimiter, encoding=source.csv_encoding)
        return pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{table}: cannot read '{path}' as {fmt.upper()}: {first_line}; "
                        f"check the file or tables.{table}.source (format, csv_delimiter, csv_encoding)") from None


def _read_sql(source: SourceConfig, table: str) -> pd.DataFrame:
    import sqlalchemy as sa

    url = source.url
    try:
        engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ValueError) as exc:
        raise DataError(f"{table}: '{url}' is not a usable SQLAlchemy URL ({exc}); "
                        f"fix tables.{table}.source.url, e.g. sqlite:///path/to.db or "
                        "postgresql://user@host/dbname") from None
    except ModuleNotFoundError as exc:
        raise DataError(f"{table}: the database driver for '{url}' is not installed ({exc.name})") from None
    try:
        with engine.connect() as conn:
            if source.table:
                if not sa.inspect(conn).has_table(source.table):
                    raise DataError(f"{table}: table '{source.table}' not found at {engine.url!r}; "
                                    f"fix tables.{table}.source.table")
                return pd.read_sql_table(source.table, conn)
            return pd.read_sql_query(sa.text(source.query), conn)
    except sa.exc.SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise DataError(f"{table}: cannot read from {engine.url!r}: {detail}; "
                        f"check tables.{table}.source") from None
    finally:
        engine.dispose()


def read_source(cfg: PipelineConfig, table: str) -> pd.DataFrame:
    """Read the configured source of ``table`` as it is (no renaming or typing).

    CSV files are read with every column as text so that validation can keep the original text of rejected
    rows; Parquet and SQL keep their types. Several files matching a glob are stacked in name order.
    """
    source = cfg.tables[table].source
    if source.url:
        return _read_sql(source, table)
    frames = [_read_file(path, source, table) for path in _files(cfg, table, source)]
    frames = [f for f in frames if len(f.columns)]
    if not frames:
        return pd.DataFrame()
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
