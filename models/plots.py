"""Backtest plots as PNG files: ROC, calibration and cumulative gain for classifiers, the decile chart for
regressors (each model of the catalogue that asks for them), and the global SHAP summaries."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models import metrics as m
from models.backtest import BacktestResult
from models.catalog import MODELS, ModelSpec


def pyplot():
    """matplotlib's pyplot on the Agg backend: the plots are files (PNG), never shown."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def write_plots(result: BacktestResult, folder: str | Path, models: Sequence[ModelSpec] = MODELS) -> list[Path]:
    """For each trained model of the catalogue with a ``plot_prefix``: a classifier's ``<prefix>roc.png``,
    ``<prefix>calibration.png`` and ``<prefix>gain.png`` (model, baselines and oracle), a regressor's
    ``<prefix>deciles.png``, written into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in models:
        if spec.plot_prefix is None or spec.section not in result.evaluations:
            continue
        rows = result.evaluations[spec.section]
        as_of = result.report[spec.section]["as_of"]
        draw = _classifier_plots if spec.kind == "classifier" else _regressor_plots
        paths += draw(spec, rows, folder, as_of)
    return paths


def _classifier_plots(spec: ModelSpec, rows, folder: Path, as_of: str) -> list[Path]:
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = pyplot()
    y = spec.outcome(rows)
    curves = [c for c in ("model", *(b.name for b in spec.baselines), "oracle") if c in rows.columns]
    what = spec.label.replace("_", " ")
    paths = []

    def plot(file: str, draw, legend_loc: str, diagonal_label: str | None = None, **labels) -> None:
        """One square chart: ``draw(ax, name)`` per curve, the diagonal, labels, legend, saved."""
        fig, ax = plt.subplots(figsize=(5.5, 5))
        for name in curves:
            draw(ax, name)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":", label=diagonal_label)
        ax.set(**labels)
        ax.legend(loc=legend_loc, fontsize=8)
        paths.append(_save(fig, folder / f"{spec.plot_prefix}{file}", plt))

    def roc(ax, name):
        fpr, tpr, _ = roc_curve(y, rows[name])
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, rows[name]):.3f})")

    def calibration(ax, name):
        if name in ("model", "btyd", "oracle"):  # the probabilities; the rule baselines rank only
            p = rows[name].clip(0, 1)
            mean_p, rate, _ = m.calibration_curve(y, p)
            ax.plot(mean_p, rate, marker="o", ms=3, label=f"{name} (ECE {m.expected_calibration_error(y, p):.3f})")

    def gain(ax, name):
        ax.plot(*m.gain_curve(y, rows[name].to_numpy()), label=name)

    plot("roc.png", roc, "lower right", xlabel="false positive rate", ylabel="true positive rate",
         title=f"{spec.name}: ROC ({what}) at {as_of}")
    plot("calibration.png", calibration, "upper left", xlabel=f"predicted probability ({what})",
         ylabel="observed rate", title=f"{spec.name}: calibration at {as_of}")
    plot("gain.png", gain, "lower right", "random",
         xlabel=f"share of {spec.population.name} customers contacted (highest score first)",
         ylabel=f"share of {what} reached", title=f"{spec.name}: cumulative gain at {as_of}")
    return paths


def _regressor_plots(spec: ModelSpec, rows, folder: Path, as_of: str) -> list[Path]:
    plt = pyplot()
    actual = spec.outcome(rows)
    names = ("model", *(b.name for b in spec.baselines))
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        predicted, mean_actual = m.decile_table(actual, rows[name].to_numpy(dtype=float))
        deciles = np.arange(1, len(predicted) + 1)
        ax.bar(deciles + (i - (len(names) - 1) / 2) * width, predicted, width, label=f"{name} predicted")
        if name == "model":
            ax.plot(deciles, mean_actual, color="black", marker="o", label="actual (model deciles)")
    ax.set(xlabel=f"decile of predicted {spec.label.replace('_', ' ')} (1 = lowest)",
           ylabel="mean actual per customer", title=f"{spec.name}: by decile at {as_of}")
    ax.legend(fontsize=8)
    return [_save(fig, folder / f"{spec.plot_prefix}deciles.png", plt)]


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_shap_plots(model, rows, folder: str | Path, max_rows: int = 2000, top: int = 15, seed: int = 0
                     ) -> list[Path]:
    """The model's global SHAP summary on (a sample of) ``rows``: ``shap_summary_<name>.png``, a beeswarm (each
    dot a customer, x = SHAP value in raw-score units, colour = the feature's value from low to high, by rank) and
    ``shap_importance_<name>.png``, the mean |SHAP| per feature. The ``top`` features by mean |SHAP| are shown."""
    plt = pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sample = rows.sample(n=min(max_rows, len(rows)), random_state=seed) if len(rows) > max_rows else rows
    contributions = model.explain(sample)[model.features]
    importance = contributions.abs().mean().sort_values(ascending=False).head(top)
    names = list(importance.index[::-1])  # most important at the top
    unit = {"classifier": "log-odds", "duration": "log(1 + days)"}.get(model.kind, "expected value")

    fig, ax = plt.subplots(figsize=(8, 0.35 * len(names) + 1.5))
    rng = np.random.default_rng(seed)
    for i, name in enumerate(names):
        values = sample[name]
        numeric = values.astype("float64") if values.dtype.kind in "biuf" else None
        colour = (numeric.rank(pct=True).fillna(0.5).to_numpy() if numeric is not None
                  else np.full(len(values), 0.5))
        y = i + rng.uniform(-0.3, 0.3, len(values))
        points = ax.scatter(contributions[name], y, c=colour, cmap="coolwarm", vmin=0, vmax=1, s=6, alpha=0.7,
                            linewidths=0)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel(f"SHAP value ({unit}; right = raises the prediction)")
    ax.set_title(f"{model.name}: SHAP summary ({len(sample):,} customers)")
    fig.colorbar(points, ax=ax, label="feature value (rank: low to high)", fraction=0.03)
    paths = [_save(fig, folder / f"shap_summary_{model.name}.png", plt)]

    fig, ax = plt.subplots(figsize=(8, 0.35 * len(names) + 1.5))
    ax.barh(names, importance[names].to_numpy(), color="#4C72B0")
    ax.set_xlabel(f"mean |SHAP value| ({unit})")
    ax.set_title(f"{model.name}: feature importance (mean |SHAP|)")
    paths.append(_save(fig, folder / f"shap_importance_{model.name}.png", plt))
    return paths
