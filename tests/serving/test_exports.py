"""Export files read back the way their targets read them: pandas with the BOM and delimiter, openpyxl for XLSX;
no control customer in a contact file; the changes since the previous list; churn forget rewrites them."""

from __future__ import annotations

import datetime as dt
import io
import json

import numpy as np
import pandas as pd
import pytest

from common.config import READY_EXPORTS, ExportTarget
from serving.exports import changes, export_files, file_bytes, select

AS_OF = dt.date(2026, 11, 1)


def _list() -> pd.DataFrame:
    return pd.DataFrame({
        "rank": [1, 2, 3], "customer_id": ["A", "B", "C"], "as_of": [AS_OF] * 3,
        "churn_probability": [0.9, 0.7, 0.4], "risk_tier": ["high", "high", "medium"],
        "value_at_risk": [1660.88, 12.5, 3.0], "expected_next_order_date": [None, None, dt.date(2026, 11, 9)],
        "country": ["CZ", "US", "DE"], "reason_1": ["Bez nákupu 143 dnů", "No orders in the last 30 days", None],
        "recommended_action": ["call", "email", "email"], "offer": ["10% off", "none", "none"],
        "playbook": ["p1", "p2", "p2"], "contact_group": ["treatment", "control", "treatment"],
        "campaign_id": ["c"] * 3, "email": ["a@x.cz", "b@x.com", "c@x.de"]})


def test_the_crm_file_holds_treatment_only_with_its_contact_key():
    crm = pd.read_csv(io.BytesIO(file_bytes(select(_list(), READY_EXPORTS["crm"]), READY_EXPORTS["crm"])))
    assert list(crm["customer_id"]) == ["A", "C"]  # B is in the control group: never in a contact file
    assert list(crm.columns) == ["customer_id", "email", "campaign_id", "recommended_action", "offer", "playbook",
                                 "risk_tier", "expected_next_order_date"]  # no name or phone in this list: left out
    assert crm["expected_next_order_date"].fillna("").tolist() == ["", "2026-11-09"]


def test_the_excel_csv_has_a_bom_and_the_locale_s_delimiter_and_decimal_comma():
    czech = ExportTarget(groups=["treatment"], bom=True, locale="cs_CZ", date_format="%d.%m.%Y")
    data = file_bytes(select(_list(), czech), czech)
    assert data.startswith(b"\xef\xbb\xbf") and b"\r\n" in data
    back = pd.read_csv(io.BytesIO(data), encoding="utf-8-sig", sep=";", decimal=",")
    assert back.loc[0, "reason_1"] == "Bez nákupu 143 dnů" and back.loc[0, "value_at_risk"] == 1660.88
    assert back.loc[1, "expected_next_order_date"] == "09.11.2026" and set(back["contact_group"]) == {"treatment"}
    english = READY_EXPORTS["excel"]  # en_US: commas, decimal point
    back = pd.read_csv(io.BytesIO(file_bytes(select(_list(), english), english)), encoding="utf-8-sig")
    assert back["value_at_risk"].tolist() == [1660.88, 3.0]


def test_an_xlsx_target_reads_back_with_openpyxl_and_renamed_columns():
    import openpyxl

    target = ExportTarget(format="xlsx", groups=["treatment"], columns={"customer_id": "External ID",
                                                                        "value_at_risk": "Value", "missing": "x"})
    files = export_files("at_risk", _list(), {"sheet": target})
    book = openpyxl.load_workbook(io.BytesIO(files["exports/sheet.xlsx"]))
    rows = list(book.active.values)
    assert rows == [("External ID", "Value"), ("A", 1660.88), ("C", 3.0)]


def test_changes_since_the_previous_list_by_hand():
    previous = pd.DataFrame({"customer_id": ["A", "B", "D"], "risk_tier": ["medium", "high", "high"]})
    table = changes(_list(), previous)
    assert table.to_dict("records") == [
        {"customer_id": "C", "change": "entered", "previous_tier": None, "risk_tier": "medium"},
        {"customer_id": "D", "change": "left", "previous_tier": "high", "risk_tier": None},
        {"customer_id": "A", "change": "tier", "previous_tier": "medium", "risk_tier": "high"}]
    assert set(changes(_list(), None)["change"]) == {"entered"}


def test_a_bad_locale_is_named():
    with pytest.raises(ValueError, match="unknown locale 'xx_YY'"):
        ExportTarget(locale="xx_YY")


def test_publish_writes_the_exports_and_forget_rewrites_them(tmp_path):
    from serving.publish import current_version, publish_lists, remove_customers

    frame = _list()
    lists = {"at_risk": frame, "winback": frame.iloc[:0]}
    publish_lists({"at_risk": frame.iloc[:1], "winback": frame.iloc[:0]}, tmp_path, dt.date(2026, 10, 1),
                  {"run_id": "r0"})
    publish_lists(lists, tmp_path, AS_OF, {"run_id": "r1"})
    folder = tmp_path / "at_risk" / f"as_of={AS_OF}"
    assert {p.name for p in (folder / "exports").iterdir()} == {"crm.csv", "excel.csv", "audit.csv", "targets.json"}
    assert pd.read_csv(folder / "changes.csv")["change"].tolist() == ["entered", "entered"]  # B and C; A stayed
    remove_customers(tmp_path, {"C"})
    version = current_version(tmp_path)
    folder = version / "at_risk" / f"as_of={AS_OF}"
    for name in ("crm.csv", "excel.csv", "audit.csv"):
        ids = pd.read_csv(folder / "exports" / name, encoding="utf-8-sig")["customer_id"]
        assert "C" not in set(ids) and "A" in set(ids), name
    assert b"c@x.de" not in (folder / "exports" / "crm.csv").read_bytes()
    assert "C" not in set(pd.read_csv(folder / "changes.csv")["customer_id"])
    assert json.loads((folder / "exports" / "targets.json").read_text())["crm"]["groups"] == ["treatment"]
    assert np.isfinite(pd.read_csv(folder / "exports" / "audit.csv")["value_at_risk"]).all()
    # a customer who left the list is named only in the changes: erased there too
    remove_customers(tmp_path, {"D"})
    publish_lists({"at_risk": frame.iloc[[0]], "winback": frame.iloc[:0]}, tmp_path, dt.date(2026, 12, 1),
                  {"run_id": "r2"})
    later = current_version(tmp_path) / "at_risk" / "as_of=2026-12-01"
    assert pd.read_csv(later / "changes.csv")["customer_id"].tolist() == ["B"]  # B left (C was forgotten)
    remove_customers(tmp_path, {"B"})
    now = current_version(tmp_path) / "at_risk"
    assert pd.read_csv(now / "as_of=2026-12-01" / "changes.csv").empty
    # the other files of those folders are still there, whole
    assert (now / "as_of=2026-12-01" / "at_risk.parquet").exists() and (now / f"as_of={AS_OF}" / "exports").is_dir()
    assert pd.read_parquet(now / f"as_of={AS_OF}" / "at_risk.parquet")["customer_id"].tolist() == ["A"]
