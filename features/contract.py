"""The data contract: the tables the pipeline understands, their columns, types and rules.

docs/contract.md documents the same content for people; :func:`contract_markdown` renders it from
here so the two cannot drift apart (a test compares them).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

import pandas as pd
import pandera.pandas as pa

Kind = Literal["id", "timestamp", "date", "float", "int", "bool", "str", "currency", "country"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    required: bool = False
    nullable: bool = True
    pii: bool = False
    doc: str = ""


@dataclass(frozen=True)
class TableContract:
    name: str
    doc: str
    columns: tuple[Column, ...]
    unique: tuple[str, ...] = ()  # a later row repeating these values is a duplicate
    time_column: str | None = None  # checked against the as-of date

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]


_CUSTOMER = Column("customer_id", "id", required=True, nullable=False, doc="customer key")

CONTRACT: dict[str, TableContract] = {t.name: t for t in (
    TableContract("transactions", "Orders and refunds; the only required table.", (
        _CUSTOMER,
        Column("ts", "timestamp", required=True, nullable=False, doc="date or timestamp of the order"),
        Column("amount", "float", required=True, nullable=False,
               doc="order value in `currency`; negative = refund or return"),
        Column("order_id", "id", nullable=False, doc="unique per row; derived from the row's content when absent"),
        Column("currency", "currency", doc="ISO 4217; missing = base currency"),
        Column("category", "str"), Column("channel", "str"),
        Column("quantity", "int"), Column("discount", "float", doc="discount granted, in `currency`"),
    ), unique=("order_id",), time_column="ts"),
    TableContract("customers", "One row per customer; PII never leaves ingestion.", (
        _CUSTOMER,
        Column("signup_date", "date"), Column("country", "country", doc="ISO 3166-1 alpha-2"),
        Column("marketing_consent", "bool", doc="false or missing = never on an outreach list"),
        Column("acquisition_channel", "str", doc="how the customer was acquired (organic, paid_search, social, "
                                                 "referral, ...): `referral` counts in the KPI report's referral "
                                                 "rate"),
        Column("email", "str", pii=True), Column("name", "str", pii=True), Column("phone", "str", pii=True),
    ), unique=("customer_id",), time_column="signup_date"),
    TableContract("support_tickets", "Support tickets.", (
        _CUSTOMER,
        Column("opened_at", "timestamp", required=True, nullable=False),
        Column("resolved_at", "timestamp", doc="missing = still open"),
        Column("ticket_id", "id", nullable=False), Column("category", "str"),
        Column("csat", "float", doc="1-5"),
    ), unique=("ticket_id",), time_column="opened_at"),
    TableContract("surveys", "NPS / CSAT / CES survey answers.", (
        _CUSTOMER,
        Column("ts", "timestamp", required=True, nullable=False),
        Column("nps", "float", doc="0-10"), Column("csat", "float", doc="1-5"), Column("ces", "float", doc="1-7"),
    ), time_column="ts"),
    TableContract("web_sessions", "Web or app sessions.", (
        _CUSTOMER,
        Column("ts", "timestamp", required=True, nullable=False),
        Column("pages", "int", doc=">= 0"), Column("duration", "float", doc="seconds, >= 0"),
    ), time_column="ts"),
    TableContract("email_events", "Marketing e-mail events.", (
        _CUSTOMER,
        Column("ts", "timestamp", required=True, nullable=False),
        Column("event", "str", required=True, nullable=False, doc="sent, open, click or unsubscribe"),
        Column("campaign_id", "str"),
    ), time_column="ts"),
    TableContract("subscriptions", "Subscription spells (contractual setting); a plan change starts a new row.", (
        _CUSTOMER,
        Column("plan", "str", required=True, nullable=False),
        Column("started_at", "date", required=True, nullable=False),
        Column("cancelled_at", "date", doc="missing = still running"),
        Column("monthly_amount", "float", doc=">= 0, in `currency`"),
        Column("currency", "currency", doc="ISO 4217; missing = base currency"),
        Column("subscription_id", "id", nullable=False),
    ), unique=("subscription_id",), time_column="started_at"),
    TableContract("fx_rates", "Exchange rates: units of the base currency for one unit of `currency`.", (
        Column("date", "date", required=True, nullable=False),
        Column("currency", "currency", required=True, nullable=False),
        Column("rate_to_base", "float", required=True, nullable=False, doc="> 0"),
    ), unique=("date", "currency"), time_column="date"),
)}

EMAIL_EVENTS = ("sent", "open", "click", "unsubscribe")
PII_COLUMNS = tuple(c.name for c in CONTRACT["customers"].columns if c.pii)


def value_checks(table: str, present: list[str], as_of: dt.date) -> pa.DataFrameSchema:
    """Pandera schema of the value rules of ``table`` for rows that were already typed.

    Only columns in ``present`` are checked. Timestamps on or after the day after ``as_of`` are in the future.
    """
    contract = CONTRACT[table]
    limit = pd.Timestamp(as_of) + pd.Timedelta(days=1)
    rules: dict[str, list[pa.Check]] = {
        "nps": [pa.Check.in_range(0, 10, error="nps outside 0-10")],
        "csat": [pa.Check.in_range(1, 5, error="csat outside 1-5")],
        "ces": [pa.Check.in_range(1, 7, error="ces outside 1-7")],
        "pages": [pa.Check.ge(0, error="negative pages")],
        "duration": [pa.Check.ge(0, error="negative duration")],
        "rate_to_base": [pa.Check.gt(0, error="rate_to_base not positive")],
        "monthly_amount": [pa.Check.ge(0, error="negative monthly_amount")],
        "event": [pa.Check.isin(EMAIL_EVENTS, error=f"event not one of {', '.join(EMAIL_EVENTS)}")],
    }
    if contract.time_column:
        rules[contract.time_column] = [pa.Check.lt(limit, error=f"{contract.time_column} after the as-of date "
                                                                f"{as_of.isoformat()}")]
    columns = {}
    for col in contract.columns:
        if col.name not in present:
            continue
        columns[col.name] = pa.Column(checks=rules.get(col.name, []), nullable=True, required=True,
                                      coerce=False)
    wide = []
    if table == "support_tickets" and {"opened_at", "resolved_at"} <= set(present):
        wide.append(pa.Check(lambda df: df["resolved_at"].isna() | (df["resolved_at"] >= df["opened_at"]),
                             error="resolved_at before opened_at"))
    if table == "subscriptions" and {"started_at", "cancelled_at"} <= set(present):
        wide.append(pa.Check(lambda df: df["cancelled_at"].isna() | (df["cancelled_at"] >= df["started_at"]),
                             error="cancelled_at before started_at"))
    if table == "surveys":
        scores = [c for c in ("nps", "csat", "ces") if c in present]
        wide.append(pa.Check(lambda df: df[scores].notna().any(axis=1) if scores else df.index.notna(),
                             error="no score (nps, csat or ces)"))
    return pa.DataFrameSchema(columns, checks=wide, strict=False)


def contract_markdown() -> str:
    """The data contract as Markdown tables (docs/contract.md embeds this text)."""
    lines = []
    for t in CONTRACT.values():
        req = "required" if t.name == "transactions" else "optional"
        lines += [f"#### `{t.name}` ({req})", "", t.doc, "", "| column | type | required | notes |",
                  "| --- | --- | --- | --- |"]
        for c in t.columns:
            notes = "; ".join(x for x in (c.doc, "PII" if c.pii else "") if x)
            lines.append(f"| `{c.name}` | {c.kind} | {'yes' if c.required else 'no'} | {notes} |")
        if t.unique:
            lines += ["", f"Unique: {', '.join(f'`{u}`' for u in t.unique)} (later repeats are rejected)."]
        lines.append("")
    return "\n".join(lines)
