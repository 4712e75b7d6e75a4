"""Exports a CRM and Excel take as they are: named targets written beside each published list, and the changes since
the list's previous as-of date.

A target (``exports:`` in the config, :class:`common.config.ExportTarget`) picks the lists, the contact groups
(``treatment`` only for anything that contacts people: the control group must never be contacted), the columns
in order with their names in the file, and the file's dialect: CSV with a delimiter, UTF-8 with or without a BOM
(Excel needs it to read "Bez nákupu" as such), the locale's decimal separator and a date format; or XLSX. Without
an ``exports:`` section the ready targets of :data:`common.config.READY_EXPORTS` are written:

* ``crm``: treatment only, one row per customer to contact: the customer key (and e-mail, name and phone when
  ``outputs.include_contact`` joined them), the campaign, action and offer; plain UTF-8 CSV with commas;
* ``excel``: every column, treatment only, UTF-8 with a BOM and ``;`` with decimal commas where the locale writes
  them (``cs_CZ``, ``de_DE``; set ``locale``);
* ``audit``: every column of treatment and control, for the record (CSV).

A column a target names that a list does not have (contact fields without ``include_contact``) is left out. The
files are ``<list>/as_of=<DATE>/exports/<target>.csv|xlsx``, published in the same atomic step as the lists, and
``churn forget`` rewrites them with the list. ``changes.csv`` beside the list names who entered, who left and whose
risk tier changed since the list's previous as-of date.
"""

from __future__ import annotations

import csv
import io

import pandas as pd
from babel import Locale

from common.config import ExportTarget

CHANGE_COLUMNS = ["customer_id", "change", "previous_tier", "risk_tier"]
NOT_EXPORTED = ("shap_contributions", "purchase_history")  # the profile's data: unless a target names them


def _rows(frame: pd.DataFrame, target: ExportTarget) -> pd.DataFrame:
    if target.groups is not None and "contact_group" in frame.columns:
        return frame[frame["contact_group"].isin(target.groups)]
    return frame


def select(frame: pd.DataFrame, target: ExportTarget) -> pd.DataFrame:
    """The rows and columns ``target`` exports from one list, renamed as in its file."""
    return _columns(_rows(frame, target), target)


def _columns(rows: pd.DataFrame, target: ExportTarget) -> pd.DataFrame:
    if target.columns is None:  # every column people read: not the waterfall's data (in the list files and SQL)
        return rows.drop(columns=[c for c in NOT_EXPORTED if c in rows.columns]).reset_index(drop=True)
    names = target.columns if isinstance(target.columns, dict) else {c: c for c in target.columns}
    present = {source: name for source, name in names.items() if source in rows.columns}
    return rows[list(present)].rename(columns=present).reset_index(drop=True)


def is_right_to_left(language) -> bool:
    """True for a language (a CLDR code) written right to left (Hebrew, Arabic, ...); False for anything else."""
    try:
        return isinstance(language, str) and Locale.parse(language).character_order == "right-to-left"
    except (ValueError, TypeError):
        return False


def right_to_left(languages: pd.Series) -> pd.Series:
    """True for the rows whose language is written right to left (:func:`is_right_to_left`)."""
    return languages.map({c: is_right_to_left(c) for c in languages.dropna().unique()}).fillna(False).astype(bool)


def file_bytes(frame: pd.DataFrame, target: ExportTarget, rtl: pd.Series | None = None) -> bytes:
    """``frame`` (already selected) as the target's file. In an XLSX file the text cells of the ``rtl`` rows read
    right to left (Excel's reading order), as the reasons and actions of a Hebrew customer must."""
    dates = {c: frame[c].map(lambda d: d.strftime(target.date_format) if pd.notna(d) and d is not None else "")
             for c in frame.columns if c.endswith("_date") or c == "as_of"}
    frame = frame.assign(**dates)
    if target.format == "xlsx":
        from openpyxl.styles import Alignment

        buffer = io.BytesIO()
        with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
            frame.to_excel(writer, index=False, sheet_name="list")
            if rtl is not None and rtl.any():
                sheet, reading = writer.sheets["list"], Alignment(readingOrder=2)
                for position in rtl.to_numpy().nonzero()[0]:
                    for cell in sheet[int(position) + 2]:  # row 1 holds the header
                        if isinstance(cell.value, str):
                            cell.alignment = reading
        return buffer.getvalue()
    decimal = Locale.parse(target.locale).number_symbols["latn"]["decimal"]
    delimiter = target.delimiter or (";" if decimal == "," else ",")
    text = frame.to_csv(index=False, sep=delimiter, decimal=decimal, lineterminator="\r\n" if target.bom else "\n",
                        quoting=csv.QUOTE_MINIMAL)
    return (("\ufeff" if target.bom else "") + text).encode("utf-8")


def takes(target: ExportTarget, name: str) -> bool:
    """True when ``target`` exports list ``name``."""
    return target.lists is None or name in target.lists


def target_file(frame: pd.DataFrame, target: ExportTarget) -> bytes:
    """The file ``target`` makes of one list's rows (its groups, its columns, its dialect): what publishing writes
    for the whole list and what the workspace exports for a filtered view of it."""
    rows = _rows(frame, target)
    rtl = right_to_left(rows["language"]).reset_index(drop=True) if "language" in rows.columns else None
    return file_bytes(_columns(rows, target), target, rtl)


def export_files(name: str, frame: pd.DataFrame, targets: dict[str, ExportTarget]) -> dict[str, bytes]:
    """``exports/<target>.<ext>`` (relative to the list's as-of folder) for every target that takes list ``name``."""
    return {f"exports/{target_name}.{target.format}": target_file(frame, target)
            for target_name, target in targets.items() if takes(target, name)}


def changes(current: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    """Who ``entered`` the list, who ``left`` it and whose risk tier changed (``tier``) since ``previous`` (the
    list's published rows at its previous as-of date; None: everyone entered). One row per customer; sorted by
    change, then customer."""
    now = current.set_index("customer_id")["risk_tier"].astype("object") if "risk_tier" in current else (
        pd.Series("", index=current["customer_id"], dtype="object"))
    if previous is None or previous.empty:
        before = pd.Series(dtype="object")
    else:
        before = previous.set_index("customer_id")["risk_tier"].astype("object") if "risk_tier" in previous else (
            pd.Series("", index=previous["customer_id"], dtype="object"))
    entered = now.index.difference(before.index)
    left = before.index.difference(now.index)
    both = now.index.intersection(before.index)
    moved = both[(now.loc[both] != before.loc[both]).to_numpy()]
    rows = ([(c, "entered", None, now[c]) for c in entered] + [(c, "left", before[c], None) for c in left]
            + [(c, "tier", before[c], now[c]) for c in moved])
    table = pd.DataFrame(rows, columns=CHANGE_COLUMNS, dtype="object")
    return table.sort_values(["change", "customer_id"], kind="stable").reset_index(drop=True)
