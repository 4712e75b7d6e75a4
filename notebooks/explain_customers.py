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
# # Explain customers: what drives the champions' scores
#
# The champions of the MLflow registry (`models.tracking`) score the customers as of today's cutoff, as `churn
# score` does (`serving.scoring`). Their TreeSHAP contributions (LightGBM's own, `ScoringModel.explain`; raw-score
# units, log-odds for a classifier) say how much each feature moved each customer's score away from the model's
# base value: a summary over many customers, dependence plots for the strongest features, and one customer's
# waterfall with the reasons the published list writes for them (`serving.explain`). Reasons: `docs/lists.md`.

# %% tags=["parameters"]
import os

from serving.lists import LISTS

CONFIG = os.environ.get("CHURN_CONFIG")  # the pipeline's config file; unset: configs/default.yaml
DATA_DIR = os.environ.get("CHURN_DATA_DIR")  # replaces the config's data_dir; unset: the config's (data/)
LIST = LISTS[0].name  # the list whose model is explained (serving.lists.LISTS: the at-risk list first)
CUSTOMER_ID = None  # the customer of the waterfall; None: the first of that list (highest value)
SAMPLE = 2000  # customers in the SHAP summary and dependence plots
DEPENDENCE = 6  # dependence plots for this many of the strongest features

# %%
from pipelines.runtime import notebook_config

cfg = notebook_config(CONFIG, DATA_DIR)  # from the project's folder; MLflow, Prefect, matplotlib local and quiet

import json
import tempfile
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Image, display

from features.snapshots import build_snapshots, open_sources
from models.catalog import get
from models.plots import write_shap_plots
from models.tracking import champion_backtests
from pipelines import jobs
from serving import lists
from serving.explain import CONTRIBUTIONS, driver_columns, reason_columns, reference_values, top_reasons
from serving.reasons import load_reasons
from serving.scoring import HISTORY, HISTORY_MONTHS, add_purchase_history, build_lists, score_snapshot

pd.options.display.max_columns = 40
pd.options.display.max_colwidth = 200
warnings.filterwarnings("ignore", message="IProgress not found")  # MLflow's progress bars: plain text is fine

# %% [markdown]
# ## The champions
#
# Every model's champion version, its latest training cutoff and the backtest figures it was promoted on.

# %%
champions = jobs.load_champions(cfg)
promoted_on = champion_backtests(cfg, {name: c.version for name, c in champions.items()})
pd.DataFrame([{"model": name, "version": c.version, "kind": c.model.kind, "features": len(c.model.features),
               "trained up to": max(pd.Timestamp(t) for t in c.model.training_cutoffs).date(),
               "backtest at": promoted_on[name].get("eval_as_of"), "metric": get(name).promotion.metric,
               "value": promoted_on[name].get(get(name).promotion.metric)}
              for name, c in champions.items()]).set_index("model")

# %% [markdown]
# ## Scoring today's customers
#
# The point-in-time snapshot at the scoring cutoff (the day after the latest transaction, or `scoring.as_of`),
# scored by every champion; `inputs` are the model inputs (the snapshot plus its BG/NBD features).

# %%
src = open_sources(cfg.validated_dir, memory_limit=cfg.snapshots.duckdb_memory_limit)
as_of = jobs.scoring_cutoff(cfg, src.last_day)
snapshot = build_snapshots(src, [as_of], cfg.horizons)
scores, inputs = score_snapshot(snapshot, champions, cfg.horizons, with_inputs=True,
                                next_order_max_churn=cfg.scoring.next_order_date_max_churn)
chosen = lists.get(LIST)
spec, model = chosen.model, champions[chosen.model.name].model
population = inputs[spec.population.mask(inputs, cfg.horizons).to_numpy()]
sample = population.sample(n=min(SAMPLE, len(population)), random_state=cfg.models.seed)
contributions = model.explain(sample)[model.features]
print(f"{len(scores):,} customers scored at {as_of}; the {LIST} list's model {spec.name} "
      f"(v{champions[spec.name].version}) explained on {len(sample):,} of its {len(population):,} "
      f"{spec.population.noun}")

# %% [markdown]
# ## SHAP summary
#
# The package's summary plots (`models.plots.write_shap_plots`, also logged with each registered version): each
# dot is a customer, placed by how much the feature moved their score (right: higher score, for the churn model
# more risk), coloured by the feature's value from low (blue) to high (red); then the mean size of each feature's
# contribution.

# %%
for path in write_shap_plots(model, sample, tempfile.mkdtemp(prefix="shap-"), max_rows=SAMPLE, seed=cfg.models.seed):
    display(Image(filename=str(path), width=640))

# %%
# the package drew its plots with matplotlib's file backend: back to inline figures
# %matplotlib inline

# %% [markdown]
# The same ranking as a table, with the direction of each numeric feature: the rank correlation between its
# value and its contribution (+1: the higher the value, the higher the score; -1: the lower).

# %%
importance = contributions.abs().mean().sort_values(ascending=False)
direction = {f: sample[f].astype("float64").corr(contributions[f], method="spearman") for f in importance.index
             if (pd.api.types.is_numeric_dtype(sample[f]) or pd.api.types.is_bool_dtype(sample[f]))
             and sample[f].nunique() > 1 and contributions[f].nunique() > 1}  # a feature no tree uses has none
pd.DataFrame({"mean |SHAP|": importance, "share of the total": importance / importance.sum(),
              "direction": pd.Series(direction)}).head(20).style.format(precision=3, na_rep="")

# %% [markdown]
# ## Dependence plots
#
# For the strongest features: each customer's value of the feature (x) against its contribution (y), coloured by
# the customer's score. Where the cloud crosses zero is where the feature stops raising the score; a wide vertical
# spread at one value means the feature's effect depends on others.

# %%
strongest = list(importance.index[:DEPENDENCE])
columns = 3
grid_rows = int(np.ceil(len(strongest) / columns))
figure, axes = plt.subplots(grid_rows, columns, figsize=(16, 3.8 * grid_rows), squeeze=False)
score = model.score(sample)
for ax, feature in zip(axes.flat, strongest):
    values = sample[feature]
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        points = ax.scatter(values.astype("float64"), contributions[feature], c=score, cmap="viridis", s=6, alpha=0.6)
    else:  # a category: one column of dots per value
        codes = values.astype("category")
        jitter = np.random.default_rng(cfg.models.seed).uniform(-0.3, 0.3, len(values))
        points = ax.scatter(codes.cat.codes + jitter, contributions[feature], c=score, cmap="viridis", s=6, alpha=0.6)
        ax.set_xticks(range(len(codes.cat.categories)), codes.cat.categories, rotation=45, fontsize=7)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel=feature, ylabel="SHAP value")
    ax.grid(alpha=0.3)
for ax in list(axes.flat)[len(strongest):]:
    ax.set_visible(False)
figure.colorbar(points, ax=axes, label=f"{spec.score_column}", fraction=0.02)
figure.suptitle(f"{spec.name}: dependence of the strongest features")
plt.show()

# %% [markdown]
# ## One customer
#
# The customer at the top of the list (by its value: for the at-risk list, churn probability x predicted CLTV),
# or `CUSTOMER_ID`. First their scores, then the reasons the list publishes for them, in their language: the
# features that raise the score and are facts agreeing with it (their value lies on the risky side of the
# population's median).

# %%
ranked = build_lists(scores, champions, run_id="notebook")[LIST]
customer = CUSTOMER_ID or ranked["customer_id"].iloc[0]
display(ranked[ranked["customer_id"] == customer].set_index("customer_id").T)
row = inputs[inputs["customer_id"] == customer]
reference = reference_values(population, model.features)
catalog = load_reasons(jobs.reasons_path(cfg))
found = top_reasons(model, row, catalog, cfg.base_currency, cfg.horizons.churn_days, raises=spec.explains,
                    reference=reference, with_drivers=True, with_contributions=True)
pd.DataFrame({"reason": found[reason_columns()].iloc[0].to_numpy(),
              "feature": found[driver_columns()].iloc[0].to_numpy()}, index=range(1, len(reason_columns()) + 1))

# %% [markdown]
# ### Waterfall
#
# From the model's base value (its mean raw score), each of the customer's largest contributions in turn, then
# all other features together, ending at the customer's raw score; the calibrated score is that raw score through
# the model's calibration. Red raises the score, blue lowers it: the same chart as the customer's page in `churn
# serve`.

# %%
waterfall = json.loads(found[CONTRIBUTIONS].iloc[0])
steps = [(f"{name} = {value}" if value is not None else f"{name} (missing)", c)
         for name, value, c in waterfall["features"]] + [("all other features", waterfall["other"])]
starts = waterfall["base"] + np.concatenate([[0.0], np.cumsum([c for _, c in steps])[:-1]])
figure, ax = plt.subplots(figsize=(10, 0.45 * len(steps) + 1.5))
ax.barh(range(len(steps)), [c for _, c in steps], left=starts,
        color=["#c0392b" if c > 0 else "#2e6fd1" for _, c in steps])
for i, ((_, c), start) in enumerate(zip(steps, starts)):
    ax.annotate(f"{c:+.2f}", (max(start, start + c), i), xytext=(4, 0), textcoords="offset points", va="center",
                fontsize=8)
ax.set_yticks(range(len(steps)), [label for label, _ in steps], fontsize=8)
ax.invert_yaxis()
ax.axvline(waterfall["base"], color="grey", lw=0.8, ls=":")
raw = float(model.raw_score(row)[0])
ax.axvline(raw, color="black", lw=0.8)
ax.set(xlabel="raw score (log-odds for a classifier)",
       title=f"{customer}: base {waterfall['base']:+.2f} -> raw {raw:+.2f} -> {spec.score_column} "
             f"{float(model.score(row)[0]):.3f}")
ax.margins(x=0.08)
ax.grid(alpha=0.3, axis="x")
plt.show()

# %% [markdown]
# The customer's values of those features beside the population's medians (what the reasons compare with).

# %%
drivers = [name for name, _, _ in waterfall["features"]]
pd.DataFrame({"customer": row[drivers].iloc[0], "population median": reference.reindex(drivers),
              "contribution": [c for _, _, c in waterfall["features"]]})

# %% [markdown]
# Their orders and refunds per month over the two years before the cutoff: the purchase timeline of the
# customer's page in `churn serve` (`serving.scoring.add_purchase_history`).

# %%
picked = ranked[ranked["customer_id"] == customer]
timeline = add_purchase_history({LIST: picked}, cfg.validated_dir / "transactions.parquet", as_of)[LIST][HISTORY]
months = pd.period_range(end=pd.Period(as_of, "M") - 1, periods=HISTORY_MONTHS, freq="M").strftime("%Y-%m")
history = (pd.DataFrame(json.loads(timeline.iloc[0]), columns=["month", "orders", "refunds", "net amount"])
           .set_index("month").reindex(months, fill_value=0))
figure, axes = plt.subplots(2, 1, figsize=(12, 4.2), sharex=True)
history[["orders", "refunds"]].plot.bar(ax=axes[0], color=["#4C72B0", "#c0392b"], title=f"{customer} before {as_of}")
history["net amount"].plot.bar(ax=axes[1], color="#dd8452", rot=90, xlabel="",
                               ylabel=f"net amount ({cfg.base_currency})")
plt.show()
