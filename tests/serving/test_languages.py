"""Every market's language (issue 18): every template, zero text, noun, value word, action and offer exists in every
language of the shipped files and renders with sample values; texts worked out by hand in the new languages; one
row in one language (the audit that counts the rows that are not); right-to-left Hebrew in XLSX exports."""

from __future__ import annotations

import datetime as dt
import io
import re
import string

import pandas as pd
import pytest
from babel import Locale

from serving.explain import audit_reasons, language_mismatches
from serving.reasons import DEFAULT_REASONS, load_reasons, render
from serving.targeting import DEFAULT_PLAYBOOKS, Playbook, assign_playbooks, load_playbooks

CATALOG = load_reasons(DEFAULT_REASONS)
PLAYBOOKS = load_playbooks(DEFAULT_PLAYBOOKS)
CUTOFF = dt.date(2026, 11, 1)
MARKETS = {"US": "en", "GB": "en", "CA": "en", "DE": "de", "FR": "fr", "CZ": "cs", "GR": "el", "JP": "ja",
           "SI": "sl", "IL": "he"}
CURRENCY = {"US": "USD", "GB": "GBP", "CA": "CAD", "DE": "EUR", "FR": "EUR", "CZ": "CZK", "GR": "EUR", "JP": "JPY",
            "SI": "EUR", "IL": "ILS"}
# a letter every text of the language contains (its script), for the languages not written in Latin letters
SCRIPT = {"el": r"[\u0370-\u03ff]", "ja": r"[\u3040-\u30ff\u4e00-\u9fff]", "he": r"[\u0590-\u05ff]"}
SAMPLE = {"days": 21, "months": 5, "int": 3, "num": 4.73, "pct": 0.35, "signed": -0.62, "money": 1234.56,
          "date": dt.date(2026, 9, 14), "yesno": True}
DERIVED = {"spend_change_90d": "spend_trend_90d", "orders_change_90d": "orders_trend_90d",
           "web_change_30d": "web_sessions_trend_30d", "email_open_change_90d": "email_open_trend_90d"}


def test_every_generated_market_has_its_language():
    from features.synthetic.params import COUNTRIES, COUNTRY_CURRENCY

    assert set(COUNTRIES) == set(MARKETS) and {COUNTRY_CURRENCY[c] for c in ("SI", "IL")} == {"EUR", "ILS"}
    assert {c: CATALOG.language_for(c) for c in COUNTRIES} == MARKETS
    assert CATALOG.languages == set(MARKETS.values())


def test_every_value_word_exists_in_every_language():
    """A category's raw value (an NPS group, an RFM segment) is written in the row's language, never in English
    inside a German sentence."""
    from features.definitions import RFM_GRID

    segments = {name for row in RFM_GRID.values() for name in row}
    assert set(CATALOG.values["rfm_segment"]["en"]) == segments
    for field, by_language in CATALOG.values.items():
        assert set(by_language) == CATALOG.languages, field
        for language, words in by_language.items():
            assert set(words) == set(by_language["en"]), (field, language)
            if language in SCRIPT:
                assert all(re.search(SCRIPT[language], w) for w in words.values()), (field, language)
    text = render(CATALOG, "rfm_segment", {"country": "DE", "cutoff": CUTOFF, "rfm_segment": "Lost"}, "EUR")
    assert text == "Im RFM-Segment „Verloren“"


def test_every_action_and_offer_exists_in_every_language():
    assert PLAYBOOKS.untranslated(CATALOG.languages) == []
    for book in PLAYBOOKS.playbooks:
        for language in CATALOG.languages:
            action, offer = book.text("action", language), book.text("offer", language)
            assert action and offer and action != offer
            if language in SCRIPT:
                assert re.search(SCRIPT[language], action) and re.search(SCRIPT[language], offer), (book.name, language)
            if language != "en":  # a translation, not the English left in place
                assert action != book.text("action", "en"), (book.name, language)


def _sample_row(feature: str, text: str, country: str) -> tuple[str, dict]:
    real = feature.replace("*", "web")
    row = {"cutoff": CUTOFF, real: 3, "country": country}  # the feature `country` is the country itself
    for _, name, spec, _ in string.Formatter().parse(text):
        if not name or name in ("channel", "churn_horizon", "country"):
            continue
        value = SAMPLE.get(spec, 2 if spec in CATALOG.nouns else "detractor" if name == "nps_group" else 2)
        if name in DERIVED:
            row[DERIVED[name]] = value + 1
        elif name == "last_nps_date":
            row["days_since_last_nps"] = 48
        elif name == "channel_share":
            row[real] = value
        elif name != "country":
            row[name] = value
    return real, {**row, "country": country}


@pytest.mark.parametrize("country", sorted(set(MARKETS) - {"GB", "CA"}))
def test_every_template_renders_in_the_language_of_every_market(country):
    language = MARKETS[country]
    for feature, entry in CATALOG.templates.items():
        for variant in entry.text[language]:
            real, row = _sample_row(feature, variant, country)
            text = render(CATALOG, real, row, CURRENCY[country])
            assert text, (feature, language, variant)
            assert "{" not in text and "duration-" not in text and "None" not in text, (feature, language, text)
            assert text[0] == text[0].upper(), text
            if language in SCRIPT:
                assert re.search(SCRIPT[language], text), (feature, language, text)
        if entry.zero is not None:
            text = render(CATALOG, feature, {"country": country, "cutoff": CUTOFF, feature: 0}, CURRENCY[country])
            assert text == entry.zero[language][:1].upper() + entry.zero[language][1:]
    for noun, by_language in CATALOG.nouns.items():
        assert "zero" in by_language[language], (noun, language)  # "keine Bestellungen", not "0 Bestellungen"


@pytest.mark.parametrize("country, feature, row, expected", [
    ("DE", "days_since_last_purchase", {"days_since_last_purchase": 143}, "143 Tage"),
    ("SI", "days_since_last_purchase", {"days_since_last_purchase": 2}, "2 dneva"),
    ("SI", "days_since_last_purchase", {"days_since_last_purchase": 3}, "3 dni"),
    ("IL", "days_since_last_purchase", {"days_since_last_purchase": 2}, "יומיים"),
    ("JP", "days_since_last_purchase", {"days_since_last_purchase": 143}, "143 日"),
    ("GR", "days_since_last_purchase", {"days_since_last_purchase": 1}, "1 ημέρα"),
    ("IL", "net_spend", {"net_spend": 1234.5}, "\u200f1,234.50\u00a0\u200f₪"),
    ("JP", "net_spend", {"net_spend": 1234.5}, "￥1,234"),
    ("FR", "net_spend", {"net_spend": 1234.5}, "1\u202f234,50\u00a0€"),
])
def test_numbers_durations_and_money_follow_the_market_s_cldr_rules(country, feature, row, expected):
    """Worked out from CLDR by hand: Slovenian has a dual ("2 dneva"), Hebrew a word for two days, Japanese the
    short form and no decimals for yen, Hebrew puts the shekel sign after the amount with right-to-left marks."""
    text = render(CATALOG, feature, {"country": country, "cutoff": CUTOFF, **row}, CURRENCY[country])
    assert expected in text, text


def test_nouns_take_each_language_s_plural_forms():
    def orders(country, n):
        return render(CATALOG, "orders", {"country": country, "cutoff": CUTOFF, "orders": n}, "EUR")

    sl = {n: orders("SI", n) for n in (1, 2, 3, 5, 101, 102)}
    forms = CATALOG.nouns["orders"]["sl"]
    assert sl[1].startswith(forms["one"].format(n=1)[:1].upper()) or forms["one"].format(n="1") in sl[1]
    for n, category in ((1, "one"), (2, "two"), (3, "few"), (5, "other"), (101, "one"), (102, "two")):
        assert Locale.parse("sl").plural_form(n) == category
        word = forms[category].format(n=n)
        assert word in sl[n] or word[:1].upper() + word[1:] in sl[n], (n, sl[n])
    he = CATALOG.nouns["orders"]["he"]  # a dual only for some nouns (days: "יומיים"); orders take the plural
    assert {"one", "two", "other"} <= set(he) and he["one"] != he["other"]


def _published(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "country", "language", "reason_1", "reason_2", "reason_3",
                                       "recommended_action", "offer"])


def test_a_row_with_a_text_of_another_language_is_counted():
    def reason(country, feature, **values):
        return render(CATALOG, feature, {"country": country, "cutoff": CUTOFF, **values}, "EUR")

    book = PLAYBOOKS.for_list("at_risk")[-1]
    good_de = {"customer_id": "a", "country": "DE", "language": "de",
               "reason_1": reason("DE", "days_since_last_purchase", days_since_last_purchase=143),
               "reason_2": reason("DE", "orders", orders=1), "reason_3": None,
               "recommended_action": book.text("action", "de"), "offer": book.text("offer", "de")}
    good_he = {**good_de, "customer_id": "b", "country": "IL", "language": "he",
               "reason_1": reason("IL", "days_since_last_purchase", days_since_last_purchase=2), "reason_2": None,
               "recommended_action": book.text("action", "he"), "offer": book.text("offer", "he")}
    english_reason = {**good_de, "customer_id": "c",
                      "reason_2": reason("US", "orders", orders=1)}
    english_action = {**good_de, "customer_id": "d", "recommended_action": book.text("action", "en")}
    frame = _published([good_de, good_he, english_reason, english_action])
    assert language_mismatches(frame, CATALOG, PLAYBOOKS) == 2
    assert language_mismatches(frame.iloc[:2], CATALOG, PLAYBOOKS) == 0
    assert language_mismatches(frame.iloc[:3], CATALOG) == 1  # without playbooks only the reasons are read


def test_the_audit_reads_every_language_s_nouns():
    reasons = pd.DataFrame({"reason_1": ["0 Bestellungen in den letzten 30 Tagen", "1 objednávky celkem",
                                         CATALOG.nouns["orders"]["de"]["one"].format(n=1)]})
    rows = pd.DataFrame(index=range(3))
    counts = audit_reasons(reasons, rows, CATALOG, "churn", pd.Series(dtype=float))
    assert counts["zero_count"] == 1 and counts["unpluralised"] == 1, counts


def test_actions_and_offers_are_in_each_row_s_language():
    books = [Playbook(name="call", list="at_risk", action={"en": "Call", "de": "Anrufen"},
                      offer={"en": "none", "de": "keins"}, cost_per_contact=1, success_rate=0.1),
             Playbook(name="mail", list="at_risk", action="E-mail", cost_per_contact=0, success_rate=0.1)]
    frame = pd.DataFrame({"x": [1, 1, 1]})
    chosen = assign_playbooks(frame, books, pd.Series(["de", "en", "fr"]))
    assert chosen["recommended_action"].tolist() == ["Anrufen", "Call", "Call"]  # fr: the default language's text
    assert chosen["offer"].tolist() == ["keins", "none", "none"]
    assert chosen["playbook"].tolist() == ["call"] * 3
    assert Playbook(name="m", list="at_risk", action="E-mail", cost_per_contact=0, success_rate=0.1).languages() is None


def test_hebrew_rows_read_right_to_left_in_an_xlsx_export():
    from openpyxl import load_workbook

    from common.config import ExportTarget
    from serving.exports import export_files

    frame = pd.DataFrame({"customer_id": ["a", "b", "c"], "language": ["en", "he", "de"],
                          "reason_1": ["No purchase for 2 days", "אין רכישה כבר יומיים", "Seit 2 Tagen"],
                          "churn_probability": [0.5, 0.6, 0.7], "contact_group": ["treatment", "treatment", "control"]})
    files = export_files("at_risk", frame, {"x": ExportTarget(format="xlsx", groups=["treatment"])})
    sheet = load_workbook(io.BytesIO(files["exports/x.xlsx"]))["list"]
    orders = {row[0].value: {c.column_letter: c.alignment.readingOrder for c in row if isinstance(c.value, str)}
              for row in sheet.iter_rows(min_row=2)}
    assert set(orders) == {"a", "b"}  # the control row is not exported
    assert set(orders["b"].values()) == {2} and set(orders["a"].values()) == {0}
