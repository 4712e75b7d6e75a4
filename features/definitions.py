"""Point-in-time features and labels, defined once as Ibis expressions (run on DuckDB or Spark).

The cutoff rule, everywhere: a snapshot at cutoff ``t`` sees only rows whose timestamp is **strictly before**
``t`` (``t`` itself is excluded); labels look at ``[t, t + H)``. All day arithmetic is on calendar days in the
data's time zone: the ``day`` of a row is the date of its timestamp.

Many cutoffs cost one pass: each table is first reduced to per-customer-day rows, which are joined once to the
small table of cutoffs with ``day < cutoff`` and aggregated per ``(customer_id, cutoff)``. A single snapshot is the
same expression with one cutoff.

Every function here takes Ibis tables whose columns follow the data contract (validated tables) plus a
``cutoffs`` table with one ``cutoff`` column of type date, and returns one row per ``(customer_id, cutoff)``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir

from common.config import HorizonsConfig

WINDOWS = (30, 90, 180, 365)

# RFM segments from the R and F scores (1-5); M is reported but, as in the usual grid, not used to name segments.
#        F=1                  F=2                   F=3                   F=4                F=5
RFM_GRID = {
    5: ("New", "Potential Loyalist", "Potential Loyalist", "Champions", "Champions"),
    4: ("Promising", "Potential Loyalist", "Potential Loyalist", "Loyal", "Loyal"),
    3: ("About to Sleep", "About to Sleep", "Need Attention", "Loyal", "Loyal"),
    2: ("Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"),
    1: ("Lost", "Lost", "At Risk", "At Risk", "Can't Lose Them"),
}


def cutoffs_table(cutoffs: Sequence[dt.date]) -> ir.Table:
    """A memtable of distinct cutoff dates."""
    return ibis.memtable({"cutoff": sorted(set(cutoffs))}, schema={"cutoff": "date"})


def _days(later: ir.DateValue, earlier: ir.DateValue) -> ir.IntegerValue:
    return later.delta(earlier, unit="day")


def _ratio(num: ir.NumericValue, den: ir.NumericValue) -> ir.FloatingValue:
    """``num / den`` as float, null when the denominator is zero or null."""
    return (num.cast("float64") / den.nullif(0).cast("float64")).cast("float64")


def _inside_data(cutoff: ir.DateValue, days: int, last_day: dt.date) -> ir.BooleanValue:
    """Whether the label window ``[cutoff, cutoff + days)`` lies inside the data: ``cutoff + days <= last_day + 1``."""
    return _days(ibis.literal(last_day), cutoff) + 1 >= days


def _count_if(cond: ir.BooleanValue) -> ir.IntegerValue:
    """Number of rows where ``cond`` is true (COUNT of NULLIF: a 64-bit count on every engine)."""
    return cond.nullif(False).count().cast("int64")


def _sum_if(value: ir.NumericValue, cond: ir.BooleanValue) -> ir.FloatingValue:
    """Sum of ``value`` over rows where ``cond`` is true; 0 when there are none."""
    return value.cast("float64").sum(where=cond).fill_null(0.0)


# Money is summed in whole millionths of the base currency: sums of integers are exact, so they do not depend on
# the order a parallel engine adds rows in (float sums do, in the last bits, which changed LightGBM's trees from
# run to run). Amounts are rounded to 1e-6 once, per transaction; features divide by MICROS at the end.
MICROS = 1_000_000


def purchase_days(transactions: ir.Table, channels: Sequence[str] = ()) -> ir.Table:
    """Transactions reduced to one row per customer and day (orders, refunds, gross and net value, ...).

    An order is a row with ``amount >= 0``; a refund has ``amount < 0``. ``gross`` and ``net`` are integer
    millionths of the base currency (see ``MICROS``). ``gap_days`` is, on a purchase day, the days since the
    customer's previous purchase day (null on the first one, and on days with refunds only). It only looks
    backwards, so it never leaks; computing it here, on the per-day rows, saves a second pass over the
    transactions.
    """
    t = transactions
    is_order = t.amount >= 0
    micros = (t.amount * MICROS).round().cast("int64")
    metrics = {
        "orders": _count_if(is_order),
        "gross": micros.sum(where=is_order).fill_null(0),
        "refunds": _count_if(~is_order),
        "net": micros.sum(),
    }
    if "discount" in t.columns:
        metrics["discounted_orders"] = _count_if(is_order & (t.discount.fill_null(0) > 0))
    for ch in channels:
        metrics[f"orders_channel_{ch}"] = _count_if(is_order & (t.channel == ch))
    days = t.mutate(day=t.ts.date()).group_by(["customer_id", "day"]).aggregate(**metrics)
    bought = days.orders > 0
    # the previous row among the customer's purchase days (refund-only days form their own partition)
    previous = days.day.lag().over(ibis.window(group_by=[days.customer_id, bought], order_by=days.day))
    return days.mutate(gap_days=bought.ifelse(_days(days.day, previous), ibis.null()).cast("int64"))


def transaction_features(days: ir.Table, cutoffs: ir.Table, channels: Sequence[str] = (),
                         has_discount: bool = False) -> ir.Table:
    """RFM, BTYD summary, window, trend, gap and refund features from :func:`purchase_days`.

    Only customers with at least one order before the cutoff get a row. BTYD columns follow lifetimes'
    ``summary_data_from_transaction_data(freq='D', observation_period_end=cutoff - 1 day)``:
    ``frequency`` = purchase days - 1, ``recency`` = last - first purchase day, ``T`` = (cutoff - 1 day) - first
    purchase day, ``monetary_value`` = mean order value per repeat purchase day (0 when frequency = 0).
    """
    j = days.join(cutoffs, days.day < cutoffs.cutoff)
    bought = j.orders > 0
    age = _days(j.cutoff, j.day)  # 1 = the day before the cutoff
    metrics = {
        "purchase_days": _count_if(bought),
        "first_purchase_day": j.day.min(where=bought),
        "last_purchase_day": j.day.max(where=bought),
        "orders": j.orders.sum().cast("int64"),
        "gross_spend": j.gross.sum().cast("float64") / MICROS,
        "first_day_spend": j.gross.argmin(j.day, where=bought).cast("float64") / MICROS,
        "net_spend": j.net.sum().cast("float64") / MICROS,
        "refunds": j.refunds.sum().cast("int64"),
        # gaps between purchase days before t, as exact integer sums (a float std depends on the row order)
        "gaps": j.gap_days.count().cast("int64"),
        "gap_sum": j.gap_days.sum().cast("int64"),
        "gap_sum_sq": (j.gap_days * j.gap_days).sum().cast("int64"),
        "orders_prev_90d": _sum_if(j.orders, (age > 90) & (age <= 180)).cast("int64"),
        "gross_spend_90d": _sum_if(j.gross, age <= 90) / MICROS,
        "gross_spend_prev_90d": _sum_if(j.gross, (age > 90) & (age <= 180)) / MICROS,
    }
    for w in WINDOWS:
        metrics[f"orders_{w}d"] = _sum_if(j.orders, age <= w).cast("int64")
        metrics[f"net_spend_{w}d"] = _sum_if(j.net, age <= w) / MICROS
    if has_discount:
        metrics["discounted_orders"] = j.discounted_orders.sum().cast("int64")
    for ch in channels:
        metrics[f"orders_channel_{ch}"] = j[f"orders_channel_{ch}"].sum().cast("int64")
    g = j.group_by(["customer_id", "cutoff"]).aggregate(**metrics)
    g = g.filter(g.purchase_days > 0)
    frequency = g.purchase_days - 1
    recency = _days(g.last_purchase_day, g.first_purchase_day)
    since_last = _days(g.cutoff, g.last_purchase_day)
    mean_gap = _ratio(recency, frequency)
    # sample standard deviation of the gaps: sqrt((n * sum(g^2) - sum(g)^2) / (n * (n - 1))), numerator and
    # denominator exact integers, so it is the same bits whatever order an engine adds the rows in
    gap_var = _ratio(g.gaps * g.gap_sum_sq - g.gap_sum * g.gap_sum, g.gaps * (g.gaps - 1))
    gap_std = ibis.ifelse(g.gaps >= 2, gap_var.sqrt(), ibis.null("float64"))
    out = {
        "frequency": frequency.cast("int64"),
        "recency": recency.cast("int64"),
        "T": (_days(g.cutoff, g.first_purchase_day) - 1).cast("int64"),
        "monetary_value": (frequency > 0).ifelse((g.gross_spend - g.first_day_spend) / frequency.nullif(0),
                                                 0.0).cast("float64"),
        "days_since_last_purchase": since_last.cast("int64"),
        "days_since_first_purchase": _days(g.cutoff, g.first_purchase_day).cast("int64"),
        "orders": g.orders,
        "net_spend": g.net_spend,
        "avg_order_value": _ratio(g.gross_spend, g.orders),
        **{f"orders_{w}d": g[f"orders_{w}d"] for w in WINDOWS},
        **{f"net_spend_{w}d": g[f"net_spend_{w}d"] for w in WINDOWS},
        "orders_trend_90d": _ratio(g.orders_90d, g.orders_prev_90d),
        "spend_trend_90d": _ratio(g.gross_spend_90d, g.gross_spend_prev_90d),
        "gross_spend_90d": g.gross_spend_90d,
        "gross_spend_prev_90d": g.gross_spend_prev_90d,
        "gap_mean_days": mean_gap,
        "days_overdue": (since_last.cast("float64") - mean_gap).cast("float64"),
        "overdue_ratio": _ratio(since_last, mean_gap),
        "refund_rate": _ratio(g.refunds, g.orders),
        "gap_std_days": gap_std,
        "gap_cv": _ratio(gap_std, mean_gap),
    }
    if has_discount:
        out["discount_share"] = _ratio(g.discounted_orders, g.orders)
    for ch in channels:
        out[f"channel_share_{ch}"] = _ratio(g[f"orders_channel_{ch}"], g.orders)
    feats = g.select("customer_id", "cutoff", **out)
    order = [*feats.columns[: feats.columns.index("gap_mean_days") + 1], "gap_std_days", "gap_cv"]
    return feats.select(*order, *[c for c in feats.columns if c not in order])


def category_features(transactions: ir.Table, cutoffs: ir.Table) -> ir.Table:
    """``distinct_categories``: categories of orders before the cutoff."""
    t = transactions.filter((transactions.amount >= 0) & transactions.category.notnull())
    first = t.group_by(["customer_id", "category"]).aggregate(first_day=t.ts.date().min())
    j = first.join(cutoffs, first.first_day < cutoffs.cutoff)
    return j.group_by(["customer_id", "cutoff"]).aggregate(distinct_categories=j.category.count().cast("int64"))


def customer_attributes(customers: ir.Table, cutoffs: ir.Table) -> ir.Table:
    """``country``, ``signup_cohort`` (YYYY-MM) and ``tenure_days`` (days from signup to the cutoff)."""
    c = customers
    j = c.cross_join(cutoffs)
    cohort = (j.signup_date.year().cast("string") + "-"
              + j.signup_date.month().cast("string").lpad(2, "0"))
    return j.select("customer_id", "cutoff", country=j.country, signup_cohort=cohort,
                    tenure_days=_days(j.cutoff, j.signup_date.cast("date")).cast("int64"))


def support_features(tickets: ir.Table, cutoffs: ir.Table) -> ir.Table:
    """Tickets opened in the last 90 days, tickets open at the cutoff, mean CSAT of tickets resolved before it.

    A ticket is open at ``t`` when opened before ``t`` and not resolved before ``t``. CSAT is only known once a
    ticket is resolved, so only tickets resolved before the cutoff contribute to it.
    """
    t = tickets
    j = t.join(cutoffs, t.opened_at.date() < cutoffs.cutoff)
    resolved_before = j.resolved_at.notnull() & (j.resolved_at.date() < j.cutoff)
    return j.group_by(["customer_id", "cutoff"]).aggregate(
        tickets_90d=_count_if(_days(j.cutoff, j.opened_at.date()) <= 90),
        open_tickets=_count_if(~resolved_before),
        mean_ticket_csat=j.csat.cast("float64").mean(where=resolved_before & j.csat.notnull()),
    )


def survey_features(surveys: ir.Table, cutoffs: ir.Table) -> ir.Table:
    """Last NPS (and its group and age in days), last CES and last survey CSAT before the cutoff.

    NPS groups: promoter 9-10, passive 7-8, detractor 0-6.
    """
    s = surveys
    j = s.join(cutoffs, s.ts.date() < cutoffs.cutoff)
    g = j.group_by(["customer_id", "cutoff"]).aggregate(
        last_nps=j.nps.argmax(j.ts, where=j.nps.notnull()).cast("float64"),
        last_nps_day=j.ts.date().max(where=j.nps.notnull()),
        last_ces=j.ces.argmax(j.ts, where=j.ces.notnull()).cast("float64"),
        last_survey_csat=j.csat.argmax(j.ts, where=j.csat.notnull()).cast("float64"),
    )
    group = (ibis.cases((g.last_nps >= 9, "promoter"), (g.last_nps >= 7, "passive"), (g.last_nps >= 0, "detractor"),
                        else_=ibis.null("string")))
    return g.select("customer_id", "cutoff", "last_nps", nps_group=group,
                    days_since_last_nps=_days(g.cutoff, g.last_nps_day).cast("int64"),
                    last_ces=g.last_ces, last_survey_csat=g.last_survey_csat)


def web_features(sessions: ir.Table, cutoffs: ir.Table) -> ir.Table:
    """Sessions in the last 7 and 30 days, in the 30 before, their ratio (``web_sessions_trend_30d``), and days
    since the last session (null when none in the last 60 days)."""
    s = sessions
    j = s.join(cutoffs, (s.ts.date() < cutoffs.cutoff) & (s.ts.date() >= cutoffs.cutoff.sub(ibis.interval(days=60))))
    age = _days(j.cutoff, j.ts.date())
    g = j.group_by(["customer_id", "cutoff"]).aggregate(web_sessions_7d=_count_if(age <= 7),
                                                       web_sessions_30d=_count_if(age <= 30),
                                                       web_sessions_prev_30d=_count_if(age > 30),
                                                       days_since_last_web_session=age.min())
    return g.mutate(web_sessions_trend_30d=_ratio(g.web_sessions_30d, g.web_sessions_prev_30d))


def email_features(events: ir.Table, cutoffs: ir.Table) -> ir.Table:
    """E-mail opens and clicks in the last 90 days, opens in the last 30, the opens trend against the 90 before,
    open rate, days since the last open (null when never), and whether the customer unsubscribed at any time
    before the cutoff."""
    e = events
    j = e.join(cutoffs, e.ts.date() < cutoffs.cutoff)
    age = _days(j.cutoff, j.ts.date())
    recent, prev = age <= 90, (age > 90) & (age <= 180)
    g = j.group_by(["customer_id", "cutoff"]).aggregate(
        email_sent_90d=_count_if(recent & (j.event == "sent")),
        email_opens_90d=_count_if(recent & (j.event == "open")),
        email_clicks_90d=_count_if(recent & (j.event == "click")),
        email_opens_prev_90d=_count_if(prev & (j.event == "open")),
        email_opens_30d=_count_if((age <= 30) & (j.event == "open")),
        days_since_last_email_open=age.min(where=j.event == "open"),
        unsubscribed=(j.event == "unsubscribe").any(),
    )
    return g.mutate(email_open_rate_90d=_ratio(g.email_opens_90d, g.email_sent_90d),
                    email_open_trend_90d=_ratio(g.email_opens_90d, g.email_opens_prev_90d))


def subscription_features(subscriptions: ir.Table, cutoffs: ir.Table) -> ir.Table:
    """Current plan at the cutoff, months subscribed (since the first subscription), and whether the customer
    moved to a cheaper plan in the last 90 days. A row is active at ``t`` when started before ``t`` and not
    cancelled before ``t``."""
    s = subscriptions
    w = ibis.window(group_by=s.customer_id, order_by=[s.started_at, s.subscription_id])
    s = s.mutate(prev_amount=s.monthly_amount.lag().over(w))
    j = s.join(cutoffs, s.started_at < cutoffs.cutoff)
    active = j.cancelled_at.isnull() | (j.cancelled_at >= j.cutoff)
    downgrade = (_days(j.cutoff, j.started_at) <= 90) & (j.monthly_amount < j.prev_amount)
    g = j.group_by(["customer_id", "cutoff"]).aggregate(
        subscription_plan=j.plan.argmax(j.started_at, where=active),
        subscription_monthly_amount=j.monthly_amount.argmax(j.started_at, where=active).cast("float64"),
        first_started=j.started_at.min(),
        recent_downgrade=downgrade.fill_null(False).any(),
    )
    return g.select("customer_id", "cutoff", "subscription_plan", "subscription_monthly_amount",
                    months_subscribed=_days(g.cutoff, g.first_started).cast("float64") / 30.4375,
                    recent_downgrade=g.recent_downgrade)


def rfm_scores(snapshot: ir.Table) -> ir.Table:
    """R, F and M quintile scores (1-5) within each cutoff, and the named segment of :data:`RFM_GRID`, keyed by
    ``(customer_id, cutoff)``; ``snapshot`` needs the three columns ranked (:func:`transaction_features` has them).

    Score = 1 + floor(5 * percent_rank) (capped at 5), so ties share a score on every engine. R ranks
    ``days_since_last_purchase`` (fewer days = higher), F ranks ``orders``, M ranks ``net_spend``. The percent rank
    of a value is (rows with a lower value) / (rows - 1) within the cutoff: it is computed on the distinct values
    (a few hundred days or order counts per cutoff) and joined back, not by sorting every row.
    """
    narrow = snapshot.select("customer_id", "cutoff", "days_since_last_purchase", "orders", "net_spend")

    def quintile(column: str, name: str, descending: bool = False) -> ir.Table:
        values = narrow.group_by(["cutoff", column]).aggregate(rows=narrow.count().cast("int64"))
        order = ibis.desc(values[column]) if descending else values[column]
        lower = values.rows.sum().over(ibis.window(group_by=values.cutoff, order_by=order, rows=(None, -1)))
        total = values.rows.sum().over(ibis.window(group_by=values.cutoff))
        rank = _ratio(lower.fill_null(0), total - 1).fill_null(0.0)
        return values.select("cutoff", column, **{name: ibis.least(5, 1 + (rank * 5).floor()).cast("int64")})

    scores = (narrow.join(quintile("days_since_last_purchase", "r_score", descending=True),
                          ["cutoff", "days_since_last_purchase"])
              .join(quintile("orders", "f_score"), ["cutoff", "orders"])
              .join(quintile("net_spend", "m_score"), ["cutoff", "net_spend"]))
    cases = [((scores.r_score == r) & (scores.f_score == f + 1), name) for r, row in RFM_GRID.items()
             for f, name in enumerate(row)]
    return scores.select("customer_id", "cutoff", "r_score", "f_score", "m_score",
                         rfm_segment=ibis.cases(*cases, else_=ibis.null("string")))


def labels(snapshot: ir.Table, days: ir.Table, cutoffs: ir.Table, churn_days: int, cltv_days: int,
           activity_days: int, last_day: dt.date) -> ir.Table:
    """The outcomes after each cutoff, keyed by ``(customer_id, cutoff)`` for every row of ``snapshot`` (one row per
    customer with an order before the cutoff, with ``days_since_last_purchase``, as :func:`transaction_features`):

    * ``is_active``: an order within ``activity_days`` before the cutoff; ``churned``: an active customer with no
      order in ``[t, t + churn_days)``; ``reactivated``: a lapsed customer with an order in that window;
    * ``days_to_next_order``: days from ``t`` to the first order in ``[t, t + churn_days)`` (0 = on day ``t``),
      null when there is none (the expected next order date is evaluated against it);
    * ``future_net_revenue``: net revenue (refunds included) in ``[t, t + cltv_days)``.

    A label is null unless its whole window lies inside the data: ``t + H <= last_day + 1 day``. Only the days in
    the label windows that can be labeled are joined to the cutoffs (the CLTV window only where it lies inside the
    data): the past comes from the snapshot, not from a second pass.
    """
    horizon = ibis.ifelse(_inside_data(cutoffs.cutoff, cltv_days, last_day), max(churn_days, cltv_days), churn_days)
    windows = cutoffs.mutate(label_end=cutoffs.cutoff + horizon.as_interval("D"))
    after = days.join(windows, (days.day >= windows.cutoff) & (days.day < windows.label_end))
    ahead = _days(after.day, after.cutoff)
    future = after.group_by(["customer_id", "cutoff"]).aggregate(
        orders_in_churn_window=_sum_if(after.orders, ahead < churn_days),
        days_to_next_order=ahead.min(where=(after.orders > 0) & (ahead < churn_days)),
        future_net_revenue=_sum_if(after.net, ahead < cltv_days) / MICROS)
    past = snapshot.select("customer_id", "cutoff", "days_since_last_purchase")
    j = past.left_join(future, ["customer_id", "cutoff"]).select(past, *[c for c in future.columns
                                                                         if c not in ("customer_id", "cutoff")])
    churn_ok = _inside_data(j.cutoff, churn_days, last_day)
    cltv_ok = _inside_data(j.cutoff, cltv_days, last_day)
    is_active = j.days_since_last_purchase <= activity_days
    bought = j.orders_in_churn_window.fill_null(0) > 0
    null_bool = ibis.null("boolean")
    return j.select(
        "customer_id", "cutoff", is_active=is_active,
        churned=ibis.ifelse(churn_ok & is_active, ~bought, null_bool),
        reactivated=ibis.ifelse(churn_ok & ~is_active, bought, null_bool),
        days_to_next_order=ibis.ifelse(churn_ok, j.days_to_next_order, ibis.null("int64")),
        future_net_revenue=ibis.ifelse(cltv_ok, j.future_net_revenue.fill_null(0.0), ibis.null("float64")),
    )


def subscription_labels(subscriptions: ir.Table, cutoffs: ir.Table, churn_days: int,
                        last_day: dt.date) -> ir.Table:
    """Contractual churn: a customer with an active subscription at ``t`` cancels within ``[t, t + churn_days)``.

    A plan change (a row cancelled on the day another of the customer's rows starts) is not a cancellation.
    """
    s = subscriptions
    starts = s.select(customer_id=s.customer_id, change_day=s.started_at).distinct()
    cancels = s.filter(s.cancelled_at.notnull()).left_join(
        starts, [s.customer_id == starts.customer_id, s.cancelled_at == starts.change_day])
    cancels = cancels.filter(cancels.change_day.isnull()).select("customer_id", "cancelled_at")
    j = s.join(cutoffs, (s.started_at < cutoffs.cutoff) & (s.cancelled_at.isnull() | (s.cancelled_at >= cutoffs.cutoff)))
    active = j.select("customer_id", "cutoff").distinct()
    c = active.join(cancels, "customer_id")
    in_window = (c.cancelled_at >= c.cutoff) & (_days(c.cancelled_at, c.cutoff) < churn_days)
    cancelled = c.group_by(["customer_id", "cutoff"]).aggregate(cancelled=in_window.any())
    out = active.left_join(cancelled, ["customer_id", "cutoff"])
    ok = _inside_data(out.cutoff, churn_days, last_day)
    return out.select("customer_id", "cutoff",
                      subscription_churned=ibis.ifelse(ok, out.cancelled.fill_null(False), ibis.null("boolean")))


# ---- the label registry ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelInputs:
    """What a label family is computed from: the snapshot's transaction features (``customer_id``, ``cutoff``,
    ``days_since_last_purchase``...), the per-customer-day rows, the cutoffs, every validated table, the horizons
    and the data's last day."""

    snapshot: ir.Table
    days: ir.Table
    cutoffs: ir.Table
    tables: Mapping[str, ir.Table]
    horizons: HorizonsConfig
    last_day: dt.date


@dataclass(frozen=True)
class LabelFamily:
    """Outcome columns, keyed by ``(customer_id, cutoff)``, that look at ``[t, t + H)``: never model inputs.

    ``columns`` declares every column the family adds; :meth:`expression` refuses an expression with any other,
    so an outcome cannot reach a snapshot without being declared here, and models take their features as the
    snapshot's columns minus :func:`label_columns` (see :func:`models.training.feature_columns`). ``needs`` names
    the validated table the family is computed from, when it is optional.
    """

    name: str
    columns: tuple[str, ...]
    build: Callable[[LabelInputs], ir.Table]
    needs: str | None = None

    def expression(self, inputs: LabelInputs) -> ir.Table:
        expr = self.build(inputs)
        added = tuple(c for c in expr.columns if c not in ("customer_id", "cutoff"))
        if set(added) != set(self.columns) or len(expr.columns) != len(added) + 2:
            raise ValueError(f"label family {self.name!r} declares {list(self.columns)} but computes "
                             f"{list(expr.columns)}; declare every outcome column in LABEL_FAMILIES")
        return expr


LABEL_FAMILIES: list[LabelFamily] = [
    LabelFamily("outcomes", ("is_active", "churned", "reactivated", "days_to_next_order", "future_net_revenue"),
                lambda x: labels(x.snapshot, x.days, x.cutoffs, x.horizons.churn_days, x.horizons.cltv_days,
                                 x.horizons.activity_window_days, x.last_day)),
    LabelFamily("contractual", ("subscription_churned",),
                lambda x: subscription_labels(x.tables["subscriptions"], x.cutoffs, x.horizons.churn_days,
                                              x.last_day), needs="subscriptions"),
]


def label_columns() -> tuple[str, ...]:
    """Every outcome column of :data:`LABEL_FAMILIES` (whether or not this data has the table it needs)."""
    return tuple(c for family in LABEL_FAMILIES for c in family.columns)
