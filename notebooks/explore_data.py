# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Explore the data: retention KPIs, cohorts and purchase rhythm
#
# What the validated data say before any model: how many customers stay, how each acquisition cohort keeps
# buying, and how often customers order, which is what "silent for too long" has to be measured against.
# Every number comes from the package (`features.kpis` through the KPI report of `churn report`, the feature
# engine's point-in-time snapshots); this notebook only shows them. Definitions: `docs/reports.md` and
# `docs/features.md`.

# %% tags=["parameters"]
import os

CONFIG = os.environ.get("CHURN_CONFIG")  # the pipeline's config file; unset: configs/default.yaml
DATA_DIR = os.environ.get("CHURN_DATA_DIR")  # replaces the config's data_dir; unset: the config's (data/)
MARKETS = 4  # the largest markets drawn one by one

# %%
from pipelines.runtime import notebook_config

cfg = notebook_config(CONFIG, DATA_DIR)  # from the project's folder; MLflow, Prefect, matplotlib local and quiet

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from features.kpis import OVERALL
from features.snapshots import build_snapshots, latest_labeled_cutoff, open_sources
from models.catalog import ACTIVE
from pipelines import jobs
from serving.report import headline_rows, latest_report

pd.options.display.max_columns = 40
pd.options.display.float_format = "{:,.3f}".format
pd.options.display.max_colwidth = 100

# %% [markdown]
# ## The KPI report
#
# The latest report that a scoring run or `churn report` wrote (`<outputs>/reports/as_of=<DATE>/`); when there is
# none yet, it is written now, as `churn report` would. `churn report --period quarter` writes quarterly KPIs
# instead. The headline is the latest complete period, overall; "no data" marks a KPI whose table is missing.

# %%
html = latest_report(cfg.resolve(cfg.outputs.dir))
folder = html.parent if html else jobs.report(cfg)[0]
# %matplotlib inline
kpis = pd.read_parquet(folder / "kpis.parquet")
cohorts = pd.read_parquet(folder / "cohorts.parquet")
summary = json.loads((folder / "summary.json").read_text())
period, currency = summary["period"], summary["currency"]
print(f"report {folder}: {len(summary['periods'])} complete {period}s, money in {currency}")
pd.DataFrame(headline_rows(summary["headline"], summary),
             columns=["KPI", summary["latest_period"]]).set_index("KPI")

# %% [markdown]
# ### Trends, every customer
#
# Churn rate (lost / active at the start), customer retention rate ((active at the end - new) / active at the
# start) and revenue retention (this period's net revenue of the customers active at the start over theirs the
# period before), then the value side: average order value and orders per buying customer. A rise in churn
# that revenue retention does not show means the customers lost were the small ones.

# %%
overall = kpis[kpis["grouping"] == "overall"].set_index("period")
figure, axes = plt.subplots(1, 4, figsize=(18, 3.6))
(overall["churn_rate"] * 100).plot(ax=axes[0], marker="o", color="#c0392b", title=f"Churn rate per {period} (%)")
(overall[["retention_rate", "revenue_retention"]] * 100).plot(ax=axes[1], marker="o", title="Retention (%)")
overall["average_order_value"].plot(ax=axes[2], marker="o", title=f"Average order value ({currency})")
overall["purchase_frequency"].plot(ax=axes[3], marker="o", title="Orders per buying customer")
for ax in axes:
    ax.set_xlabel("")
    ax.grid(alpha=0.3)
    ax.tick_params(axis="x", rotation=45)
figure.tight_layout()
plt.show()


# %% [markdown]
# Survey and support KPIs over the same periods (empty where the data hold no surveys or tickets): NPS, the
# share of satisfied CSAT answers, tickets opened per 100 active customers.

# %%
voice = overall[["nps", "csat", "tickets_per_100", "survey_response_rate"]].assign(
    csat=lambda f: f["csat"] * 100, survey_response_rate=lambda f: f["survey_response_rate"] * 100)
voice.rename(columns={"csat": "csat (% 4-5)", "survey_response_rate": "survey response (%)"})

# %% [markdown]
# ### Per market and per RFM segment
#
# The latest period's KPIs per market (the customer's country) and per RFM segment at the period's start (new
# customers have no segment yet, so a segment's retention is that of the customers it held). Then the churn
# rate of every market over time: a market drifting away from the others is worth a look before any model is.

# %%
columns = ["customers_start", "new_customers", "churn_rate", "retention_rate", "revenue_retention",
           "average_order_value", "purchase_frequency", "repeat_purchase_rate", "historical_cltv", "nps"]
latest = kpis[kpis["period"] == summary["latest_period"]]
percent = {c: "{:.1%}" for c in ("churn_rate", "retention_rate", "revenue_retention", "repeat_purchase_rate")}
for grouping in ("market", "segment"):
    table = latest[latest["grouping"] == grouping].set_index("group")[columns]
    display(table.sort_values("customers_start", ascending=False).style.format(
        {"customers_start": "{:,.0f}", "new_customers": "{:,.0f}", **percent}, precision=2, na_rep="no data")
        .set_caption(f"per {grouping}, {summary['latest_period']} (money in {currency})"))

# %%
by_market = kpis[kpis["grouping"] == "market"]
largest = by_market[by_market["period"] == summary["latest_period"]].nlargest(MARKETS, "customers_start")["group"]
markets = by_market[by_market["group"].isin(largest)].pivot(index="period", columns="group", values="churn_rate")
ax = (markets * 100).plot(figsize=(11, 3.8), marker=".", xlabel="",
                          title=f"Churn rate per {period}, the {MARKETS} largest markets (%)")
(overall["churn_rate"] * 100).plot(ax=ax, color="black", lw=2, ls="--", label=OVERALL)
ax.legend(ncol=5, fontsize=8)
ax.set_xlabel("")
ax.grid(alpha=0.3)
plt.show()


# %% [markdown]
# ## Cohorts
#
# A customer's cohort is the month of their first order. Each row of the heat map is one cohort, each column a
# month since it: the share of the cohort that ordered in that month. Month 0 is 100% by definition; the first
# columns show how many one-time buyers the business makes, the diagonal bands show seasons every cohort feels.

# %%
grid = (cohorts[cohorts["market"] == OVERALL]
        .pivot(index="cohort", columns="months_since", values="customer_share").sort_index())
figure, ax = plt.subplots(figsize=(12, max(3, 0.2 * len(grid) + 1)))
image = ax.imshow(grid.to_numpy(dtype=float) * 100, aspect="auto", cmap="viridis", vmin=0,
                  vmax=np.nanpercentile(grid.iloc[:, 1:].to_numpy(dtype=float) * 100, 99))
ax.set_yticks(range(len(grid)), grid.index, fontsize=7)
ax.set(xlabel="months since the first order", ylabel="cohort", title="Customers ordering, % of the cohort "
       "(month 0 off the colour scale)")
figure.colorbar(image, ax=ax, label="% of the cohort")
plt.show()


# %% [markdown]
# Pooled retention curves: for each month since the first order, the customers of every cohort old enough to
# have reached it who ordered in it, over those cohorts' sizes; overall and for the largest markets. Revenue is
# the cohorts' net revenue in that month over their first month's.

# %%
biggest = (cohorts[(cohorts["market"] != OVERALL) & (cohorts["months_since"] == 0)]
           .groupby("market")["cohort_size"].sum().nlargest(MARKETS).index)
pooled = (cohorts[cohorts["market"].isin([OVERALL, *biggest])]
          .groupby(["market", "months_since"])[["customers", "cohort_size", "net_revenue"]].sum())
first_month = pooled.xs(0, level="months_since")["net_revenue"]
pooled["customers_retained"] = pooled["customers"] / pooled["cohort_size"] * 100
pooled["revenue_retained"] = pooled["net_revenue"] / first_month.reindex(pooled.index, level="market") * 100
figure, axes = plt.subplots(1, 2, figsize=(15, 3.8))
for ax, value in zip(axes, ["customers_retained", "revenue_retained"]):
    curves = pooled[value].unstack("market").loc[1:]
    curves.drop(columns=OVERALL).plot(ax=ax, marker=".", alpha=0.8)
    curves[OVERALL].plot(ax=ax, color="black", lw=2, label=OVERALL)
    ax.set(title=f"{value.replace('_', ' ')} (% of month 0)", xlabel="months since the first order")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
figure.tight_layout()
plt.show()


# %% [markdown]
# ## Purchase rhythm
#
# How long customers go between orders decides what "lapsed" means. The histogram is every gap between two
# consecutive orders of a customer (validated transactions, refunds left out), with the churn horizon and the
# activity window of the labels: gaps longer than the churn horizon are customers who would have counted as
# churned and came back.

# %%
transactions = pd.read_parquet(cfg.validated_dir / "transactions.parquet", columns=["customer_id", "ts", "amount"])
orders = transactions[transactions["amount"] >= 0].sort_values(["customer_id", "ts"])
gaps = orders.groupby("customer_id")["ts"].diff().dt.days.dropna()
per_customer = orders.groupby("customer_id").size()
horizons = cfg.horizons
print(f"{len(orders):,} orders of {len(per_customer):,} customers; {(per_customer == 1).mean():.1%} ordered once; "
      f"median gap {gaps.median():.0f} days, 90th percentile {gaps.quantile(0.9):.0f}; "
      f"{(gaps > horizons.churn_days).mean():.1%} of repeat orders came after more than {horizons.churn_days} "
      f"days, {(gaps > horizons.activity_window_days).mean():.1%} after more than {horizons.activity_window_days}")
figure, axes = plt.subplots(1, 2, figsize=(15, 3.6))
axes[0].hist(gaps.clip(lower=1), bins=np.geomspace(1, max(gaps.max(), 2), 60), color="#4C72B0")
axes[0].set_xscale("log")
for days, name in ((horizons.churn_days, "churn horizon"), (horizons.activity_window_days, "activity window")):
    axes[0].axvline(days, color="#c0392b", ls="--", lw=1)
    axes[0].annotate(f" {name}", (days, 0.9), xycoords=("data", "axes fraction"), fontsize=8)
axes[0].set(title="Days between consecutive orders", xlabel="days (log scale; same-day orders at 1)",
            ylabel="repeat orders")
bands = pd.cut(per_customer, [0, 1, 2, 3, 5, 10, 20, 50, 100, np.inf],
               labels=["1", "2", "3", "4-5", "6-10", "11-20", "21-50", "51-100", "over 100"])
bands.value_counts(sort=False).plot.bar(ax=axes[1], color="#4C72B0", rot=0)
axes[1].set(title="Orders per customer, whole history", xlabel="orders", ylabel="customers")
figure.tight_layout()
plt.show()


# %% [markdown]
# Orders and net revenue per month over the whole history (the seasons, the growth of the base), and the share of
# orders per weekday.

# %%
monthly = transactions.set_index("ts").resample("MS")["amount"].agg(["size", "sum"])
figure, axes = plt.subplots(1, 3, figsize=(18, 3.4), gridspec_kw={"width_ratios": [2, 2, 1]})
monthly["size"].plot(ax=axes[0], color="#4C72B0", title="Transactions per month")
monthly["sum"].plot(ax=axes[1], color="#dd8452", title=f"Net revenue per month ({currency})")
weekday = orders["ts"].dt.day_name().value_counts(normalize=True) * 100
weekday.reindex(pd.date_range("2024-01-01", periods=7).day_name()).plot.bar(ax=axes[2], color="#4C72B0")
axes[2].set_title("Orders per weekday (%)")
for ax in axes:
    ax.set_xlabel("")
    ax.grid(alpha=0.3)
figure.tight_layout()
plt.show()


# %% [markdown]
# ### Rhythm and churn, point in time
#
# The feature engine's snapshot at the latest cutoff whose churn window is complete, with its labels: for the
# active customers, the share who did not order in the next `churn_days` days, against how long they have been
# silent and against `overdue_ratio` (days since the last order over their own mean gap). A customer's own
# rhythm separates the lost from the slow better than a single silence threshold: this is what the churn model
# builds on.

# %%
src = open_sources(cfg.validated_dir, memory_limit=cfg.snapshots.duckdb_memory_limit)
cutoff = latest_labeled_cutoff(src.last_day, horizons.churn_days)
snapshot = build_snapshots(src, [cutoff], horizons, with_labels=True)
active = snapshot[ACTIVE.mask(snapshot, horizons)]
edges = [0, 30, 60, 90, 120, 180, 270, horizons.activity_window_days]
silence = pd.cut(active["days_since_last_purchase"], edges, include_lowest=True,
                 labels=[f"{a + (a > 0)}-{b}" for a, b in zip(edges[:-1], edges[1:])])
overdue = pd.cut(active["overdue_ratio"], [0, 0.5, 1, 1.5, 2, 3, 5, np.inf], include_lowest=True,
                 labels=["up to 0.5", "0.5-1", "1-1.5", "1.5-2", "2-3", "3-5", "over 5"])
figure, axes = plt.subplots(1, 2, figsize=(15, 3.6), sharey=True)
for ax, bands, name in ((axes[0], silence, "days since the last order"), (axes[1], overdue, "overdue ratio")):
    rates = active.groupby(bands, observed=True)["churned"].agg(["mean", "size"])
    (rates["mean"] * 100).plot.bar(ax=ax, color="#4C72B0", rot=0)
    for i, (rate, size) in enumerate(zip(rates["mean"], rates["size"])):
        ax.annotate(f"n={size:,}", (i, rate * 100), ha="center", va="bottom", fontsize=7)
    ax.set(title=f"Churned in {horizons.churn_days} days after {cutoff}, by {name}", xlabel=name,
           ylabel="% churned")
figure.tight_layout()
print(f"{len(active):,} active customers at {cutoff}, {active['churned'].mean():.1%} churned; customers who "
      f"ordered once have no overdue ratio ({active['overdue_ratio'].isna().mean():.1%})")
plt.show()

