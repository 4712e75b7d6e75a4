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

import re
from functools import lru_cache
from typing import Literal

import numpy as np
import pandas as pd

from models.training import ScoringModel
from serving.reasons import ReasonCatalog, Template, _pieces, render_rows

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
                with_drivers: bool = False, with_contributions: bool = False) -> pd.DataFrame:
    """``reason_1..k`` per row: of the features that raise the model's score (positive contributions), largest
    first, those that are facts agreeing with the score (:func:`agrees`), at most one per group, written in the
    customer's language. A driver whose text cannot be written (its fields are missing) or repeats an earlier text
    is skipped; fewer such drivers leave the rest empty. ``reference`` is each feature's median over the
    population (default: over ``rows``); ``with_drivers`` adds ``driver_1..k``, the feature behind each reason;
    ``with_contributions`` adds ``shap_contributions`` (:func:`contributions_json`: what the profile's waterfall
    draws).

    ``rows`` needs the model's features, plus ``cutoff`` and ``country`` for dates and language.
    """
    columns = (reason_columns(k) + (driver_columns(k) if with_drivers else [])
               + ([CONTRIBUTIONS] if with_contributions else []))
    if rows.empty:
        return pd.DataFrame(columns=columns, index=rows.index, dtype="object")
    features = model.features
    reference = reference_values(rows, features) if reference is None else reference
    templates = [catalog.entry(f) for f in features]
    explained = model.explain(rows)
    contributions = explained[features].to_numpy()
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
    out = pd.DataFrame(table, columns=[c for c in columns if c != CONTRIBUTIONS], index=rows.index, dtype="object")
    if with_contributions:
        out[CONTRIBUTIONS] = contributions_json(explained, rows, features)
    return out


CONTRIBUTIONS = "shap_contributions"
WATERFALL_FEATURES = 8


def contributions_json(explained: pd.DataFrame, rows: pd.DataFrame, features: list[str],
                       top: int = WATERFALL_FEATURES) -> list[str]:
    """Per row, a JSON text of the model's TreeSHAP contributions in raw-score units (log-odds for a classifier):
    ``{"base": b, "features": [[feature, value, contribution], ...], "other": o}`` with the ``top`` largest by
    size, so that ``base + sum(contributions) + other`` is the row's raw score."""
    import json

    values = explained[features].to_numpy()
    base = explained["base_value"].to_numpy()
    order = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :top]
    inputs = {f: rows[f].tolist() if f in rows.columns else [None] * len(rows) for f in features}

    def plain(value):
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            return None
        if isinstance(value, (np.integer, np.floating, np.bool_)):
            value = value.item()
        if isinstance(value, float):
            return round(value, 4) if np.isfinite(value) else None
        return value if isinstance(value, (int, bool, str)) else str(value)

    out = []
    for i in range(len(rows)):
        chosen = order[i]
        rest = float(values[i].sum() - values[i, chosen].sum())
        out.append(json.dumps({"base": round(float(base[i]), 6),
                               "features": [[features[j], plain(inputs[features[j]][i]), round(float(values[i, j]), 6)]
                                            for j in chosen],
                               "other": round(rest, 6)}, ensure_ascii=False, allow_nan=False))
    return out


# ---- the whole-list check --------------------------------------------------------------------------------------

AUDIT_COUNTS = ("contradicting", "not_a_fact", "same_fact_twice", "zero_count", "negative_duration",
                "unpluralised", "zero_percent", "mixed_language")
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
      ``zero_percent`` ("0%" for a share that is not zero: none is written, since a zero share is no reason); the
      count nouns of every language of the catalogue are checked too ("0 Bestellungen", "1 objednávky");
    * ``mixed_language`` is counted by :func:`language_mismatches` (it needs the published row and the playbooks).
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
    zero_count, unpluralised = _noun_patterns(catalog)
    negative = _negative_duration(tuple(sorted(catalog.languages)))
    for key, patterns in (("zero_count", (_ZERO_COUNT, zero_count)), ("negative_duration", (_NEGATIVE, negative)),
                          ("unpluralised", (_UNPLURAL, unpluralised)), ("zero_percent", (_ZERO_PCT,))):
        pattern = "|".join(f"(?:{p})" for p in patterns if p)
        counts[key] = int(written.str.contains(pattern, regex=True).sum())
    return counts


def _noun_patterns(catalog: ReasonCatalog) -> tuple[str | None, str | None]:
    """Regexes of a bare "0 <noun>" (every noun has a `zero` text or should read it so) and of "1 <noun>" in a form
    other than the language's form for one, from the catalogue's own nouns."""
    from babel import Locale

    zero, one, right_for_one = set(), set(), set()
    for by_language in catalog.nouns.values():
        for language, forms in by_language.items():
            right = forms.get(Locale.parse(language).plural_form(1), forms["other"])
            right_for_one.add(re.escape(right[len("{n}"):]))
            for category, form in forms.items():
                if category == "zero" or not form.startswith("{n}"):
                    continue
                word = re.escape(form[len("{n}"):])
                if "zero" in forms:
                    zero.add(word)
                one.add(word)
    one -= right_for_one  # a form right for 1 in one language is not flagged in another
    lead = r"(?<![\d.,])"  # "10 orders" is not "0 orders"
    return (lead + r"0(?:" + "|".join(sorted(zero)) + r")(?!\w)" if zero else None,
            lead + r"1(?:" + "|".join(sorted(one)) + r")(?!\w)" if one else None)


@lru_cache(maxsize=16)
def _negative_duration(languages: tuple[str, ...]) -> str:
    """A regex of a negative number of days or months in any of ``languages`` ("-35 Tage", "-35 日")."""
    from babel import Locale

    from serving.reasons import _duration

    words = set()
    for language in languages:
        for unit in ("duration-day", "duration-month"):
            for n in (1, 2, 3, 5, 11, 21, 101):
                words.add(re.escape(_duration(n, unit, Locale.parse(language)).replace(str(n), "", 1).strip()))
    return r"-\d[\d,.\s]*(?:" + "|".join(sorted(w for w in words if w)) + ")"


@lru_cache(maxsize=64)
def _language_pattern(texts: tuple[str, ...]) -> re.Pattern:
    regexes = []
    for text in texts:
        text = text[:1].lower() + text[1:]
        regexes.append("".join(re.escape(literal) + (".+?" if name else "") for literal, name, _ in _pieces(text)))
    return re.compile("|".join(f"(?:{r})" for r in regexes), re.DOTALL)


def language_mismatches(frame: pd.DataFrame, catalog: ReasonCatalog, playbooks=None) -> int:
    """The published rows (``frame``: ``language``, ``reason_*``, ``recommended_action``, ``offer``) whose texts are
    not all in the row's language: a reason no template of that language can have written, or an action or
    offer that is not that language's text of a playbook (``playbooks``: :class:`serving.targeting.Playbooks`)."""
    if "language" not in frame.columns or not len(frame):
        return 0
    reasons = [c for c in frame.columns if c.startswith("reason_")]
    bad = np.zeros(len(frame), bool)
    for language, at in frame.groupby(frame["language"].astype(str), sort=False).indices.items():
        texts = tuple(sorted({t for e in catalog.templates.values() for t in e.text.get(language, [])}
                             | {e.zero[language] for e in catalog.templates.values()
                                if e.zero and language in e.zero}))
        pattern = _language_pattern(texts) if texts else None
        for column in reasons:
            values = frame[column].iloc[at]
            known = values.notna().to_numpy()
            written = values[known].astype(str)
            distinct = {v: pattern is not None and pattern.fullmatch(v[:1].lower() + v[1:]) is not None
                        for v in written.unique()}
            bad[at[known]] |= ~written.map(distinct).to_numpy(dtype=bool)
        if playbooks is not None:
            default = catalog.default_language
            for column, field in (("recommended_action", "action"), ("offer", "offer")):
                if column in frame.columns:
                    allowed = {b.text(field, language, default) for b in playbooks.playbooks}
                    bad[at] |= ~frame[column].iloc[at].isin(allowed).to_numpy()
    return int(bad.sum())
