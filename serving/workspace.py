"""What the retention workspace reads: the SQL tables the publisher writes (one table per list, every as-of date,
and ``list_latest``), never recomputed. Every filter and sort is a bound parameter or a column checked against the
table's own columns, so no request text ever becomes SQL.

The dates of each list and the counts and totals of a filtered view are kept until the next publish (the
``list_publish`` id changes), so paging through a view costs one indexed query a page, and a page asked for again
(the last ``PAGES_KEPT``) none. A list view
(:class:`ListQuery`) filters by risk tier, RFM segment, country, playbook, contact group, value and
score ranges and a customer id prefix, sorts by any published column and pages; its counts and totals are those
of the whole filtered view. A profile gathers one customer's rows of every list and as-of date (the score
history) with the latest one first. Contact fields are returned only when the caller may see them.
"""

from __future__ import annotations

import datetime as dt
import threading
from functools import cache, cached_property
from typing import Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from serving.lists import LISTS, MONEY_COLUMNS
from serving.lists import get as get_list

CONTACT_COLUMNS = ("email", "name", "phone")
PROFILE_ONLY = ("shap_contributions", "purchase_history")  # a profile's data, not a list column
POINTER_TABLE = "list_latest"
LIST_TAG = "profile_list"  # the list of a profile's row, in the one statement that reads every list
VERSION_TABLE = "list_publish"
MAX_EXPORT_ROWS = 500_000
VIEWS_KEPT = 32
PAGES_KEPT = 512
PAGE_ROWS_KEPT = 100


class QueryError(ValueError):
    """A list query that names something the list does not have (a column to sort by, a date)."""


class ListQuery(BaseModel):
    """Filters, sorting and paging of a list view (every field optional)."""

    model_config = ConfigDict(extra="forbid")

    as_of: dt.date | None = None
    tier: list[str] = []
    segment: list[str] = []
    country: list[str] = []
    playbook: list[str] = []
    group: Literal["treatment", "control"] | None = None
    value_min: float | None = None
    value_max: float | None = None
    score_min: float | None = Field(None, ge=0, le=1)
    score_max: float | None = Field(None, ge=0, le=1)
    q: str | None = Field(None, max_length=64, description="customer id, or its beginning")
    sort: str = "rank"
    order: Literal["asc", "desc"] = "asc"
    page: int = Field(1, ge=1, le=1_000_000)
    size: int = Field(50, ge=1, le=500)


def _records(result) -> list[dict]:
    """The rows of ``result`` as dicts keyed by plain ``str``: SQLAlchemy's column names are a ``str`` subclass,
    for which a fast JSON encoder (the app's) takes a slow path per key."""
    keys = [str(k) for k in result.keys()]
    return [dict(zip(keys, row)) for row in result.all()]


class _PublishCache:
    """Values computed once per publish (the ``list_publish`` id) and key, at most ``limit`` of them (the oldest
    goes first). Concurrent requests for one key wait for the first instead of all scanning the table: a stampede
    of first requests after a publish would never catch up under load."""

    def __init__(self, limit: int):
        self.limit, self.version = limit, None
        self.values: dict = {}
        self.flights: dict = {}  # key -> the lock of the one request computing it
        self.lock = threading.Lock()

    def get(self, version: str | None, key, compute):
        if version is None:  # nothing published through the store: nothing to key on
            return compute()
        with self.lock:
            if self.version != version:
                self.version, self.values = version, {}
            if key in self.values:
                return self.values[key]
            flight = self.flights.setdefault(key, threading.Lock())
        with flight:
            with self.lock:
                if self.version == version and key in self.values:
                    return self.values[key]
            value = compute()
            with self.lock:
                if self.version == version:
                    if len(self.values) >= self.limit:
                        self.values.pop(next(iter(self.values)))
                    self.values[key] = value
                self.flights.pop(key, None)
        return value


class Workspace:
    """Read access to the published lists through SQLAlchemy (SQLite by default, any URL such as PostgreSQL)."""

    def __init__(self, url: str):
        self.url = url
        # reads only, each statement its own snapshot (as READ COMMITTED gives inside a transaction too): no BEGIN
        # and ROLLBACK round trips per request. No liveness check before each use either (another round trip);
        # a connection the server dropped fails its first statement and the read is run once more (_read)
        self.engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        self.in_process = self.engine.dialect.name == "sqlite"  # no server to wait for: reads are CPU work
        self._tables: dict[str, sa.Table] = {}
        self._histories: dict[bool, tuple] = {}  # a profile's statements, with and without contact fields
        self._tables_version: str | None = None
        self._small = _PublishCache(4096)  # dates and view totals
        self._views = _PublishCache(VIEWS_KEPT)  # each view's customer ids in order
        self._pages = _PublishCache(PAGES_KEPT)  # the rows of the pages last asked for

    def _read(self, work):
        """``work(connection)`` on a pooled connection; once more on a new one when the first had been dropped
        by the server (a restart, an idle timeout): the pool then replaces every connection older than that."""
        try:
            with self.engine.connect() as db:
                return work(db)
        except sa.exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        with self.engine.connect() as db:
            return work(db)

    def _publish_id(self, db) -> str | None:
        """The publish whose rows the tables hold (``list_publish``): a new one empties the caches and the
        reflected tables (a publish may have added a column)."""
        try:
            version = db.execute(sa.text(f"SELECT publish_id FROM {VERSION_TABLE}")).scalar()
        except sa.exc.SQLAlchemyError as exc:
            if getattr(exc, "connection_invalidated", False):  # a dropped connection: _read runs it once more
                raise
            db.rollback()
            return None
        if version != self._tables_version:
            self._tables, self._histories, self._tables_version = {}, {}, version
        return version

    def _cached(self, version: str | None, key, compute):
        return self._small.get(version, key, compute)

    def table(self, name: str, db=None) -> sa.Table | None:
        """The reflected table of list ``name`` (None before its first publish). Inside a request pass its
        connection ``db``: taking a second one from the pool while holding one can wait forever under load."""
        table = self._tables.get(name)
        if table is None:
            get_list(name)  # a clear error for an unknown list
            if db is None:
                return self._read(lambda db: self.table(name, db))
            if not sa.inspect(db).has_table(name):
                return None
            table = self._tables[name] = sa.Table(name, sa.MetaData(), autoload_with=db)
        return table

    @cached_property
    def _pointer(self) -> sa.Table:
        return sa.Table(POINTER_TABLE, sa.MetaData(), sa.Column("list"), sa.Column("as_of"), sa.Column("run_id"),
                        sa.Column("row_count"))

    def health(self) -> dict:
        """Database reachable and the latest as-of date and rows of each list."""
        def pointers(db) -> list | None:
            if not sa.inspect(db).has_table(POINTER_TABLE):
                return None
            return db.execute(sa.select(self._pointer)).mappings().all()

        try:
            rows = self._read(pointers)
        except sa.exc.SQLAlchemyError as exc:
            return {"database": f"unreachable: {type(exc).__name__}", "lists": {}}
        if rows is None:
            return {"database": "ok", "lists": {}}
        lists = {r["list"]: {"as_of": r["as_of"], "rows": r["row_count"], "model_versions": {}} for r in rows}
        with self.engine.connect() as db:
            for name, state in lists.items():
                table = self.table(name, db) if name in {s.name for s in LISTS} else None
                versions = [c for c in table.columns if c.name.endswith("_model_version")] if table is not None else []
                if versions:
                    row = db.execute(sa.select(*versions).where(table.c.as_of == state["as_of"]).limit(1)).mappings()
                    state["model_versions"] = dict(row.first() or {})
        return {"database": "ok", "lists": lists}

    def _scan_dates(self, db, name: str) -> list[str]:
        """Every published as-of date of list ``name``, latest first."""
        table = self.table(name, db)
        if table is None:
            return []
        found = db.execute(sa.select(table.c.as_of).distinct().order_by(table.c.as_of.desc())).scalars()
        return [str(d) for d in found.all()]

    def columns(self, name: str, contact: bool, db=None) -> list[str]:
        table = self.table(name, db)
        if table is None:
            return []
        return [str(c.name) for c in table.columns if contact or c.name not in CONTACT_COLUMNS]

    def _where(self, name: str, table: sa.Table, query: ListQuery, as_of: str) -> list:
        spec = get_list(name)
        c = table.c
        conditions = [c.as_of == as_of]
        for values, column in ((query.tier, "risk_tier"), (query.segment, "rfm_segment"),
                               (query.country, "country"), (query.playbook, "playbook")):
            if values and column in c:
                conditions.append(c[column].in_(values))
        if query.group and "contact_group" in c:
            conditions.append(c.contact_group == query.group)
        if query.value_min is not None:
            conditions.append(c[spec.value] >= query.value_min)
        if query.value_max is not None:
            conditions.append(c[spec.value] <= query.value_max)
        if query.score_min is not None:
            conditions.append(c[spec.probability] >= query.score_min)
        if query.score_max is not None:
            conditions.append(c[spec.probability] <= query.score_max)
        if query.q:
            conditions.append(c.customer_id.startswith(query.q, autoescape=True))
        return conditions

    def page(self, name: str, query: ListQuery, contact: bool = False, everything: bool = False) -> dict:
        """One page of a list view (``everything``: every row of the view, for an export), with the view's
        counts and totals."""
        return self._read(lambda db: self._page(db, name, query, contact, everything))

    def _page(self, db, name: str, query: ListQuery, contact: bool, everything: bool) -> dict:
        spec = get_list(name)
        version = self._publish_id(db)
        dates = self._cached(version, ("dates", name), lambda: self._scan_dates(db, name))
        table = self.table(name, db)
        if table is None or not dates:
            return {"list": name, "as_of": None, "dates": [], "columns": [], "rows": [], "total": 0,
                    "totals": {}, "counts": {}, "page": query.page, "size": query.size, "pages": 0}
        as_of = str(query.as_of) if query.as_of else dates[0]
        if as_of not in dates:
            raise QueryError(f"list {name} has no as-of date {as_of}; it has {', '.join(dates[:5])}")
        columns = [str(c.name) for c in table.columns if (contact or c.name not in CONTACT_COLUMNS)
                   and c.name not in PROFILE_ONLY]
        if query.sort not in columns:
            raise QueryError(f"cannot sort by {query.sort!r}: list {name} has no such column")
        c = table.c
        view = (name, as_of, repr(sorted(query.model_dump(exclude={"sort", "order", "page", "size"},
                                                          mode="json").items())))

        @cache
        def clauses() -> tuple[list, list]:
            """The view's conditions and order, built only when a query runs (a kept page needs neither)."""
            key = c[query.sort].desc() if query.order == "desc" else c[query.sort].asc()
            order = [key] if query.sort == "rank" else [key, c["rank"]]  # rank is unique per date and indexed
            return self._where(name, table, query, as_of), order

        def view_totals() -> tuple[dict, dict]:
            where = clauses()[0]
            # a sum of unit costs means nothing
            money = [m for m in MONEY_COLUMNS if m in c and m != "cost_per_contact"]
            summary = sa.select(sa.func.count().label("rows"),
                                *[sa.func.sum(c[m]).label(m) for m in money]).where(*where)
            totals = dict(db.execute(summary).mappings().one())
            counts = {}
            if "contact_group" in c:
                counts = dict(db.execute(sa.select(c.contact_group, sa.func.count()).where(*where)
                                         .group_by(c.contact_group)).all())
            return totals, counts

        totals, counts = self._cached(version, ("view", *view), view_totals)
        totals = dict(totals)
        if everything:
            where, order = clauses()
            result = db.execute(sa.select(*[c[n] for n in columns]).where(*where).order_by(*order)
                                .limit(MAX_EXPORT_ROWS))
            rows = _records(result)
        else:
            rows = self._rows_of_page(db, version, table, columns, clauses, query,
                                      ("ids", *view, query.sort, query.order))
        total = int(totals.pop("rows"))
        return {"list": name, "as_of": as_of, "dates": dates, "columns": columns, "rows": rows, "total": total,
                "totals": totals, "counts": counts, "page": query.page, "size": query.size,
                "pages": -(-total // query.size), "value": spec.value, "probability": spec.probability}

    def _rows_of_page(self, db, version, table: sa.Table, columns: list[str], clauses, query: ListQuery,
                      key) -> list[dict]:
        """One page: the view's customer ids in order are kept (for the last ``VIEWS_KEPT`` views, until the next
        publish), so a page is one indexed lookup of ``size`` customers instead of a scan to its offset.
        ``clauses()`` gives the view's conditions and order."""
        c = table.c
        ids = self._views.get(version, key, lambda: db.execute(
            sa.select(c.customer_id).where(*clauses()[0]).order_by(*clauses()[1])).scalars().all())
        wanted = ids[(query.page - 1) * query.size:query.page * query.size]
        if not wanted:
            return []

        def rows() -> list[dict]:
            result = db.execute(sa.select(*[c[n] for n in columns]).where(clauses()[0][0],
                                                                          c.customer_id.in_(wanted)))
            found = {r["customer_id"]: r for r in _records(result)}
            return [found[i] for i in wanted if i in found]

        # the rows of a page do not change until the next publish (an erasure is a publish too, so a forgotten
        # customer leaves every cached page at once); the callers change nothing in them. Only pages of up to
        # PAGE_ROWS_KEPT rows are kept, so that the cache stays a few tens of MB
        if query.size > PAGE_ROWS_KEPT:
            return rows()
        return self._pages.get(version, (key, tuple(columns), query.page, query.size), rows)

    def _histories_of(self, contact: bool, db) -> tuple[list[sa.CompoundSelect | sa.Select], dict[str, list[str]]]:
        """The statements of one customer's rows of every published list, latest first, each row tagged with its
        list (``LIST_TAG``), and each list's columns; built once per reflected tables (SQLAlchemy then compiles
        them once too). Normally one UNION ALL of the lists (each list's own columns, NULL for another's), so that
        a profile is one round trip to the database; one statement per list if a column's type differs between
        two lists (a UNION needs one type per column)."""
        found = self._histories.get(contact)
        if found is not None:
            return found
        tables = {spec.name: t for spec in LISTS if (t := self.table(spec.name, db)) is not None}
        own = {name: self.columns(name, contact, db) for name in tables}
        every = list(dict.fromkeys(n for names in own.values() for n in names))
        kinds = {(n, repr(t.c[n].type)) for name, t in tables.items() for n in own[name]}

        def select(name: str, names: list[str]) -> sa.Select:
            c = tables[name].c
            return sa.select(sa.literal(name).label(LIST_TAG),
                             *[c[n] if n in own[name] else sa.null().label(n) for n in names]
                             ).where(c.customer_id == sa.bindparam("customer_id"))

        latest_first = sa.literal_column("as_of").desc()
        if len(tables) > 1 and len(kinds) == len(every):
            statements = [sa.union_all(*[select(name, every) for name in tables]).order_by(latest_first)]
        else:
            statements = [select(name, own[name]).order_by(latest_first) for name in tables]
        found = self._histories[contact] = (statements, own)
        return found

    def customer(self, customer_id: str, contact: bool = False) -> dict | None:
        """One customer's rows on every list and as-of date (latest first), or None when no list holds them (a
        forgotten customer is gone from every table, so this is None right after `churn forget`)."""
        def rows_of(db) -> dict[str, list[dict]]:
            statements, own = self._histories_of(contact, db)
            found: dict[str, list[dict]] = {}
            for statement in statements:
                for row in _records(db.execute(statement, {"customer_id": customer_id})):
                    name = row[LIST_TAG]
                    found.setdefault(name, []).append({n: row[n] for n in own[name]})
            return {spec.name: found[spec.name] for spec in LISTS if spec.name in found}

        found = self._read(rows_of)
        if not found:
            return None
        latest = max(((name, rows[0]) for name, rows in found.items()), key=lambda item: str(item[1]["as_of"]))
        return {"customer_id": customer_id, "list": latest[0], "latest": latest[1], "lists": found}

    def campaigns(self) -> list[dict]:
        """Per list and as-of date: treatment and control counts, cost, expected saved value, net return, and the
        customers each playbook matched."""
        return self._read(self._campaigns)

    def _campaigns(self, db) -> list[dict]:
        out = []
        for spec in LISTS:
            table = self.table(spec.name, db)
            if table is None or "contact_group" not in table.c:
                continue
            c = table.c
            treated = c.contact_group == "treatment"
            saved = sa.func.sum(sa.case((treated, c[spec.value] * c.success_rate), else_=0))
            cost = sa.func.sum(sa.case((treated, c.cost_per_contact), else_=0))
            rows = db.execute(sa.select(c.as_of, c.campaign_id,
                                        sa.func.sum(sa.case((treated, 1), else_=0)).label("treatment"),
                                        sa.func.sum(sa.case((treated, 0), else_=1)).label("control"),
                                        cost.label("cost"), saved.label("expected_saved_value"))
                              .group_by(c.as_of, c.campaign_id).order_by(c.as_of.desc())).mappings().all()
            books = db.execute(sa.select(c.as_of, c.playbook, sa.func.count().label("customers"))
                               .group_by(c.as_of, c.playbook).order_by(sa.func.count().desc())).mappings().all()
            for r in rows:
                item = {"list": spec.name, **dict(r)}
                item["cost"] = float(item["cost"] or 0)
                item["expected_saved_value"] = float(item["expected_saved_value"] or 0)
                item["expected_net_return"] = item["expected_saved_value"] - item["cost"]
                item["playbooks"] = {b["playbook"]: b["customers"] for b in books if b["as_of"] == r["as_of"]}
                out.append(item)
        return out
