"""Reason codes in plain language: the features that push a customer's score up, written from templates.

The templates live outside the code, in ``configs/reasons.yaml`` (one entry per model feature: the direction in
which it raises the churn risk, the group of drivers stating the same fact, and its texts per language; see the
file's header for the fields and formats). Numbers, money, durations and dates are formatted with Babel (CLDR) for
the customer's language and country: "143 days" in English, "143 dnů" in Czech, "Sep 14, 2026" or "14. 9. 2026".
A customer's language comes from their country (``country_languages``), English by default.
"""

from __future__ import annotations

import string
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import (format_currency, format_decimal, format_percent, get_minus_sign_symbol,
                           get_plus_sign_symbol)
from babel.units import format_unit
from typing import Literal

from pydantic import BaseModel, ConfigDict, PrivateAttr, model_validator

from common.yamlio import load_yaml_model
from common.resources import shipped

DEFAULT_REASONS = shipped("reasons.yaml")
FORMATS = ("days", "months", "int", "num", "pct", "signed", "money", "date", "yesno")
CHANNEL_PREFIX = "channel_share_"


PLURAL_CATEGORIES = ("zero", "one", "two", "few", "many", "other")


class Template(BaseModel):
    """One feature's reason: when it may be written (``risk``, ``neutral``, ``missing``), the group of drivers that
    state the same fact, and its variants per language (see the reasons file's header)."""

    model_config = ConfigDict(extra="forbid")

    risk: Literal["higher", "lower", "category", "never"]
    group: str | None = None
    neutral: float | None = None
    missing: Literal["risky"] | None = None
    text: dict[str, list[str]]
    zero: dict[str, str] | None = None  # per language, the text when the feature's value is exactly 0

    @property
    def directed(self) -> bool:
        return self.risk in ("higher", "lower")


class ReasonCatalog(BaseModel):
    """``configs/reasons.yaml``: templates per feature and language, value words, count nouns, the language per
    country."""

    model_config = ConfigDict(extra="forbid")

    default_language: str = "en"
    country_languages: dict[str, str] = {}
    values: dict[str, dict[str, dict[str, str]]] = {}
    nouns: dict[str, dict[str, dict[str, str]]] = {}
    templates: dict[str, Template]
    _formatters: dict = PrivateAttr(default_factory=dict)  # one formatter per (language, country, currency)

    @model_validator(mode="after")
    def _consistent(self) -> "ReasonCatalog":
        languages = self.languages
        for noun, by_language in self.nouns.items():
            missing = languages - set(by_language)
            if missing:
                raise ValueError(f"noun {noun!r} has no forms in {sorted(missing)}")
            for language, forms in by_language.items():
                unknown = set(forms) - set(PLURAL_CATEGORIES)
                if unknown or "other" not in forms:
                    raise ValueError(f"noun {noun!r} ({language}): give CLDR plural forms "
                                     f"({', '.join(PLURAL_CATEGORIES)}), at least 'other'; got {sorted(forms)}")
                needed = set(Locale.parse(language).plural_form.tags) - set(forms)
                if needed:
                    raise ValueError(f"noun {noun!r} ({language}) lacks the plural form(s) {sorted(needed)} of "
                                     f"that language")
        for feature, template in self.templates.items():
            by_language = template.text
            missing = languages - set(by_language)
            if missing:
                raise ValueError(f"template {feature!r} has no text in {sorted(missing)}")
            if template.zero is not None and languages - set(template.zero):
                raise ValueError(f"template {feature!r} has no zero text in {sorted(languages - set(template.zero))}")
            for language, variants in by_language.items():
                if not variants:
                    raise ValueError(f"template {feature!r} ({language}) is empty")
                for text in variants:
                    for _, field, spec in _pieces(text):
                        if field is not None and spec and spec not in FORMATS and spec not in self.nouns:
                            raise ValueError(f"template {feature!r} ({language}): unknown format {spec!r} in "
                                             f"{{{field}:{spec}}}; use one of {FORMATS} or a noun of `nouns`")
        for language in languages:
            try:
                Locale.parse(language)
            except (UnknownLocaleError, ValueError):
                raise ValueError(f"unknown language {language!r}; use a CLDR code such as 'en' or 'cs'") from None
        return self

    @property
    def languages(self) -> set[str]:
        return {self.default_language, *self.country_languages.values()}

    def entry(self, feature: str) -> Template | None:
        """The template of ``feature`` (``channel_share_*`` for every channel share), or None."""
        if feature in self.templates:
            return self.templates[feature]
        if feature.startswith(CHANNEL_PREFIX):
            return self.templates.get(CHANNEL_PREFIX + "*")
        return None

    def template(self, feature: str) -> dict[str, list[str]] | None:
        """The texts of ``feature`` per language, or None."""
        entry = self.entry(feature)
        return entry.text if entry is not None else None

    def language_for(self, country: str | None) -> str:
        return self.country_languages.get(country or "", self.default_language)


@lru_cache(maxsize=8)
def load_reasons(path: str | Path = DEFAULT_REASONS) -> ReasonCatalog:
    """Read and check the reasons file (a clear error naming the file and the problem)."""
    return load_yaml_model(path, ReasonCatalog, "reasons")


@lru_cache(maxsize=1024)
def _locale(language: str, country: str | None) -> Locale:
    """The formatting locale: ``cs_CZ`` when the country's main language is the text's (formats differ by country:
    en_GB vs en_US), else the language alone (an English text for a German customer keeps English separators)."""
    if country:
        try:
            if Locale.parse(f"und_{country}").language == language:
                return Locale.parse(f"{language}_{country}")
        except (UnknownLocaleError, ValueError):
            pass
    return Locale.parse(language)


class _Formatter(string.Formatter):
    def __init__(self, catalog: ReasonCatalog, language: str, locale: Locale, currency: str):
        self.catalog, self.language, self.locale, self.currency = catalog, language, locale, currency

    def format_field(self, value, spec: str) -> str:
        loc = self.locale
        if spec == "days":
            return _duration(int(round(float(value))), "duration-day", loc)
        if spec == "months":
            return _duration(int(round(float(value))), "duration-month", loc)
        if spec == "int":
            return format_decimal(int(round(float(value))), locale=loc)
        if spec == "num":
            return format_decimal(float(value), format="#,##0.##", locale=loc)
        if spec == "pct":
            return _share(float(value), loc)
        if spec == "signed":  # the locale's own signs: Hebrew's carry a left-to-right mark, so "-62%" stays whole
            sign = get_minus_sign_symbol(loc) if float(value) < 0 else get_plus_sign_symbol(loc)
            return sign + format_percent(abs(float(value)), format=_percent_pattern(loc), locale=loc)
        if spec == "money":
            return format_currency(float(value), self.currency, locale=loc)
        if spec == "date":
            return format_date(value, format="medium", locale=loc)
        if spec == "yesno":
            return self._word("yesno", "true" if bool(value) else "false")
        if spec in self.catalog.nouns:
            n = int(round(float(value)))
            forms = self.catalog.nouns[spec][self.language]
            form = forms["zero"] if n == 0 and "zero" in forms else forms.get(loc.plural_form(n), forms["other"])
            return form.format(n=format_decimal(n, locale=loc))
        return str(value)

    def _word(self, field: str, raw: str) -> str:
        return self.catalog.values.get(field, {}).get(self.language, {}).get(raw, raw)

    def get_value(self, key, args, kwargs):
        value = kwargs[key]
        if isinstance(value, str) and key in self.catalog.values:
            return self._word(key, value)
        return value


def _duration(n: int, unit: str, loc: Locale) -> str:
    """``n`` days or months in the locale's long form ("143 days", "143 dnů"); CLDR gives Japanese only the short
    form ("143 日"), which Babel does not fall back to, so the short one is used when the long one is missing."""
    text = format_unit(n, unit, length="long", locale=loc)
    return format_unit(n, unit, length="short", locale=loc) if text.endswith(unit) else text


def _share(value: float, loc: Locale) -> str:
    """A share as a percentage that never reads 0% or 100% when it is neither: whole percent, else one decimal
    ("0.4%"), else "<0.1%" / ">99.9%"."""
    if not (0 < value < 0.005 or 0.995 < value < 1):
        return format_percent(value, locale=loc)
    one_decimal = _percent_pattern(loc).replace("#,##0", "#,##0.0", 1)
    if 0.0005 <= value <= 0.9995:
        return format_percent(value, format=one_decimal, locale=loc)
    bound = 0.001 if value < 0.5 else 0.999
    return ("<" if value < 0.5 else ">") + format_percent(bound, format=one_decimal, locale=loc)


def _percent_pattern(loc: Locale) -> str:
    """The locale's percent pattern ("#,##0%", "#,##0\u00a0%" in German), so that a signed change or a share with
    a decimal is spaced as the locale's whole percentages are."""
    return loc.percent_formats[None].pattern


def _formatter(catalog: ReasonCatalog, language: str, country: str | None, currency: str) -> _Formatter:
    key = (language, country if isinstance(country, str) else None, currency)
    if key not in catalog._formatters:
        catalog._formatters[key] = _Formatter(catalog, language, _locale(language, key[1]), currency)
    return catalog._formatters[key]


# derived change fields (trend - 1) and the trend feature each comes from
CHANGES = {"spend_change_90d": "spend_trend_90d", "orders_change_90d": "orders_trend_90d",
           "web_change_30d": "web_sessions_trend_30d", "email_open_change_90d": "email_open_trend_90d"}


def _fields(rows: pd.DataFrame, names: tuple[str, ...], feature: str, churn_days: int) -> dict[str, pd.Series]:
    """The columns ``names`` of ``rows``, derived where the templates need it (see the reasons file's header); a
    field ``rows`` cannot give is absent."""
    index = rows.index
    fields: dict[str, pd.Series] = {}
    for name in names:
        if name == "last_nps_date" and {"days_since_last_nps", "cutoff"} <= set(rows.columns):
            days = pd.to_numeric(rows["days_since_last_nps"], errors="coerce")
            known = days.notna() & rows["cutoff"].notna()
            dates = pd.to_datetime(rows["cutoff"]) - pd.to_timedelta(days.where(known, 0).round(), unit="D")
            fields[name] = pd.Series([d.date() for d in dates], index=index, dtype="object").where(known, None)
        elif name in CHANGES and CHANGES[name] in rows.columns:
            trend = pd.to_numeric(rows[CHANGES[name]], errors="coerce").astype("float64")
            fields[name] = (trend - 1).where(np.isfinite(trend))
        elif name == "channel" and feature.startswith(CHANNEL_PREFIX):
            fields[name] = pd.Series(feature[len(CHANNEL_PREFIX):], index=index, dtype="object")
        elif name == "channel_share" and feature.startswith(CHANNEL_PREFIX) and feature in rows.columns:
            fields[name] = rows[feature]
        elif name == "churn_horizon":
            fields[name] = pd.Series(churn_days, index=index)
        elif name in rows.columns:
            fields[name] = rows[name]
    return fields


def _format_column(formatter: _Formatter, name: str, spec: str, values: pd.Series) -> list[str]:
    """``values`` (all present) formatted as the template field ``{name:spec}``, each distinct value once."""
    cache: dict = {}
    out = []
    for value in values.tolist():
        key = (type(value), value)
        text = cache.get(key)
        if text is None:
            text = cache[key] = formatter.format_field(formatter.get_value(name, (), {name: value}), spec)
        out.append(text)
    return out


def render_rows(catalog: ReasonCatalog, feature: str, rows: pd.DataFrame, currency: str,
                churn_days: int = 90) -> pd.Series:
    """The reason for ``feature`` for every row of ``rows``, in each customer's language (their ``country``): the
    first variant whose fields all have a value; None where no variant can be written (e.g. every field is
    missing). Rows are handled by language and country at once and each distinct value is formatted once, so a
    long list costs little more than its distinct values."""
    entry = catalog.entry(feature)
    if entry is None:
        raise KeyError(f"no reason template for feature {feature!r} in the reasons file; add one")
    by_language = entry.text
    is_zero = np.zeros(len(rows), bool)
    if entry.zero is not None and feature in rows.columns:
        is_zero = (pd.to_numeric(rows[feature], errors="coerce") == 0).fillna(False).to_numpy(dtype=bool)
    # a numpy array, not a Series: assigning into an object Series turns the None of the rows left out into NaN
    out = np.full(len(rows), None, dtype="object")
    countries = (rows["country"].astype("object").fillna("") if "country" in rows.columns
                 else pd.Series("", index=rows.index, dtype="object"))
    texts = {t for variants in by_language.values() for t in variants}
    names = tuple(sorted({n for t in texts for n in placeholders(t)}))
    fields = _fields(rows, names, feature, churn_days)
    present = {n: fields[n].notna().to_numpy() if n in fields else np.zeros(len(rows), bool) for n in names}
    positions = pd.Series(np.arange(len(rows)), index=rows.index)
    for country, where in positions.groupby(countries, sort=False):
        country = country or None
        language = catalog.language_for(country)
        formatter = _formatter(catalog, language, country, currency)
        remaining = where.to_numpy()
        if is_zero[remaining].any():  # "Has never returned an order" rather than "Returned 0% of their orders"
            zero = remaining[is_zero[remaining]]
            text = entry.zero[language]
            out[zero] = [text[:1].upper() + text[1:]] * len(zero)
            remaining = remaining[~is_zero[remaining]]
        for text in by_language[language]:
            needed = placeholders(text)
            ok = np.ones(len(remaining), bool)
            for n in needed:
                ok &= present[n][remaining]
            chosen, remaining = remaining[ok], remaining[~ok]
            if len(chosen):
                out[chosen] = _render_text(formatter, text, fields, chosen)
            if not len(remaining):
                break
    return pd.Series(out, index=rows.index, dtype="object")


def _render_text(formatter: _Formatter, text: str, fields: dict[str, pd.Series], at: np.ndarray) -> list[str]:
    parts: list[list[str] | str] = []
    for literal, name, spec in _pieces(text):
        if literal:
            parts.append(literal)
        if name:
            parts.append(_format_column(formatter, name, spec, fields[name].iloc[at]))
    columns = [p if isinstance(p, list) else [p] * len(at) for p in parts]
    texts = ["".join(pieces) for pieces in zip(*columns)] if columns else [""] * len(at)
    return [t[:1].upper() + t[1:] for t in texts]  # a reason is a sentence ("No orders ...")


def render(catalog: ReasonCatalog, feature: str, row: dict, currency: str, churn_days: int = 90) -> str | None:
    """The reason for ``feature`` for one customer (``row``: their snapshot values); see :func:`render_rows`."""
    return render_rows(catalog, feature, pd.DataFrame([row]), currency, churn_days).iloc[0]


@lru_cache(maxsize=4096)
def _pieces(text: str) -> tuple[tuple[str, str | None, str], ...]:
    """A template text parsed once: (literal text, field name or None, format spec) pieces."""
    return tuple((literal, name, spec or "") for literal, name, spec, _ in string.Formatter().parse(text))


def placeholders(text: str) -> tuple[str, ...]:
    """The field names a template text uses (parsed once per text, not once per customer)."""
    return tuple(name for _, name, _ in _pieces(text) if name)


def unwritable(catalog: ReasonCatalog, features: set[str], columns: set[str]) -> list[str]:
    """The model ``features`` whose reason cannot be written for anyone: no template, or every variant of a
    language names a field outside ``columns`` (the snapshot's columns; the derived fields of the file's header
    count when their source column is there). Such a driver is left out of the reasons."""
    derived = {"last_nps_date": "days_since_last_nps", **CHANGES}
    fixed = {"churn_horizon", "channel", "channel_share"}

    def known(name: str) -> bool:
        return name in columns or name in fixed or (name in derived and derived[name] in columns)

    lines = []
    for feature in sorted(features):
        entry = catalog.entry(feature)
        if entry is None:
            lines.append(f"no reason template for model feature {feature!r}: add one to the reasons file")
            continue
        if entry.risk == "never":
            continue  # never a reason, so nothing is lost
        for language, variants in sorted(entry.text.items()):
            if not any(all(known(n) for n in placeholders(t)) for t in variants):
                absent = sorted({n for t in variants for n in placeholders(t) if not known(n)})
                lines.append(f"the {language} reason for {feature!r} can never be written: no "
                             f"{', '.join(absent)} in this data")
    return lines
