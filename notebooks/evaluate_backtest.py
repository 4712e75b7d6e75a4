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
# # Evaluate a backtest: models against baselines, calibration, segments and markets, the biggest misses
#
# The temporal backtest of `churn train` (`models.backtest`): every model of the catalogue trained only on
# snapshots whose label window closed before the evaluation cutoff, then scored on the customers at that cutoff
# with their real outcomes, next to the baselines it must beat (and, on generated data, the oracle that knows each
# customer's hidden state). The report holds the totals; this notebook runs the same backtest again to get the
# evaluation rows behind them and looks at where the models are right and where they are wrong. Definitions:
# `docs/models.md`.

# %% tags=["parameters"]
import os
from pathlib import Path

CONFIG = os.environ.get("CHURN_CONFIG")  # the pipeline's config file; unset: configs/default.yaml
DATA_DIR = os.environ.get("CHURN_DATA_DIR")  # replaces the config's data_dir; unset: the config's (data/)
AS_OF = os.environ.get("CHURN_BACKTEST_AS_OF")  # YYYY-MM-DD; unset: the latest cutoff with a complete churn window
MODEL = 0  # which model of models.catalog.MODELS the error analysis looks at (0: the churn model)
MIN_CUSTOMERS = 30  # smaller markets and segments are left out of the per-group metrics
TOP = 10  # customers shown per kind of miss

# %%
from pipelines.runtime import notebook_config

cfg = notebook_config(CONFIG, DATA_DIR)  # from the project's folder; MLflow, Prefect, matplotlib local and quiet

import datetime as dt
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Image, display

from features.snapshots import read_snapshots
from models import metrics
from models.backtest import summary_rows
from models.catalog import MODELS
from pipelines import jobs, keys

pd.options.display.max_columns = 40
pd.options.display.max_colwidth = 200
as_of = dt.date.fromisoformat(AS_OF) if AS_OF else None

# %% [markdown]
# ## The backtest, run again
#
# The report `churn train` wrote at this cutoff is read first; the backtest is then run again into a scratch
# folder, on the training snapshots of the last `churn run` when they are current, otherwise on snapshots built
# now. Training is deterministic: with the same data, code and settings the figures are the report's. Nothing
# registered or published changes. (The report keeps no evaluation rows, hence the second run.)

# %%
saved_path = jobs.default_report_path(cfg) if as_of is None else jobs.backtest_folder(cfg, as_of) / "report.json"
saved = jobs.read_report(saved_path) if saved_path.exists() else None
stack = cfg.data_dir / "features" / "training_snapshots"
current = as_of is None and keys.folder_inputs_key(stack) == keys.snapshot_key(
    cfg, jobs.training_cutoffs(cfg, jobs.data_span(cfg)), True)
scratch = Path(tempfile.mkdtemp(prefix="backtest-"))
run = jobs.backtest(cfg, as_of, report_path=scratch / "report.json", progress=print,
                    snapshots=read_snapshots(stack) if current else None)
report, evaluations = run.result.report, run.result.evaluations
trained = [spec for spec in MODELS if spec.section in evaluations]
for spec in MODELS:
    if spec not in trained:
        print(f"{spec.name} steps aside: {report[spec.section]['skipped']}")
if saved is None:
    print(f"no saved report at {saved_path} (`churn train` writes one)")
else:
    same = all(np.isclose(saved[spec.section][spec.promotion.metric], report[spec.section][spec.promotion.metric])
               for spec in trained if spec.section in saved and "skipped" not in saved[spec.section])
    print(f"the saved report at {saved_path}: " + ("the same figures" if same else
          "other figures (the data, code or settings changed since it was written)"))

# %%
# the backtest drew its plots with matplotlib's file backend: back to inline figures
# %matplotlib inline

# %% [markdown]
# ## Models against their baselines
#
# Each model's table metrics at its evaluation cutoff beside its baselines and the oracle (generated data only).
# Classifiers: ROC AUC and PR AUC rank (higher is better), the Brier score and the expected calibration error
# (ECE) measure the probabilities (lower is better), top-decile lift and capture say what contacting the riskiest
# 10% would reach. CLTV: normalized Gini and Spearman rank, decile MAPE and total error measure the amounts.
# Next order: errors in whole days.

# %%
for spec in trained:
    table = pd.DataFrame({metric: values for _, metric, values in summary_rows(report, [spec])}).T
    display(table.dropna(axis=1, how="all").style.format(precision=4, na_rep="").set_caption(
        f"{spec.name} at {report[spec.section]['as_of']}: {len(evaluations[spec.section]):,} {spec.population.noun}"))

# %% [markdown]
# The same in one line per model: the metric that decides promotion, the model's gain over its best baseline and
# how much of the way from that baseline to the oracle it goes.

# %%
gains = []
for spec in trained:
    metric, section = spec.promotion.metric, report[spec.section]
    by_baseline = {b.name: report["baselines"][b.name][spec.section][metric] for b in spec.baselines}
    over_each = {name: spec.promotion.gain(section, {metric: value}) for name, value in by_baseline.items()}
    best = min(over_each, key=over_each.get)  # the baseline the model beats by least
    oracle = report.get("oracle", {}).get(f"{spec.section}_{metric}")
    reach = spec.promotion.gain({metric: oracle}, {metric: by_baseline[best]}) if oracle is not None else None
    gains.append({"model": spec.name, "evaluated at": section["as_of"], "metric": metric,
                  "model value": section[metric], "best baseline": best, "baseline value": by_baseline[best],
                  "gain": over_each[best], "oracle": oracle,
                  "share of the way to the oracle": over_each[best] / reach if reach else None})
pd.DataFrame(gains).set_index("model").style.format(precision=4, na_rep="")

# %% [markdown]
# Who was evaluated: the customers at the cutoff, each population's size and base rate, and the training rows.

# %%
pd.DataFrame([{"model": spec.name, "population": spec.population.noun, "training rows":
               report["populations"]["training_rows"][spec.section], "evaluation rows": len(evaluations[spec.section]),
               "base rate / mean outcome": float(np.mean(spec.outcome(evaluations[spec.section])))}
              for spec in trained]).set_index("model")

# %% [markdown]
# ## The backtest's plots
#
# ROC, calibration (reliability) and cumulative gain for each classifier with plots, and the decile chart of CLTV
# (mean predicted against mean actual per decile of the prediction): the same files as beside the saved report.

# %%
for path in run.plots:
    display(Image(filename=str(path), width=420))

# %% [markdown]
# ### Calibration in numbers
#
# Per tenth of the predicted probability: how many customers, their mean prediction and how many of them it
# happened to. A calibrated model's two rates agree; their weighted gap is the ECE.

# %%
for spec in (s for s in trained if s.kind == "classifier"):
    rows = evaluations[spec.section]
    y, p = spec.outcome(rows), rows["model"].clip(0, 1)
    mean_p, rate, count = metrics.calibration_curve(y, p)
    tenth = np.minimum((mean_p * 10).astype(int), 9)  # the equal-width bin each row of the curve is
    bins = pd.DataFrame({"customers": count, "mean predicted": mean_p, "observed rate": rate, "gap": rate - mean_p},
                        index=[f"{t / 10:.1f}-{(t + 1) / 10:.1f}" for t in tenth])
    display(bins.style.format({"customers": "{:,}"}, precision=3).set_caption(
        f"{spec.name} ({spec.label}): ECE {metrics.expected_calibration_error(y, p):.4f}"))

# %% [markdown]
# ## Per market and per RFM segment
#
# The promotion metric of every model and its baselines within each market (country) and each RFM segment at
# the cutoff, with the group's size and base rate (mean actual for CLTV). A model that beats its baselines
# overall but not in a large market is what a retention team in that market will notice first.

# %%
for spec in trained:
    rows = evaluations[spec.section]
    scorers = ["model", *(b.name for b in spec.baselines), *(["oracle"] if "oracle" in rows else [])]
    per_group = []
    for column in ("country", "rfm_segment"):
        for group, part in rows.groupby(column, observed=True):
            if len(part) < MIN_CUSTOMERS:
                continue
            y = spec.outcome(part)
            with np.errstate(all="ignore"):  # a group without both outcomes has no AUC: shown empty
                values = {name: spec.metrics(y, part[name].to_numpy(dtype=float))[spec.promotion.metric]
                          for name in scorers}
            per_group.append({"by": column, "group": group, "customers": len(part),
                              "base rate / mean": float(np.nanmean(y)), **values})
    if not per_group:
        continue
    table = pd.DataFrame(per_group).set_index(["by", "group"])
    baselines = table[[b.name for b in spec.baselines]]
    best = baselines.min(axis=1) if spec.promotion.lower_is_better else baselines.max(axis=1)
    table["model - best baseline"] = (best - table["model"]) if spec.promotion.lower_is_better else (
        table["model"] - best)  # positive: the model is better
    display(table.dropna(axis=1, how="all").style.format({"customers": "{:,}"}, precision=3, na_rep="")
            .map(lambda gain: "color: #c0392b; font-weight: bold" if gain < 0 else "",
                 subset=["model - best baseline"])
            .set_caption(f"{spec.name}: {spec.promotion.metric} per market and RFM segment at "
                         f"{report[spec.section]['as_of']} (red: a baseline does better)"))

# %% [markdown]
# ## The biggest misses
#
# For one model (`MODEL`), the customers it was most wrong about, both ways: the highest predictions whose
# outcome did not follow (for churn: false alarms, customers called lost who ordered again; `days_to_next_order`
# says when) and the lowest whose outcome did (churners it did not see coming). Beside each: the baselines, the
# oracle, and the facts a retention manager would look at first.

# %%
spec = MODELS[MODEL]
rows = evaluations[spec.section]
error = pd.Series(rows["model"].to_numpy(dtype=float) - spec.outcome(rows), index=rows.index)
context = [c for c in ("days_since_last_purchase", "orders", "gap_mean_days", "overdue_ratio", "net_spend",
                       "days_to_next_order", "rfm_segment", "country") if c in rows]
shown = [spec.label, "model", *(b.name for b in spec.baselines), *(["oracle"] if "oracle" in rows else []), *context]
over = rows.loc[error.nlargest(TOP).index].set_index("customer_id")[shown]
under = rows.loc[error.nsmallest(TOP).index].set_index("customer_id")[shown]
print(f"{spec.name} at {report[spec.section]['as_of']}: {len(rows):,} {spec.population.noun}")
display(over.style.format(precision=3, na_rep="").set_caption("predicted highest above what happened"))
display(under.style.format(precision=3, na_rep="").set_caption("predicted lowest below what happened"))

# %% [markdown]
# What the misses have in common: the median of each numeric fact among the 5% of customers with the largest
# error each way, beside every evaluated customer's.

# %%
share = max(TOP, int(0.05 * len(rows)))
numeric = [c for c in context if pd.api.types.is_numeric_dtype(rows[c])]
pd.DataFrame({"over-predicted": rows.loc[error.nlargest(share).index, numeric].median(),
              "every customer": rows[numeric].median(),
              "under-predicted": rows.loc[error.nsmallest(share).index, numeric].median()}).style.format(
    precision=1, na_rep="")

# %% [markdown]
# Why the backtest model got them wrong: its TreeSHAP contributions (raw-score units: log-odds for a classifier)
# averaged over the same over- and under-predicted customers, for the features that moved them most.
# Positive values pushed the prediction up.

# %%
model = run.result.models[spec.name]
contributions = model.explain(rows)[model.features]
drivers = pd.DataFrame({"over-predicted": contributions.loc[error.nlargest(share).index].mean(),
                        "under-predicted": contributions.loc[error.nsmallest(share).index].mean(),
                        "every customer": contributions.mean()})
top = drivers.drop(columns="every customer").abs().max(axis=1).nlargest(12).index
ax = drivers.loc[top[::-1]].plot.barh(figsize=(9, 5), title=f"{spec.name}: mean SHAP value of the misses")
ax.axvline(0, color="grey", lw=0.8)
ax.grid(alpha=0.3, axis="x")
plt.show()

# %% [markdown]
# The score against the outcome, for every evaluated customer: per tenth of the model's score (1 = lowest), the
# outcome's rate (mean for CLTV) beside the mean prediction. A steep, monotone climb is what ranking customers for
# a campaign needs.

# %%
tenth = pd.qcut(rows["model"].rank(method="first"), 10, labels=range(1, 11))
deciles = pd.DataFrame({"prediction": rows["model"], "outcome": spec.outcome(rows)}).groupby(tenth, observed=True)
ax = deciles.mean().plot.bar(figsize=(9, 3.5), rot=0, title=f"{spec.name}: by tenth of the score",
                             xlabel="tenth of the score (10 = highest)", color=["#4C72B0", "#dd8452"])
ax.grid(alpha=0.3, axis="y")
plt.show()
