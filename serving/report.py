"""The KPI report (``churn report`` and the ``report`` step after scoring): the numbers of
:mod:`features.kpis` for the latest complete periods, as one self-contained HTML file (plots embedded as PNG data,
no script, no network), the tables as Parquet and CSV, and a JSON summary, under
``<outputs>/reports/as_of=<DATE>/``, written all or nothing (a failed report leaves the previous one).

A KPI without its data is "no data" in the HTML and null in the JSON, never 0. matplotlib (through
:func:`models.plots.pyplot`) is imported by the plots only: the app imports this module for the report's path.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import math
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from features.kpis import KPI_COLUMNS, OVERALL

FILES = ("report.html", "kpis.parquet", "kpis.csv", "cohorts.parquet", "cohorts.csv", "summary.json")
NO_DATA = "no data"

# the headline table: label, column, format
HEADLINE = (
    ("Customers at the start", "customers_start", "int"), ("New customers", "new_customers", "int"),
    ("Lost customers", "lost_customers", "int"), ("Churn rate", "churn_rate", "pct"),
    ("Customer retention rate", "retention_rate", "pct"), ("Revenue retention", "revenue_retention", "pct"),
    ("Average order value", "average_order_value", "money"), ("Purchase frequency", "purchase_frequency", "num"),
    ("Repeat-purchase rate", "repeat_purchase_rate", "pct"),
    ("Expected lifespan (periods)", "expected_lifespan_periods", "num"),
    ("Historical CLTV (AOV x frequency x lifespan)", "historical_cltv", "money"),
    ("NPS", "nps", "num"), ("Promoters / passives / detractors", "nps_split", "split"),
    ("CSAT (share of 4-5)", "csat", "pct"), ("CSAT mean", "csat_mean", "num"), ("CES mean", "ces_mean", "num"),
    ("Survey response rate", "survey_response_rate", "pct"), ("Tickets per 100 customers", "tickets_per_100", "num"),
    ("Ticket CSAT mean", "ticket_csat_mean", "num"), ("Referral rate (new customers)", "referral_rate", "pct"),
)


def report_folder(outputs_dir: Path, as_of: dt.date) -> Path:
    return Path(outputs_dir) / "reports" / f"as_of={as_of.isoformat()}"


def latest_report(outputs_dir: Path) -> Path | None:
    """The newest report's HTML file, or None."""
    found = sorted((Path(outputs_dir) / "reports").glob("as_of=*/report.html"))
    return found[-1] if found else None


def _clean(value):
    if value is None:
        return None
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (dt.date, pd.Timestamp)):
        return value.isoformat()
    return value


def summary(kpis: pd.DataFrame, cohorts: pd.DataFrame, as_of: dt.date, period: str, currency: str,
            predicted_cltv: float | None, cltv_days: int) -> dict:
    """The JSON summary: the last period's KPIs overall and per market and segment (null = no data), the mean
    predicted CLTV of the latest scoring run beside the historical one, and the shape of the cohort matrix."""
    if kpis.empty:
        return {"as_of": as_of.isoformat(), "period": period, "currency": currency, "periods": [], "headline": {},
                "no_data": list(KPI_COLUMNS), "markets": {}, "segments": {}, "cohorts": 0}
    last = kpis[kpis["period"] == kpis["period"].iloc[-1]]
    overall = last[last["grouping"] == "overall"].iloc[0]
    headline = {c: _clean(overall[c]) for c in KPI_COLUMNS}
    return {
        "as_of": as_of.isoformat(), "period": period, "currency": currency,
        "periods": list(dict.fromkeys(kpis["period"])), "latest_period": str(overall["period"]),
        "headline": headline, "no_data": [c for c, v in headline.items() if v is None],
        "mean_predicted_cltv": _clean(predicted_cltv), "predicted_cltv_days": cltv_days,
        "markets": {str(r["group"]): {c: _clean(r[c]) for c in KPI_COLUMNS}
                    for _, r in last[last["grouping"] == "market"].iterrows()},
        "segments": {str(r["group"]): {c: _clean(r[c]) for c in KPI_COLUMNS}
                     for _, r in last[last["grouping"] == "segment"].iterrows()},
        "cohorts": int(cohorts.loc[cohorts["market"] == OVERALL, "cohort"].nunique()) if len(cohorts) else 0,
    }


def format_value(value, kind: str, currency: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return NO_DATA
    if kind == "int":
        return f"{int(value):,}"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "money":
        return f"{value:,.2f} {currency}".strip()
    return f"{value:,.2f}"


def nps_split(row) -> str:
    parts = [row.get("nps_promoters"), row.get("nps_passives"), row.get("nps_detractors")]
    if any(p is None or (isinstance(p, float) and not math.isfinite(p)) for p in parts):
        return NO_DATA
    return " / ".join(f"{100 * p:.0f}%" for p in parts)


def headline_rows(values: dict, info: dict) -> list[tuple[str, str]]:
    """The headline table as (label, text) rows, "no data" where a KPI has none: the KPIs of :data:`HEADLINE`
    from ``values`` (one period's overall row), then the model's mean predicted CLTV from ``info`` (the summary).
    The HTML, the flow's markdown and the CLI print the same rows."""
    currency = info["currency"]
    rows = [(name, nps_split(values) if kind == "split" else format_value(_clean(values.get(column)), kind, currency))
            for name, column, kind in HEADLINE]
    rows.append((f"Model: mean predicted CLTV of the active customers (next {info['predicted_cltv_days']} days)",
                 format_value(info.get("mean_predicted_cltv"), "money", currency)))
    return rows


def _png(figure) -> str:
    from models.plots import pyplot

    plt = pyplot()

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _trend_plot(overall: pd.DataFrame, columns: list[tuple[str, str]], title: str, percent: bool) -> str | None:
    from models.plots import pyplot

    plt = pyplot()

    shown = [(c, name) for c, name in columns if overall[c].notna().any()]
    if not shown:
        return None
    figure, axes = plt.subplots(figsize=(7, 2.8))
    for column, name in shown:
        values = overall[column] * (100 if percent else 1)
        axes.plot(overall["period"], values, marker="o", label=name)
    axes.set_title(title)
    axes.set_ylabel("%" if percent else "")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    axes.tick_params(axis="x", rotation=45, labelsize=8)
    return _png(figure)


def _heatmap(cohorts: pd.DataFrame, market: str, value: str, title: str) -> str | None:
    from models.plots import pyplot

    plt = pyplot()

    rows = cohorts[cohorts["market"] == market]
    if rows.empty:
        return None
    grid = rows.pivot_table(index="cohort", columns="months_since", values=value, aggfunc="first").sort_index()
    figure, axes = plt.subplots(figsize=(8, max(2.5, 0.18 * len(grid) + 1)))
    shown = grid.to_numpy(dtype=float) * 100
    image = axes.imshow(shown, aspect="auto", cmap="viridis", vmin=0, vmax=100 if value == "customer_share" else
                        np.nanpercentile(shown, 98) if np.isfinite(shown).any() else 100)
    axes.set_yticks(range(len(grid)), grid.index, fontsize=6)
    ticks = list(range(0, grid.shape[1], max(1, grid.shape[1] // 12)))
    axes.set_xticks(ticks, [str(grid.columns[t]) for t in ticks], fontsize=7)
    axes.set_xlabel("months since the first order")
    axes.set_ylabel("cohort (month of the first order)")
    axes.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axes, label="% of month 0" if value == "revenue_share" else "% of the cohort")
    return _png(figure)


STYLE = """body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:70rem;
color:#1d2733;padding:0 1rem}h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #dde}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}td,th{padding:.25rem .6rem;border-bottom:1px solid #eef;
text-align:right}th:first-child,td:first-child{text-align:left}.nodata{color:#8a94a3;font-style:italic}
.note{color:#556;font-size:.85rem}img{max-width:100%}.scroll{overflow-x:auto}.alert{color:#a4161a;font-weight:600}"""


def _cell(value, kind: str, currency: str) -> str:
    text = format_value(_clean(value), kind, currency)
    return f'<td class="nodata">{text}</td>' if text == NO_DATA else f"<td>{escape(text)}</td>"


KIND = {c: k for _, c, k in HEADLINE}


def _group_table(last: pd.DataFrame, grouping: str, title: str, currency: str) -> str:
    rows = last[last["grouping"] == grouping]
    if rows.empty:
        return f"<h2>{escape(title)}</h2><p class=\"nodata\">{NO_DATA}</p>"
    columns = ["customers_start", "new_customers", "churn_rate", "retention_rate", "revenue_retention",
               "average_order_value", "purchase_frequency", "repeat_purchase_rate", "historical_cltv", "nps",
               "csat", "tickets_per_100"]
    head = "".join(f"<th>{escape(c.replace('_', ' '))}</th>" for c in columns)
    body = "".join("<tr><td>" + escape(str(r["group"])) + "</td>"
                   + "".join(_cell(r[c], KIND.get(c, "num"), "") for c in columns) + "</tr>"
                   for _, r in rows.iterrows())
    return (f"<h2>{escape(title)} (money in {escape(currency)})</h2><div class=\"scroll\"><table><thead><tr>"
            f"<th>{grouping}</th>{head}</tr>"
            f"</thead><tbody>{body}</tbody></table></div>")


def render_html(kpis: pd.DataFrame, cohorts: pd.DataFrame, info: dict, definitions_note: str) -> str:
    """The self-contained HTML report."""
    currency, period = info["currency"], info["period"]
    parts = [f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Retention KPIs as of "
             f"{info['as_of']}</title><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
             f"<style>{STYLE}</style></head><body>",
             f"<h1>Retention KPIs as of {info['as_of']}</h1>"]
    if kpis.empty:
        parts.append(f"<p class=\"nodata\">{NO_DATA}: the data holds no complete {period} with one before it.</p>")
    else:
        overall = kpis[kpis["grouping"] == "overall"].reset_index(drop=True)
        last = kpis[kpis["period"] == info["latest_period"]]
        row = overall.iloc[-1].to_dict()
        parts.append(f"<p class=\"note\">{escape(definitions_note)} Money in {escape(currency)}.</p>")
        parts.append(f"<h2>Headline: {escape(info['latest_period'])}</h2><table><tbody>")
        for name, text in headline_rows(row, info):
            cell = f'<td class="nodata">{text}</td>' if text == NO_DATA else f"<td>{escape(text)}</td>"
            parts.append(f"<tr><td>{escape(name)}</td>{cell}</tr>")
        parts.append("</tbody></table>")
        plots = [
            _trend_plot(overall, [("churn_rate", "churn rate"), ("retention_rate", "retention rate"),
                                  ("revenue_retention", "revenue retention")], f"Retention per {period}", True),
            _trend_plot(overall, [("nps", "NPS")], f"NPS per {period}", False),
            _trend_plot(overall, [("average_order_value", "average order value")], f"Average order value ({currency})",
                        False),
            _trend_plot(overall, [("historical_cltv", "historical CLTV")], f"Historical CLTV ({currency})", False),
        ]
        parts += [f"<img alt=\"trend\" src=\"{p}\">" for p in plots if p]
        parts.append(_group_table(last, "market", f"Per market: {info['latest_period']}", currency))
        parts.append(_group_table(last, "segment", f"Per RFM segment at the start of {info['latest_period']}",
                                  currency))
        history = "".join("<tr><td>" + escape(r["period"]) + "</td>" + "".join(
            _cell(r[c], KIND.get(c, "num"), currency) for c in ("customers_start", "churn_rate", "retention_rate",
                                                                   "revenue_retention", "average_order_value", "nps"))
            + "</tr>" for _, r in overall.iterrows())
        parts.append("<h2>Every period</h2><table><thead><tr><th>period</th><th>customers at start</th>"
                     "<th>churn rate</th><th>retention rate</th><th>revenue retention</th><th>AOV</th><th>NPS</th>"
                     f"</tr></thead><tbody>{history}</tbody></table>")
    parts.append(_drift_section(info.get("drift")))
    parts.append(_live_section(info.get("live")))
    parts.append("<h2>Cohort retention</h2>")
    if cohorts.empty:
        parts.append(f"<p class=\"nodata\">{NO_DATA}</p>")
    else:
        parts.append("<p class=\"note\">Rows: the month of a customer's first order; columns: months since it. "
                     "A cell is the share of the cohort with an order in that month (revenue: the cohort's net "
                     "revenue in that month as a share of its first month's).</p>")
        for market, value, title in [(OVERALL, "customer_share", "Customers retained, all customers"),
                                     (OVERALL, "revenue_share", "Revenue retained, all customers")] + [
                (m, "customer_share", f"Customers retained, {m}")
                for m in _largest_markets(cohorts)]:
            image = _heatmap(cohorts, market, value, title)
            if image:
                parts.append(f"<img alt=\"{escape(title)}\" src=\"{image}\">")
    parts.append("</body></html>")
    return "\n".join(parts)


def _drift_section(drift: dict | None) -> str:
    """The scoring run's drift: per model the features and score at or above the warning PSI."""
    head = "<h2>Drift of the scored customers against the champions' training rows</h2>"
    if not drift or not drift.get("models"):
        return head + f'<p class="nodata">{NO_DATA}: no scoring run published lists at this date</p>'
    rows = []
    for name, state in drift["models"].items():
        if not state["reference"]:
            rows.append(f"<tr><td>{escape(name)}</td><td class=\"nodata\" colspan=\"4\">no training profile "
                        "(trained before the current drift profiles)</td></tr>")
            continue
        flagged = [c for c in state["columns"] if c["level"] in ("warn", "alert")]
        if not flagged:
            best = f"{state['max_psi']:.3f}" if state["max_psi"] is not None else NO_DATA
            rows.append(f"<tr><td>{escape(name)}</td><td colspan=\"4\">stable: every judged PSI below "
                        f"{drift['warn_psi']} (highest {best})</td></tr>")
        for c in sorted(flagged, key=lambda c: -c["psi"]):
            rows.append(f"<tr><td>{escape(name)}</td><td>{escape(c['column'])}</td><td>{c['psi']:.3f}</td>"
                        f"<td>{escape(c['level'])}</td><td>{100 * c['missing_training']:.1f}% / "
                        f"{100 * c['missing_now']:.1f}%</td></tr>")
    return (head + f"<p class=\"note\">PSI with bins from training: a warning at {drift['warn_psi']}, an alert at "
            f"{drift['alert_psi']}.</p><table><thead><tr><th>model</th><th>column</th><th>PSI</th><th>level</th>"
            "<th>missing (training / now)</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def live_info(history: pd.DataFrame, reliability: pd.DataFrame, pending: list[dict], flagged: list[str],
              margin: float) -> dict:
    """The live performance for the report's JSON summary and HTML (:mod:`serving.live`)."""
    def rows(frame: pd.DataFrame) -> list[dict]:
        return [{k: _clean(v) for k, v in r.items()} for r in frame.to_dict("records")] if len(frame) else []

    return {"margin": margin, "history": rows(history), "reliability": rows(reliability), "pending": pending,
            "flagged": flagged}


def _live_plot(history: pd.DataFrame) -> str | None:
    """Each model's live promotion metric over the scored as-of dates, its backtest dashed beside it."""
    from models.plots import pyplot

    plt = pyplot()

    from models.catalog import PROMOTIONS

    higher_is_better = [p.metric for p in PROMOTIONS.values() if not p.lower_is_better]  # the flagged metrics
    shown = history[history["metric"].isin(higher_is_better)]
    if shown.empty:
        return None
    figure, axes = plt.subplots(figsize=(7, 3))
    for (model, metric), rows in shown.groupby(["model", "metric"], sort=True):
        dates = pd.to_datetime(rows["as_of"])
        line, = axes.plot(dates, rows[metric], marker="o", label=f"{model}: live {metric}")
        if rows["backtest"].notna().any():
            axes.plot(dates, rows["backtest"], linestyle="--", marker="x", color=line.get_color(), alpha=0.7,
                      label=f"{model}: backtest")
    dates = pd.to_datetime(shown["as_of"])
    if dates.nunique() == 1:  # one date: a month around it, not matplotlib's years
        axes.set_xlim(dates.min() - pd.Timedelta(days=15), dates.min() + pd.Timedelta(days=15))
    axes.set_title("Live performance of the published scores (by scored as-of date)")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=7)
    axes.tick_params(axis="x", rotation=30, labelsize=8)
    return _png(figure)


def _reliability_plot(curves: pd.DataFrame, as_of: str) -> str | None:
    """The classifiers' reliability curves of one scored as-of date."""
    from models.plots import pyplot

    plt = pyplot()

    rows = curves[curves["as_of"] == as_of] if len(curves) else curves
    if rows.empty:
        return None
    figure, axes = plt.subplots(figsize=(4.5, 4.5))
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    for model, curve in rows.groupby("model", sort=True):
        axes.plot(curve["mean_predicted"], curve["observed"], marker="o", label=model)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("published probability (bin mean)")
    axes.set_ylabel("observed rate")
    axes.set_title(f"Reliability of the scores of {as_of}")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=7)
    return _png(figure)


def _fmt(value, digits: int = 3) -> str:
    return NO_DATA if value is None else f"{value:.{digits}f}"


def _live_section(live: dict | None) -> str:
    """Live performance: each past run's published scores against what happened, beside the backtest."""
    head = "<h2>Live performance of past scoring runs</h2>"
    if not live or not live.get("history"):
        waiting = (live or {}).get("pending") or []
        why = (f"the outcome of the scores of {escape(min(p['as_of'] for p in waiting))} is known from "
               f"{escape(min(p['known_from'] for p in waiting))}" if waiting
               else "no published scoring run is old enough for its outcome to be known")
        return head + f'<p class="nodata">{NO_DATA}: {why}</p>'
    history = pd.DataFrame(live["history"])
    parts = [head, "<p class=\"note\">Every scored customer's published score against the outcome the data show "
             "once the model's label window has passed, computed as the training labels are; the backtest is "
             f"the figure the champion was promoted on. Flagged: more than {live['margin']} below it. Precision: "
             "the share of the list's customers with the outcome (at-risk: churned; win-back: bought again), "
             "over the whole list and its control group (the treatment group was contacted).</p>"]
    parts += [f'<p class="alert">{escape(line)}</p>' for line in live.get("flagged") or []]
    rows = []
    for r in history.sort_values(["as_of", "model"], ascending=[False, True]).to_dict("records"):
        metric = r["metric"]
        precision = (f"{100 * r['list_precision']:.1f}% of {int(r['list_customers']):,}"
                     if pd.notna(r.get("list_precision")) else "")
        control = (f"{100 * r['control_precision']:.1f}% of {int(r['control_customers']):,}"
                   if pd.notna(r.get("control_precision")) else "")
        revenue = (f"{r['realised_revenue']:,.0f} / {r['predicted_revenue']:,.0f}"
                   if pd.notna(r.get("realised_revenue")) else "")
        delta = r.get("live_minus_backtest")
        rows.append(f"<tr><td>{escape(r['as_of'])}</td><td>{escape(r['model'])}</td><td>{escape(str(r['version']))}"
                    f"</td><td>{int(r['evaluated']):,}</td><td>{escape(metric)}</td><td>{_fmt(r.get(metric))}</td>"
                    f"<td>{_fmt(r.get('backtest'))}</td><td>{_fmt(delta) if pd.notna(delta) else NO_DATA}</td>"
                    f"<td>{_fmt(r.get('ece')) if pd.notna(r.get('ece')) else ''}</td><td>{precision}</td>"
                    f"<td>{control}</td><td>{revenue}</td><td>{'FLAGGED' if r['flagged'] else ''}</td></tr>")
    parts.append("<table><thead><tr><th>scored as of</th><th>model</th><th>version</th><th>customers</th>"
                 "<th>metric</th><th>live</th><th>backtest</th><th>live - backtest</th><th>ECE</th>"
                 "<th>list precision</th><th>control precision</th><th>realised / predicted revenue</th>"
                 "<th></th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    image = _live_plot(history)
    if image:
        parts.append(f'<img alt="live performance over as-of dates" src="{image}">')
    curves = pd.DataFrame(live.get("reliability") or [])
    if len(curves):
        latest = max(curves["as_of"])
        image = _reliability_plot(curves, latest)
        if image:
            parts.append(f'<img alt="reliability of the scores of {escape(latest)}" src="{image}">')
    for p in live.get("pending") or []:
        parts.append(f'<p class="note">{escape(p["model"])} on the scores of {escape(p["as_of"])}: outcome known '
                     f'from {escape(p["known_from"])}</p>')
    return "\n".join(parts)


def _largest_markets(cohorts: pd.DataFrame, count: int = 4) -> list[str]:
    sizes = cohorts[(cohorts["market"] != OVERALL) & (cohorts["months_since"] == 0)].groupby("market")["cohort_size"].sum()
    return list(sizes.sort_values(ascending=False).index[:count])


def write_report(folder: Path, kpis: pd.DataFrame, cohorts: pd.DataFrame, info: dict, definitions_note: str) -> Path:
    """Write every file of one report into ``folder`` (the caller swaps it in)."""
    folder.mkdir(parents=True, exist_ok=True)
    kpis.to_parquet(folder / "kpis.parquet", index=False)
    kpis.to_csv(folder / "kpis.csv", index=False)
    cohorts.to_parquet(folder / "cohorts.parquet", index=False)
    cohorts.to_csv(folder / "cohorts.csv", index=False)
    (folder / "summary.json").write_text(json.dumps(info, indent=2) + "\n")
    (folder / "report.html").write_text(render_html(kpis, cohorts, info, definitions_note), encoding="utf-8")
    return folder


def markdown(info: dict) -> str:
    """The headline numbers as Markdown (the flow's artifact)."""
    head = info.get("headline") or {}
    lines = [f"# Retention KPIs as of {info['as_of']}", ""]
    if not head:
        return "\n".join(lines + [f"{NO_DATA}: no complete {info['period']} with one before it"])
    lines += [f"Period {info['latest_period']}, money in {info['currency']}.", "", "| KPI | value |", "| --- | --- |"]
    lines += [f"| {name} | {text} |" for name, text in headline_rows(head, info)]
    return "\n".join(lines)
