"""Read one configured source (CSV or Parquet file or glob, or a SQL table or query) into a DataFrame, whole
(:func:`read_source`) or in batches of bounded size (:func:`source_batches`).

Every row keeps where it came from, in the hidden columns of :data:`PROVENANCE`, which validation reads and never
passes on: the file (relative to ``data_dir`` when the configured path is; empty for SQL), where a person finds
the row (1-based: in a CSV file the line it starts on, the header being line 1, a quoted value may span several
lines; in a Parquet file or SQL result its row number, the first row being row 1) and the row's position in its
file or SQL result (0-based). They are attached here, before anything drops rows, so that they still point at
the source after the rows of forgotten customers were dropped (:mod:`common.privacy`).
"""

from __future__ import annotations

import bz2
import csv
import glob
import gzip
import io
import lzma
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from common.config import PipelineConfig, SourceConfig
from common.errors import DataError

SOURCE_FILE, SOURCE_LINE, SOURCE_ROW = "__source_file", "__source_line", "__source_row"
PROVENANCE = (SOURCE_FILE, SOURCE_LINE, SOURCE_ROW)
_COMPRESSED = {".gz": gzip.decompress, ".bz2": bz2.decompress, ".xz": lzma.decompress, ".zip": None}  # CSV only


def _files(cfg: PipelineConfig, table: str, source: SourceConfig) -> list[Path]:
    pattern = cfg.resolve(source.path)
    matches = sorted(Path(p) for p in glob.glob(str(pattern)))
    if not matches:
        hint = " (run `churn generate` to create the default data)" if table in cfg.tables else ""
        raise DataError(f"{table}: no file matches '{source.path}' (resolved to {pattern}); "
                        f"check tables.{table}.source.path{hint}")
    return matches


def _shown(cfg: PipelineConfig, source: SourceConfig, path: Path) -> str:
    """The file as a person configured it: relative to ``data_dir`` unless the configured path is absolute."""
    if Path(source.path).is_absolute():
        return str(path)
    try:
        return path.relative_to(cfg.data_dir).as_posix()
    except ValueError:
        return str(path)


def _format(path: Path, source: SourceConfig) -> str:
    if source.format:
        return source.format
    suffix, inner = path.suffix.lower(), Path(path.stem).suffix.lower()
    if suffix in (".csv", ".txt") or (suffix in _COMPRESSED and inner == ".csv"):
        return "csv"
    if suffix.endswith((".parquet", ".pq")):
        return "parquet"
    raise DataError(f"cannot tell the format of '{path}' from its extension; "
                    "set source.format to 'csv' or 'parquet'")


def _file_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when its name ends in .gz, .bz2, .xz or .zip (one member)."""
    suffix = path.suffix.lower()
    if _COMPRESSED.get(suffix):
        return _COMPRESSED[suffix](path.read_bytes())
    if suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if not m.endswith("/")]
            if len(members) != 1:
                raise ValueError(f"the archive holds {len(members)} files, expected one")
            return archive.read(members[0])
    return path.read_bytes()


def _record_lines(text: str, delimiter: str) -> list[int] | None:
    """The 1-based line each CSV record starts on, blank lines skipped as pandas skips them (header first); None
    when the file cannot be followed line by line with the csv module (a multi-character delimiter)."""
    if len(delimiter) != 1:
        return None
    if '"' not in text and text.count("\r") == text.count("\r\n"):  # no quoted values: a record is a line
        return [number for number, line in enumerate(text.split("\n"), 1) if line.strip()]
    last = [""]

    def lines():
        for line in io.StringIO(text, newline=""):
            last[0] = line
            yield line

    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # a very long value is data, not a reason to lose the line numbers
    try:
        reader = csv.reader(lines(), delimiter=delimiter)
        starts, previous = [], 0
        for _ in reader:
            if not (reader.line_num == previous + 1 and not last[0].strip()):
                starts.append(previous + 1)
            previous = reader.line_num
        return starts
    except csv.Error:
        return None
    finally:
        csv.field_size_limit(limit)


def _read_csv(path: Path, source: SourceConfig, table: str) -> pd.DataFrame:
    """Every column as text, the header exactly as written (a repeated name is an error, not ``amount.1``)."""
    data = _file_bytes(path)
    encoding = source.csv_encoding
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{table}: '{path}' is not {encoding} text (byte 0x{data[exc.start]:02x} on line {line}); "
                        f"set tables.{table}.source.csv_encoding to the file's encoding, e.g. 'cp1252' or "
                        "'latin-1'") from None
    text = text.removeprefix("\ufeff")  # a byte-order mark (Excel's UTF-8) is no part of the first column's name
    if not text.strip():
        return pd.DataFrame()
    sep = source.csv_delimiter
    # every column as text: typing happens in validation, which keeps the original text of bad rows
    cells = pd.read_csv(io.BytesIO(data), header=None, dtype=str, keep_default_na=False, na_values=[""], sep=sep,
                        index_col=False, encoding=encoding)
    header = [str(name).strip().removeprefix("\ufeff") if pd.notna(name) else f"Unnamed: {i}"
              for i, name in enumerate(cells.iloc[0])]
    _check_columns(header, table, f"'{path}'")
    frame = cells.iloc[1:].reset_index(drop=True)
    frame.columns = header
    starts = _record_lines(text, sep)
    lines = starts[1:] if starts is not None and len(starts) == len(frame) + 1 else None
    frame[SOURCE_LINE] = pd.array(lines if lines is not None else [pd.NA] * len(frame), dtype="Int64")
    return frame


def _unreadable(table: str, path: Path, fmt: str, exc: Exception) -> DataError:
    """The error of a source file that cannot be read as ``fmt``: the reader's first line, and what to check."""
    first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    first_line = first_line.removeprefix("Error tokenizing data. C error: ")
    return DataError(f"{table}: cannot read '{path}' as {fmt.upper()}: {first_line}; "
                     f"check the file or tables.{table}.source (format, csv_delimiter, csv_encoding)")


def _read_file(path: Path, source: SourceConfig, table: str, shown: str) -> pd.DataFrame:
    fmt = _format(path, source)
    try:
        if fmt == "csv":
            frame = _read_csv(path, source, table)
        else:
            frame = pd.read_parquet(path)
            _check_columns(list(frame.columns), table, f"'{path}'")
            frame[SOURCE_LINE] = pd.array(np.arange(1, len(frame) + 1), dtype="Int64")  # no lines: row numbers
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, lzma.LZMAError, pd.errors.ParserError) as exc:
        raise _unreadable(table, path, fmt, exc) from None
    frame[SOURCE_FILE] = shown
    frame[SOURCE_ROW] = np.arange(len(frame), dtype="int64")
    return frame


def _check_columns(columns: list, table: str, where: str) -> None:
    """Each column of a source has its own name (pandas would silently rename a repeat to ``amount.1``)."""
    names = [str(c) for c in columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{table}: {where} has the column name(s) {repeated} more than once in its header; "
                        "rename or remove the repeated column(s) so that each column has its own name")
    clash = sorted(set(names) & set(PROVENANCE))
    if clash:
        raise DataError(f"{table}: {where} has column(s) {clash}, names the pipeline keeps for itself; rename them")


def _sqlite_engine(url, table: str):
    """A read-only engine for a SQLite file that must exist (reading never creates one); None for other URLs."""
    import sqlalchemy as sa

    if url.get_backend_name() != "sqlite" or url.get_driver_name() != "pysqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    path = Path(database)
    if not path.is_file():
        raise DataError(f"{table}: cannot read from '{url.render_as_string(hide_password=True)}': no such "
                        f"database file {path} (unable to open database file); fix tables.{table}.source.url "
                        "(reading never creates a database)")
    return sa.create_engine(url.set(database=f"file:{quote(str(path.resolve()))}",
                                    query={**url.query, "mode": "ro", "uri": "true"}))


def _read_sql(source: SourceConfig, table: str) -> pd.DataFrame:
    import sqlalchemy as sa

    url = source.url
    try:
        parsed = sa.engine.make_url(url)
        engine = _sqlite_engine(parsed, table) or sa.create_engine(parsed)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ValueError) as exc:
        raise DataError(f"{table}: '{url}' is not a usable SQLAlchemy URL ({exc}); "
                        f"fix tables.{table}.source.url, e.g. sqlite:///path/to.db or "
                        "postgresql://user@host/dbname") from None
    except ModuleNotFoundError as exc:
        raise DataError(f"{table}: the database driver for '{url}' is not installed ({exc.name})") from None
    shown = parsed.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            if source.table:
                if not sa.inspect(conn).has_table(source.table):
                    raise DataError(f"{table}: table '{source.table}' not found at '{shown}'; "
                                    f"fix tables.{table}.source.table")
                frame = pd.read_sql_table(source.table, conn)
            else:
                frame = pd.read_sql_query(sa.text(source.query), conn)
    except (sa.exc.SQLAlchemyError, pd.errors.DatabaseError) as exc:
        cause = exc.__cause__ if isinstance(exc, pd.errors.DatabaseError) and exc.__cause__ else exc  # pandas wraps
        detail = str(getattr(cause, "orig", None) or cause).splitlines()[0]
        raise DataError(f"{table}: cannot read from '{shown}': {detail}; "
                        f"check tables.{table}.source") from None
    finally:
        engine.dispose()
    _check_columns(list(frame.columns), table, f"the result from '{shown}'")
    return frame.assign(**{SOURCE_FILE: None, SOURCE_LINE: pd.array(np.arange(1, len(frame) + 1), dtype="Int64"),
                           SOURCE_ROW: np.arange(len(frame), dtype="int64")})


def read_source(cfg: PipelineConfig, table: str) -> pd.DataFrame:
    """Read the configured source of ``table`` as it is (no renaming or typing), plus the columns of
    :data:`PROVENANCE`.

    CSV files are read with every column as text so that validation can keep the original text of rejected
    rows; Parquet and SQL keep their types. Several files matching a glob are stacked in name order. An empty
    source gives a frame without rows.
    """
    source = cfg.tables[table].source
    if source.url:
        return _read_sql(source, table)
    frames = []
    for path in _files(cfg, table, source):
        frame = _read_file(path, source, table, _shown(cfg, source, path))
        if len(frame.columns):
            frames.append(frame)
    if not frames:
        return pd.DataFrame()
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


@dataclass
class SourceBatches:
    """A source read in batches of at most ``rows`` rows, each with the :data:`PROVENANCE` columns, in the order
    :func:`read_source` stacks them. Parquet files are read batch by batch (a row group at most is decoded at a
    time), so a table of any size is never whole in memory; a CSV file or a SQL result is read whole (its line
    numbers need the whole text) and then handed out in slices. It can be iterated more than once (each time
    reading again) and gives the same batches each time.

    ``columns``: every column of the source (the union over the files of a glob, in file order: a batch of a file
    without one of them has it as missing values, as :func:`read_source`'s stacking does); ``rows``: the number
    of rows."""

    table: str
    batch_rows: int
    columns: list[str]
    rows: int
    _parquet: list[tuple[Path, str]]  # (file, as shown) when every file is Parquet
    _whole: pd.DataFrame | None  # otherwise the source, read once

    def __iter__(self) -> Iterator[pd.DataFrame]:
        if self._whole is not None:
            for start in range(0, len(self._whole), self.batch_rows):
                yield self._whole.iloc[start:start + self.batch_rows].reset_index(drop=True)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        for path, shown in self._parquet:
            try:
                handle = pq.ParquetFile(path)
                schema, done = handle.schema_arrow, 0
                for batch in handle.iter_batches(batch_size=self.batch_rows):
                    frame = pa.Table.from_batches([batch], schema=schema).to_pandas()
                    frame = frame.reindex(columns=self.columns) if list(frame.columns) != self.columns else frame
                    rows = np.arange(done, done + len(frame), dtype="int64")
                    frame[SOURCE_LINE] = pd.array(rows + 1, dtype="Int64")
                    frame[SOURCE_FILE] = shown
                    frame[SOURCE_ROW] = rows
                    done += len(frame)
                    yield frame
            except (OSError, ValueError, EOFError) as exc:
                raise _unreadable(self.table, path, "parquet", exc) from None


def source_batches(cfg: PipelineConfig, table: str, batch_rows: int) -> SourceBatches:
    """The configured source of ``table`` in batches of at most ``batch_rows`` rows (:class:`SourceBatches`): the
    same rows, values and provenance as :func:`read_source`."""
    source = cfg.tables[table].source
    files = [] if source.url else _files(cfg, table, source)
    if files and all(_format(path, source) == "parquet" for path in files):
        import pyarrow.parquet as pq

        parquet, columns, rows = [], [], 0
        for path in files:
            try:
                meta = pq.ParquetFile(path)
                # the columns pandas makes of it (an index kept in the file is not one)
                names = [str(c) for c in meta.schema_arrow.empty_table().to_pandas().columns]
                count = meta.metadata.num_rows
            except (OSError, ValueError, EOFError) as exc:
                raise _unreadable(table, path, "parquet", exc) from None
            _check_columns(names, table, f"'{path}'")
            if not names:
                continue
            columns += [n for n in names if n not in columns]
            parquet.append((path, _shown(cfg, source, path)))
            rows += count
        return SourceBatches(table, batch_rows, columns, rows, parquet, None)
    whole = read_source(cfg, table)
    return SourceBatches(table, batch_rows, [c for c in whole.columns if c not in PROVENANCE], len(whole), [],
                         whole)
