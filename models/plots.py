"""Backtest plots as PNG files: ROC, calibration, cumulative gain (churn) and the CLTV decile chart."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models import metrics as m
from models.backtest import BacktestResult

_CHURN_CURVES = ("model", "btyd", "recency_rule", "logistic_rfm", "oracle")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def write_plots(result: BacktestResult, folder: str | Path) -> list[Path]:
    """Write ``roc.png``, ``calibration.png``, ``gain.png`` and ``cltv_deciles.png`` into ``folder``."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    churn = result.churn
    y = churn["churned"].astype(int).to_numpy()
    curves = [c for c in _CHURN_CURVES if c in churn.columns]
    as_of = result.report["as_of"]
    paths = []

    def churn_plot(file: str, draw, legend_loc: str, diagonal_label: str | None = None, **labels) -> None:
        """One square churn chart: ``draw(ax, name)`` per curve, the diagonal, labels, legend, saved."""
        fig, ax = plt.subplots(figsize=(5.5, 5))
        for name in curves:
            draw(ax, name)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":", label=diagonal_label)
        ax.set(**labels)
        ax.legend(loc=legend_loc, fontsize=8)
        paths.append(_save(fig, folder / file, plt))

    def roc(ax, name):
        fpr, tpr, _ = roc_curve(y, churn[name])
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, churn[name]):.3f})")

    def calibration(ax, name):
        if name in ("model", "btyd", "oracle"):
            p = churn[name].clip(0, 1)
            mean_p, rate, _ = m.calibration_curve(y, p)
            ax.plot(mean_p, rate, marker="o", ms=3, label=f"{name} (ECE {m.expected_calibration_error(y, p):.3f})")

    def gain(ax, name):
        ax.plot(*m.gain_curve(y, churn[name].to_numpy()), label=name)

    churn_plot("roc.png", roc, "lower right", xlabel="false positive rate", ylabel="true positive rate",
               title=f"Churn ROC at {as_of}")
    churn_plot("calibration.png", calibration, "upper left", xlabel="predicted churn probability",
               ylabel="observed churn rate", title=f"Calibration at {as_of}")
    churn_plot("gain.png", gain, "lower right", "random",
               xlabel="share of active customers contacted (highest risk first)",
               ylabel="share of churners reached", title=f"Cumulative gain at {as_of}")

    cltv = result.cltv
    actual = cltv["future_net_revenue"].to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    width = 0.27
    for i, name in enumerate(("model", "btyd", "historical_formula")):
        predicted, mean_actual = m.decile_table(actual, cltv[name].to_numpy(dtype=float))
        deciles = np.arange(1, len(predicted) + 1)
        ax.bar(deciles + (i - 1) * width, predicted, width, label=f"{name} predicted")
        if name == "model":
            ax.plot(deciles, mean_actual, color="black", marker="o", label="actual (model deciles)")
    ax.set(xlabel="decile of predicted CLTV (1 = lowest)", ylabel="mean net revenue per customer",
           title=f"CLTV by decile at {result.report['cltv']['as_of']}")
    ax.legend(fontsize=8)
    paths.append(_save(fig, folder / "cltv_deciles.png", plt))
    return paths


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
    plt = _pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sample = rows.sample(n=min(max_rows, len(rows)), random_state=seed) if len(rows) > max_rows else rows
    contributions = model.explain(sample)[model.features]
    importance = contributions.abs().mean().sort_values(ascending=False).head(top)
    names = list(importance.index[::-1])  # most important at the top
    unit = "log-odds" if model.kind == "classifier" else "expected value"

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
