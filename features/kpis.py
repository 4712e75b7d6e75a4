"""Retention KPIs per period and the cohort retention matrix, from the validated tables (``churn report``).

A period is a calendar month or quarter ``[start, end)``; only complete periods (``end <= as_of``, the report's
exclusive cutoff) are reported. "Customer" and "lost" use the labels' activity rule
(:mod:`features.definitions`): a customer is *active* at a date ``t`` when their last order (a row with
``amount >= 0``) is at most ``activity_window_days`` days before ``t``. ``status`` gives, per period boundary,
every customer with an order before it, whether they are active there, their RFM segment there and their
country (the point-in-time snapshot at that cutoff, built by the feature engine: see :func:`boundary_status`).
Money is the validated amount, in the base currency.

Per period and group (everyone; each market, i.e. country; each RFM segment at the start of the period):

* ``customers_start`` S: active at ``start``; ``customers_end`` E: active at ``end``; ``new_customers`` N: first
  order in ``[start, end)``; ``lost_customers`` L: active at ``start`` and not at ``end``;
* ``churn_rate`` = L / S; ``retention_rate`` = (E - N) / S (a lapsed customer who came back counts in E);
* ``revenue_retention`` = net revenue (refunds subtracted) in the period of the S customers / their net revenue
  in the period before (of the same kind);
* ``average_order_value`` = order value (rows with ``amount >= 0``) / orders in the period;
  ``purchase_frequency`` = orders / customers with an order in the period; ``repeat_purchase_rate`` = share of
  those customers with at least two orders up to the period's end;
* ``expected_lifespan_periods`` = 1 / churn rate; ``historical_cltv`` = AOV x purchase frequency x expected
  lifespan (money over a customer's expected life, in periods of this kind);
* surveys in the period: ``nps`` = % promoters (9-10) - % detractors (0-6), with ``nps_promoters``,
  ``nps_passives`` (7-8) and ``nps_detractors`` (shares of the NPS answers); ``csat`` = share of CSAT answers of
  4 or 5 and ``csat_mean``; ``ces_mean``; ``survey_response_rate`` = the S customers who answered any survey in
  the period / S (the data holds answers, not invitations);
* support: ``tickets_per_100`` = tickets opened in the period x 100 / S; ``ticket_csat_mean``;
* ``referral_rate`` = share of the N new customers whose ``acquisition_channel`` is ``referral`` (customers
  table).

A group's segment is the customer's at the period's start, so new customers belong to no segment (their N is 0
in every segment, which keeps E - N the customers retained). A KPI without its data (no surveys table, no
acquisition channel, no customers at the start) is NaN: "no data", never 0.

The cohort matrix: a customer's cohort is the month of their first order; for month ``k`` since it (0 = the
first month) it counts the cohort's customers with an order in that month and the cohort's net revenue in it,
for every complete month (before the month of ``as_of``), overall and per market.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

PERIODS = ("month", "quarter")
OVERALL = "all customers"
GROUPINGS = ("overall", "market", "segment")
KPI_COLUMNS = ("customers_start", "customers_end", "new_customers", "lost_customers", "churn_rate",
               "retention_rate", "revenue_retention", "average_order_value", "purchase_frequency",
               "repeat_purchase_rate", "expected_lifespan_periods", "historical_cltv", "nps", "nps_promoters",
               "nps_passives", "nps_detractors", "csat", "csat_mean", "ces_mean", "survey_response_rate",
               "tickets_per_100", "ticket_csat_mean", "referral_rate")
REFERRAL = "referral"
# money is summed in whole millionths, as the features do (features.definitions.MICROS): integer sums do not depend
# on the order DuckDB's threads add rows in, so the same data gives byte-identical tables
_MICROS = "CAST(round(amount * 1e6) AS BIGINT)"


def _months(period: str) -> int:
    if period not in PERIODS:
        raise ValueError(f"the period must be one of {PERIODS}, got {period!r}")
    return 1 if period == "month" else 3


def period_start(day: dt.date, period: str) -> dt.date:
    """The first day of the month or quarter holding ``day``."""
    months = _months(period)
    return dt.date(day.year, (day.month - 1) // months * months + 1, 1)


def shift(day: dt.date, periods: int, period: str) -> dt.date:
    """``day`` (a period start) moved by ``periods`` periods."""
    index = day.year * 12 + day.month - 1 + periods * _months(period)
    return dt.date(index // 12, index % 12 + 1, 1)


def boundaries(as_of: dt.date, first_day: dt.date, period: str, count: int) -> list[dt.date]:
    """The starts of the last ``count`` complete periods before ``as_of`` and the end of the last one, oldest
    first; a period is reported only when the one before it lies in the data too (revenue retention needs it),
    so the first start is at least one period after the start of the period of ``first_day``."""
    end = period_start(as_of, period)
    earliest = shift(period_start(first_day, period), 1, period)
    starts = [shift(end, -i, period) for i in range(count, 0, -1)]
    return [s for s in starts if s >= earliest] + [end]


def label(start: dt.date, period: str) -> str:
    return f"{start:%Y-%m}" if period == "month" else f"{start.year}-Q{(start.month - 1) // 3 + 1}"


def _customer_periods(transactions: pd.DataFrame, edges: list[dt.date]) -> pd.DataFrame:
    """Per customer and period (index into ``edges``, -1 = the period before the first): orders, order value,
    net revenue; from one DuckDB pass over the transactions."""
    con = duckdb.connect()
    try:
        con.register("t", transactions[["customer_id", "ts", "amount"]])
        before = shift(edges[0], -_period_months(edges), "month")
        bounds = [before, *edges]
        case = " ".join(f"WHEN ts < TIMESTAMP '{b}' THEN {i - 1}" for i, b in enumerate(bounds[1:]))
        return con.execute(
            f"SELECT customer_id, CASE {case} END AS period, count(*) FILTER (WHERE amount >= 0) AS orders, "
            f"coalesce(sum({_MICROS}) FILTER (WHERE amount >= 0), 0) / 1e6 AS order_value, sum({_MICROS}) / 1e6 AS net "
            f"FROM t WHERE ts >= TIMESTAMP '{before}' AND ts < TIMESTAMP '{edges[-1]}' GROUP BY 1, 2").df()
    finally:
        con.close()


def _period_months(edges: list[dt.date]) -> int:
    return (edges[1].year - edges[0].year) * 12 + edges[1].month - edges[0].month


def _orders_until(transactions: pd.DataFrame, edges: list[dt.date]) -> pd.DataFrame:
    """Per customer and period index: orders before the period's end (lifetime, for the repeat-purchase rate)."""
    orders = transactions.loc[transactions["amount"] >= 0, ["customer_id", "ts"]]
    frames = []
    for i, end in enumerate(edges[1:]):
        counts = orders.loc[orders["ts"] < pd.Timestamp(end)].groupby("customer_id").size()
        frames.append(pd.DataFrame({"customer_id": counts.index, "period": i, "lifetime_orders": counts.to_numpy()}))
    return pd.concat(frames, ignore_index=True)


def _share(numerator, denominator):
    return numerator / denominator if denominator else np.nan


def kpi_table(status: pd.DataFrame | None, transactions: pd.DataFrame, edges: list[dt.date], period: str,
              customers: pd.DataFrame | None = None, surveys: pd.DataFrame | None = None,
              tickets: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per period and group (``grouping`` overall / market / segment, ``group``) with :data:`KPI_COLUMNS`.

    ``status``: ``customer_id``, ``cutoff`` (each of ``edges``), ``is_active``, ``rfm_segment``, ``country`` for
    every customer with an order before the cutoff; ``transactions``: ``customer_id``, ``ts``, ``amount`` (base
    currency); ``customers``: ``customer_id`` and, when known, ``acquisition_channel``; ``surveys``:
    ``customer_id``, ``ts`` and any of ``nps``, ``csat``, ``ces``; ``tickets``: ``customer_id``, ``opened_at`` and
    optionally ``csat``.
    """
    if len(edges) < 2:
        return pd.DataFrame(columns=["period", "start", "end", "grouping", "group", *KPI_COLUMNS])
    status = status.assign(cutoff=pd.to_datetime(status["cutoff"]).dt.date)
    flows = _customer_periods(transactions, edges)
    lifetime = _orders_until(transactions, edges)
    country = status.drop_duplicates("customer_id", keep="last").set_index("customer_id")["country"]
    channel = None
    if customers is not None and "acquisition_channel" in customers.columns:
        channel = customers.set_index("customer_id")["acquisition_channel"]
    rows = []
    for i, (start, end) in enumerate(zip(edges[:-1], edges[1:])):
        at_start = status[status["cutoff"] == start].set_index("customer_id")
        at_end = status[status["cutoff"] == end].set_index("customer_id")
        base = pd.DataFrame(index=at_end.index)  # every customer known by the period's end
        base["active_start"] = at_start["is_active"].reindex(base.index).fillna(False).astype(bool)
        base["active_end"] = at_end["is_active"].astype(bool)
        base["new"] = ~base.index.isin(at_start.index)
        base["market"] = country.reindex(base.index)
        base["segment"] = at_start["rfm_segment"].reindex(base.index)
        now = flows[flows["period"] == i].set_index("customer_id")
        before = flows[flows["period"] == i - 1].set_index("customer_id")
        base["orders"] = now["orders"].reindex(base.index).fillna(0)
        base["order_value"] = now["order_value"].reindex(base.index).fillna(0.0)
        base["net"] = now["net"].reindex(base.index).fillna(0.0)
        base["net_before"] = before["net"].reindex(base.index).fillna(0.0)
        life = lifetime[lifetime["period"] == i].set_index("customer_id")["lifetime_orders"]
        base["lifetime_orders"] = life.reindex(base.index).fillna(0)
        base["referral"] = (channel.reindex(base.index) == REFERRAL) if channel is not None else np.nan
        base["position"] = np.arange(len(base))  # each event below carries its customer's position in base
        window = (pd.Timestamp(start), pd.Timestamp(end))
        answers = _Events.of(_in_window(surveys, "ts", window), base)
        opened = _Events.of(_in_window(tickets, "opened_at", window), base)
        for grouping, key in (("overall", None), ("market", "market"), ("segment", "segment")):
            groups = [(OVERALL, base)] if key is None else [
                (g, frame) for g, frame in base.groupby(key, sort=True, dropna=True)]
            for group, members in groups:
                if key == "segment":  # new customers have no segment at the start: none of them is in a segment
                    members = members[~members["new"]]
                rows.append({"period": label(start, period), "start": start, "end": end, "grouping": grouping,
                             "group": group, **_kpis(members, answers, opened, channel is not None,
                                                     surveys is not None, tickets is not None)})
    return pd.DataFrame(rows, columns=["period", "start", "end", "grouping", "group", *KPI_COLUMNS])


@dataclass
class _Events:
    """A period's survey answers or tickets, each with its customer's position in the period's customers (-1:
    not one of them), so that a group's events are picked by position instead of by id (an id lookup per group
    and period cost most of the report's time)."""

    rows: pd.DataFrame
    at: np.ndarray
    size: int

    @classmethod
    def of(cls, rows: pd.DataFrame | None, base: pd.DataFrame) -> "_Events | None":
        if rows is None:
            return None
        return cls(rows, base.index.get_indexer(rows["customer_id"]), len(base))

    def flags(self, positions) -> np.ndarray:
        """Per event, whether its customer is at one of ``positions``."""
        flag = np.zeros(self.size + 1, bool)  # the last slot stands for -1 (not a customer of the period)
        flag[np.asarray(positions, dtype=np.int64)] = True
        return flag[self.at]

    def of_customers(self, positions) -> "_Events":
        keep = self.flags(positions)
        return _Events(self.rows[keep], self.at[keep], self.size)


def _in_window(frame: pd.DataFrame | None, column: str, window) -> pd.DataFrame | None:
    if frame is None:
        return None
    times = pd.to_datetime(frame[column])
    return frame[(times >= window[0]) & (times < window[1])]


def _kpis(m: pd.DataFrame, answers: _Events | None, opened: _Events | None, has_channel: bool, has_surveys: bool,
          has_tickets: bool) -> dict:
    s = int(m["active_start"].sum())
    e = int(m["active_end"].sum())
    n = int(m["new"].sum())
    lost = int((m["active_start"] & ~m["active_end"]).sum())
    start_members = m[m["active_start"]]
    buyers = m[m["orders"] > 0]
    orders = float(buyers["orders"].sum())
    churn = _share(lost, s)
    aov = _share(float(buyers["order_value"].sum()), orders)
    frequency = _share(orders, len(buyers))
    lifespan = 1 / churn if churn and np.isfinite(churn) else np.nan
    out = {
        "customers_start": s, "customers_end": e, "new_customers": n, "lost_customers": lost,
        "churn_rate": churn, "retention_rate": _share(e - n, s),
        "revenue_retention": _share(float(start_members["net"].sum()), float(start_members["net_before"].sum())),
        "average_order_value": aov, "purchase_frequency": frequency,
        "repeat_purchase_rate": _share(int((buyers["lifetime_orders"] >= 2).sum()), len(buyers)),
        "expected_lifespan_periods": lifespan, "historical_cltv": aov * frequency * lifespan,
        "referral_rate": _share(float(m.loc[m["new"], "referral"].sum()), n) if has_channel else np.nan,
    }
    out.update(_survey_kpis(answers.of_customers(m["position"]) if has_surveys else None,
                            start_members["position"], s))
    if has_tickets:
        mine = opened.of_customers(m["position"]).rows
        out["tickets_per_100"] = _share(100.0 * len(mine), s)
        out["ticket_csat_mean"] = (float(mine["csat"].mean()) if "csat" in mine.columns and mine["csat"].notna().any()
                                   else np.nan)
    else:
        out["tickets_per_100"] = out["ticket_csat_mean"] = np.nan
    return out


def _survey_kpis(events: _Events | None, start_positions, customers_start: int) -> dict:
    keys = ("nps", "nps_promoters", "nps_passives", "nps_detractors", "csat", "csat_mean", "ces_mean",
            "survey_response_rate")
    out = dict.fromkeys(keys, np.nan)
    if events is None:
        return out
    answers = events.rows
    if "nps" in answers.columns and answers["nps"].notna().any():
        nps = answers["nps"].dropna()
        out["nps_promoters"] = float((nps >= 9).mean())
        out["nps_passives"] = float(((nps >= 7) & (nps < 9)).mean())
        out["nps_detractors"] = float((nps <= 6).mean())
        out["nps"] = 100 * (out["nps_promoters"] - out["nps_detractors"])
    if "csat" in answers.columns and answers["csat"].notna().any():
        csat = answers["csat"].dropna()
        out["csat"], out["csat_mean"] = float((csat >= 4).mean()), float(csat.mean())
    if "ces" in answers.columns and answers["ces"].notna().any():
        out["ces_mean"] = float(answers["ces"].dropna().mean())
    responded = len(np.unique(events.at[events.flags(start_positions)]))
    out["survey_response_rate"] = _share(responded, customers_start)
    return out


def cohort_matrix(transactions: pd.DataFrame, as_of: dt.date, countries: pd.DataFrame | None = None) -> pd.DataFrame:
    """Long table of the cohort retention matrix: ``market`` (:data:`OVERALL` and each country of ``countries``:
    ``customer_id``, ``country``),
    ``cohort`` (first-order month, ``YYYY-MM``), ``months_since`` (0 = that month), ``cohort_size``,
    ``customers`` (of the cohort with an order in that month), ``customer_share``, ``net_revenue`` and
    ``revenue_share`` (of the cohort's net revenue in its first month); complete months only."""
    end = period_start(as_of, "month")
    orders = transactions.loc[(transactions["amount"] >= 0) & (transactions["ts"] < pd.Timestamp(end)),
                              ["customer_id", "ts"]]
    first = orders.groupby("customer_id")["ts"].min().dt.to_period("M").rename("cohort")
    con = duckdb.connect()
    try:
        con.register("t", transactions.loc[transactions["ts"] < pd.Timestamp(end), ["customer_id", "ts", "amount"]])
        con.register("f", first.reset_index().assign(cohort=lambda f: f["cohort"].dt.start_time))
        countries = (countries.drop_duplicates("customer_id", keep="last")[["customer_id", "country"]]
                     if countries is not None else pd.DataFrame({"customer_id": pd.Series([], dtype="str"),
                                                                 "country": pd.Series([], dtype="str")}))
        con.register("c", countries)
        long = con.execute("""
            WITH monthly AS (
                SELECT t.customer_id, f.cohort, date_trunc('month', t.ts) AS month,
                       count(*) FILTER (WHERE t.amount >= 0) AS orders, sum(CAST(round(t.amount * 1e6) AS BIGINT)) AS micros
                FROM t JOIN f USING (customer_id) GROUP BY ALL),
            tagged AS (
                SELECT m.*, coalesce(c.country, '?') AS country,
                       (year(m.month) - year(m.cohort)) * 12 + month(m.month) - month(m.cohort) AS months_since
                FROM monthly m LEFT JOIN c USING (customer_id))
            SELECT market, cohort, months_since, count(*) FILTER (WHERE orders > 0) AS customers,
                   sum(micros) / 1e6 AS net_revenue
            FROM (SELECT *, 'ALL' AS market FROM tagged UNION ALL SELECT *, country AS market FROM tagged)
            GROUP BY ALL""").df()
        sizes = con.execute("""
            SELECT market, cohort, count(*) AS cohort_size FROM (
                SELECT f.customer_id, f.cohort, 'ALL' AS market FROM f
                UNION ALL SELECT f.customer_id, f.cohort, coalesce(c.country, '?') FROM f LEFT JOIN c USING (customer_id))
            GROUP BY ALL""").df()
    finally:
        con.close()
    long["market"] = long["market"].replace({"ALL": OVERALL})
    sizes["market"] = sizes["market"].replace({"ALL": OVERALL})
    long = long.merge(sizes, on=["market", "cohort"])
    first_revenue = long[long["months_since"] == 0].set_index(["market", "cohort"])["net_revenue"]
    long["customer_share"] = long["customers"] / long["cohort_size"]
    base = first_revenue.reindex(pd.MultiIndex.from_frame(long[["market", "cohort"]])).to_numpy()
    long["revenue_share"] = np.where(base > 0, long["net_revenue"] / np.where(base > 0, base, 1), np.nan)
    long["cohort"] = pd.to_datetime(long["cohort"]).dt.strftime("%Y-%m")
    long["months_since"] = long["months_since"].astype("int64")
    columns = ["market", "cohort", "months_since", "cohort_size", "customers", "customer_share", "net_revenue",
               "revenue_share"]
    order = {OVERALL: 0}
    return (long[columns].assign(_o=long["market"].map(order).fillna(1))
            .sort_values(["_o", "market", "cohort", "months_since"]).drop(columns="_o").reset_index(drop=True))


def boundary_status(src, cutoffs: list[dt.date], horizons) -> pd.DataFrame:
    """``status`` for :func:`kpi_table`: the feature engine's point-in-time status at ``cutoffs`` (``src``:
    :class:`features.snapshots.Sources`; :func:`features.snapshots.build_status`: the snapshot's columns, without
    the families the report does not read), as ``customer_id``, ``cutoff``, ``is_active`` (the labels' rule:
    ``days_since_last_purchase <= activity_window_days``), ``rfm_segment`` and ``country`` (empty without a
    customers table)."""
    from features.snapshots import build_status

    snap = build_status(src, cutoffs)
    out = pd.DataFrame({"customer_id": snap["customer_id"].astype(str),
                        "cutoff": pd.to_datetime(snap["cutoff"]).dt.date,
                        "is_active": (snap["days_since_last_purchase"] <= horizons.activity_window_days).to_numpy(),
                        "rfm_segment": snap["rfm_segment"] if "rfm_segment" in snap else None,
                        "country": snap["country"] if "country" in snap else None})
    return out
