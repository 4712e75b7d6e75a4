"""Per-customer explanations: LightGBM's own TreeSHAP for the rows that are published, turned into reasons.

``ScoringModel.explain`` calls ``booster.predict(X, pred_contrib=True)``, exact TreeSHAP (Lundberg et al. 2020),
the same values ``shap.TreeExplainer`` returns for LightGBM, in raw-score units (log-odds for the classifiers);
the contributions plus the base value add up to the raw score. Only the rows passed in are explained, so a caller
explains the published customers, not the whole base.

A driver becomes a reason only when it is a fact that agrees with the score (see the reasons file's header): its
contribution raises the score, its template is not ``never``, its value lies on the side of the reference (the
population's median, or the template's ``neutral``) that raises the score, and no earlier reason of the row
states the same fact (its ``group``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from models.training import ScoringModel
from serving.reasons import ReasonCatalog, Template, render_rows

REASONS = 3
Raises = Literal["risk", "return"]  # what the explained score measures: churn risk, or the chance of buying again


def reason_columns(k: int = REASONS) -> list[str]:
    return [f"reason_{i}" for i in range(1, k + 1)]


def driver_columns(k: int = REASONS) -> list[str]:
    return [f"driver_{i}" for i in range(1, k + 1)]


def reference_values(rows: pd.DataFrame, features: list[str]) -> pd.Series:
    """The median of each numeric feature over ``rows`` (the population the reasons are compared with)."""
    values = {}
    for feature in features:
        if feature in rows.columns:
            column = rows[feature]
            if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
                values[feature] = float(pd.to_numeric(column, errors="coerce").astype("float64").median())
    return pd.Series(values, dtype="float64")


def agrees(template: Template | None, values: pd.Series, reference: float, raises: Raises) -> np.ndarray:
    """Per row: may this feature's value be written as a reason for a score that ``raises``? (see the module
    docstring). ``reference``: the population's median (the template's ``neutral`` wins)."""
    n = len(values)
    if template is None or template.risk == "never":
        return np.zeros(n, bool)
    if template.risk == "category":
        return np.ones(n, bool)
    sign = 1.0 if template.risk == "higher" else -1.0
    if raises == "return":
        sign = -sign  # the win-back score rises where the churn risk falls
    ref = template.neutral if template.neutral is not None else reference
    numbers = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
    missing = np.isnan(numbers)
    out = np.zeros(n, bool)
    if np.isfinite(ref):
        out[~missing] = sign * (numbers[~missing] - ref) > 0
    if template.missing == "risky" and raises == "risk":
        out |= missing  # e.g. never opened an e-mail: the risky end
    return out


def top_reasons(model: ScoringModel, rows: pd.DataFrame, catalog: ReasonCatalog, currency: str,
                churn_days: int, k: int = REASONS, raises: Raises = "risk", reference: pd.Series | None = None,
                with_drivers: bool = False) -> pd.DataFrame:
    """``reason_1..k`` per row: of the features that raise the model's score (positive contributions), largest
    first, those that are facts agreeing with the score (:func:`agrees`), at most one per group, written in the
    customer's language. A driver whose text cannot be written (its fields are missing) or repeats an earlier text
    is skipped; fewer such drivers leave the rest empty. ``reference`` is each feature's median over the
    population (default: over ``rows``); ``with_drivers`` adds ``driver_1..k``, the feature behind each reason.

    ``rows`` needs the model's features, plus ``cutoff`` and ``country`` for dates and language.
    """
    columns = reason_columns(k) + (driver_columns(k) if with_drivers else [])
    if rows.empty:
        return pd.DataFrame(columns=columns, index=rows.index, dtype="object")
    features = model.features
    reference = reference_values(rows, features) if reference is None else reference
    templates = [catalog.entry(f) for f in features]
    contributions = model.explain(rows)[features].to_numpy()
    allowed = np.column_stack([
        agrees(t, rows[f] if f in rows.columns else pd.Series(np.nan, index=rows.index),
               float(reference.get(f, np.nan)), raises) for f, t in zip(features, templates)])
    candidate = np.where((contributions > 0) & allowed, contributions, -np.inf)
    order = np.argsort(-candidate, axis=1, kind="stable")
    reasons: list[list[str]] = [[] for _ in range(len(rows))]
    drivers: list[list[str]] = [[] for _ in range(len(rows))]
    said: dict[str, np.ndarray] = {}  # group -> rows that already have a reason of that group
    pending = np.arange(len(rows))  # rows that still need a reason, drivers taken in order of contribution
    for rank in range(len(features)):
        feature_at = order[pending, rank]
        usable = np.isfinite(candidate[pending, feature_at])
        pending, feature_at = pending[usable], feature_at[usable]
        for j in np.unique(feature_at):  # one batch per feature: texts are written a column at a time
            at = pending[feature_at == j]
            group = templates[j].group
            if group is not None and group in said:
                at = at[~said[group][at]]
            if not len(at):
                continue
            texts = render_rows(catalog, features[j], rows.iloc[at], currency, churn_days)
            for i, text in zip(at, texts.tolist()):
                if text is not None and text not in reasons[i]:  # None: its fields are missing
                    reasons[i].append(text)
                    drivers[i].append(features[j])
                    if group is not None:
                        said.setdefault(group, np.zeros(len(rows), bool))[i] = True
        pending = pending[np.fromiter((len(reasons[i]) < k for i in pending), bool, len(pending))]
        if not len(pending):
            break
    table = [r + [None] * (k - len(r)) + ((d + [None] * (k - len(d))) if with_drivers else [])
             for r, d in zip(reasons, drivers)]
    return pd.DataFrame(table, columns=columns, index=rows.index, dtype="object")


# ---- the whole-list check --------------------------------------------------------------------------------------

AUDIT_COUNTS = ("contradicting", "not_a_fact", "same_fact_twice", "zero_count", "negative_duration",
                "unpluralised", "zero_percent")
_ZERO_COUNT = r"(?<![\d.,])\b0 (?:times|orders?|visits?|e-mails?|support tickets?|product categor)"
_NEGATIVE = r"-\d[\d,.\s]*(?:days?|months?|dn[ůyí]|den|měsíc)"
_UNPLURAL = r"(?<![\d.,])\b1 (?:orders|visits|e-mails|support tickets|product categories|days|months|times)\b"
_ZERO_PCT = r"(?<![\d.,])0\s?%"


def audit_reasons(reasons: pd.DataFrame, rows: pd.DataFrame, catalog: ReasonCatalog, raises: Raises,
                  reference: pd.Series) -> dict[str, int]:
    """Counts of reason defects over a whole list, read as its user would: ``reasons`` holds ``reason_*`` and
    ``driver_*`` (from :func:`top_reasons` with ``with_drivers``), ``rows`` the same customers' model inputs.

    * ``contradicting``: a reason whose feature value lies on the side that lowers the score it explains;
    * ``not_a_fact``: a reason from a ``never`` template (trivia, another model's output) or no template;
    * ``same_fact_twice``: a row with two reasons of one group;
    * ``zero_count`` ("0 times", "0 orders"), ``negative_duration`` ("-35 days"), ``unpluralised`` ("1 orders"),
      ``zero_percent`` ("0%" for a share that is not zero: none is written, since a zero share is no reason).
    Every count should be 0."""
    counts = dict.fromkeys(AUDIT_COUNTS, 0)
    drivers = [c for c in reasons.columns if c.startswith("driver_")]
    texts = [c for c in reasons.columns if c.startswith("reason_")]
    groups: list[list[str]] = [[] for _ in range(len(reasons))]
    for column in drivers:
        names = reasons[column]
        for feature in names.dropna().unique():
            at = np.flatnonzero((names == feature).to_numpy())
            template = catalog.entry(feature)
            if template is None or template.risk == "never":
                counts["not_a_fact"] += len(at)
                continue
            values = rows[feature].iloc[at] if feature in rows.columns else pd.Series(np.nan, index=at)
            ok = agrees(template, values, float(reference.get(feature, np.nan)), raises)
            counts["contradicting"] += int((~ok).sum())
            if template.group is not None:
                for i in at:
                    groups[i].append(template.group)
    counts["same_fact_twice"] = sum(len(g) != len(set(g)) for g in groups)
    written = pd.concat([reasons[c] for c in texts]).dropna().astype(str) if texts else pd.Series(dtype=str)
    for key, pattern in (("zero_count", _ZERO_COUNT), ("negative_duration", _NEGATIVE),
                         ("unpluralised", _UNPLURAL), ("zero_percent", _ZERO_PCT)):
        counts[key] = int(written.str.contains(pattern, regex=True).sum())
    return counts
