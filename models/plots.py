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
    from sklearn.metrics import roc_curve

    plt = _pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    churn = result.churn
    y = churn["churned"].astype(int).to_numpy()
    curves = [c for c in _CHURN_CURVES if c in churn.columns]
    as_of = result.report["as_of"]
    paths = []

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name in curves:
        fpr, tpr, _ = roc_curve(y, churn[name])
        ax.plot(fpr, tpr, label=f"{name} (AUC {m.classification_metrics(y, churn[name])['roc_auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"Churn ROC at {as_of}")
    ax.legend(loc="lower right", fontsize=8)
    paths.append(_save(fig, folder / "roc.png", plt))

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name in curves:
        if name in ("model", "btyd", "oracle"):
            p = churn[name].clip(0, 1)
            mean_p, rate, _ = m.calibration_curve(y, p)
            ax.plot(mean_p, rate, marker="o", ms=3, label=f"{name} (ECE {m.expected_calibration_error(y, p):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set(xlabel="predicted churn probability", ylabel="observed churn rate", title=f"Calibration at {as_of}")
    ax.legend(loc="upper left", fontsize=8)
    paths.append(_save(fig, folder / "calibration.png", plt))

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name in curves:
        share, captured = m.gain_curve(y, churn[name].to_numpy())
        ax.plot(share, captured, label=name)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":", label="random")
    ax.set(xlabel="share of active customers contacted (highest risk first)", ylabel="share of churners reached",
           title=f"Cumulative gain at {as_of}")
    ax.legend(loc="lower right", fontsize=8)
    paths.append(_save(fig, folder / "gain.png", plt))

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
