"""Per-customer explanations: LightGBM's own TreeSHAP for the rows that are published, turned into reasons.

``ScoringModel.explain`` calls ``booster.predict(X, pred_contrib=True)``, exact TreeSHAP (Lundberg et al. 2020),
the same values ``shap.TreeExplainer`` returns for LightGBM, in raw-score units (log-odds for the classifiers);
the contributions plus the base value add up to the raw score. Only the rows passed in are explained, so a caller
explains the published customers, not the whole base.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.training import ScoringModel
from serving.reasons import ReasonCatalog, render_rows

REASONS = 3


def reason_columns(k: int = REASONS) -> list[str]:
    return [f"reason_{i}" for i in range(1, k + 1)]


def top_reasons(model: ScoringModel, rows: pd.DataFrame, catalog: ReasonCatalog, currency: str,
                churn_days: int, k: int = REASONS) -> pd.DataFrame:
    """``reason_1..k`` per row: the features with the largest positive contributions (those that raise the
    model's score: churn risk for the churn model, the chance of coming back for the win-back model), largest
    first, written in the customer's language. A driver whose text cannot be written (its fields are missing) or
    repeats an earlier text is skipped; fewer than ``k`` positive drivers leave the rest empty.

    ``rows`` needs the model's features, plus ``cutoff`` and ``country`` for dates and language.
    """
    columns = reason_columns(k)
    if rows.empty:
        return pd.DataFrame(columns=columns, index=rows.index, dtype="object")
    contributions = model.explain(rows)[model.features].to_numpy()
    order = np.argsort(-contributions, axis=1, kind="stable")
    reasons: list[list[str]] = [[] for _ in range(len(rows))]
    pending = np.arange(len(rows))  # rows that still need a reason, drivers taken in order of contribution
    for rank in range(len(model.features)):
        feature_at = order[pending, rank]
        positive = contributions[pending, feature_at] > 0
        pending, feature_at = pending[positive], feature_at[positive]
        for j in np.unique(feature_at):  # one batch per feature: texts are written a column at a time
            at = pending[feature_at == j]
            texts = render_rows(catalog, model.features[j], rows.iloc[at], currency, churn_days)
            for i, text in zip(at, texts.tolist()):
                if text is not None and text not in reasons[i]:  # None: its fields are missing
                    reasons[i].append(text)
        pending = pending[np.fromiter((len(reasons[i]) < k for i in pending), bool, len(pending))]
        if not len(pending):
            break
    return pd.DataFrame([r + [None] * (k - len(r)) for r in reasons], columns=columns, index=rows.index,
                        dtype="object")
