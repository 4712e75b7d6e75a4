"""Batch scoring: the champions applied to one point-in-time snapshot, turned into the at-risk and win-back lists.

The snapshot is the state of every customer as of the run's cutoff (rows dated before it); nothing here reads the
clock. A customer is *active* when their last order is at most ``activity_window_days`` before the cutoff (the
same rule as the labels in :mod:`features.definitions`), otherwise *lapsed*.

Per customer (definitions used in both lists):

* ``churn_probability`` (active): the churn champion's calibrated P(no order in the next ``churn_days``);
* ``reactivation_probability`` (lapsed): the win-back champion's calibrated P(an order in the next ``churn_days``);
* ``predicted_cltv``: the CLTV champion's expected net revenue over the next ``cltv_days`` (base currency), its trees'
  shares of the cutoff's BG/NBD x Gamma-Gamma total (see :func:`models.training.fit_cltv`);
* ``value_at_risk`` (active) = ``churn_probability x predicted_cltv``: the revenue expected to be lost;
* ``value_if_reactivated`` (lapsed): what the customer would spend over ``cltv_days`` if they were still buying,
  BG/NBD's posterior mean purchase rate ``(r + x) / (alpha + T)`` times ``cltv_days`` times Gamma-Gamma's expected
  spend per order (Fader, Hardie & Lee 2005; Fader & Hardie 2013); ``expected_winback_value`` =
  ``reactivation_probability x value_if_reactivated``;
* ``p_alive``: BG/NBD's probability that the customer is still "alive" (will buy again at some point) given their
  frequency, recency and tenure at the cutoff (Fader, Hardie & Lee 2005), from the cutoff's one fit; a feature of
  the churn and win-back models, published beside their probabilities for the profile;
* ``expected_next_order_days`` (active): the next-order champion's median days to the next order *if the customer
  orders within* ``churn_days`` (it is trained and evaluated on those who did); ``expected_next_order_date`` =
  cutoff + those days rounded to the nearest whole day (0: on the cutoff day), or, without a next-order champion,
  cutoff + BG/NBD's median time to the next order given alive, rounded the same way (see
  :func:`models.training.btyd_predictions`); the backtest scores both estimates as these whole days. The date
  assumes the customer still buys, so a customer more likely gone than not (``churn_probability`` at or above
  ``scoring.next_order_date_max_churn``, 0.5) gets none: null, not a date nobody should wait for.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from dataclasses import dataclass

import numpy as np
import pandas as pd

from common.config import HorizonsConfig
from models.catalog import ACTIVE, MODELS
from models.training import BTYD_FEATURES, BTYD_LEVEL, ScoringModel, btyd_predictions
from serving.lists import LISTS


@dataclass(frozen=True)
class Champion:
    """A registered model version in use."""

    name: str
    version: str
    model: ScoringModel


def active_mask(snapshot: pd.DataFrame, activity_window_days: int) -> pd.Series:
    """True for customers with an order at most ``activity_window_days`` days before the cutoff (the catalogue's
    active population)."""
    return ACTIVE.mask(snapshot, HorizonsConfig(activity_window_days=activity_window_days))


def model_inputs(snapshot: pd.DataFrame, horizons: HorizonsConfig, fitted=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The models' inputs of a one-cutoff ``snapshot``: its rows sorted by ``customer_id`` with the BG/NBD
    features and the CLTV model's level, and the BG/NBD predictions themselves (same rows). BG/NBD is fitted on
    ``snapshot`` unless ``fitted`` (:func:`models.training.btyd_fit` of the whole population) is given, so that a
    part of the population gets the values the whole would give it."""
    snap = snapshot.sort_values("customer_id").reset_index(drop=True)
    btyd = btyd_predictions(snap, horizons.churn_days, horizons.cltv_days, fitted)  # one BG/NBD + Gamma-Gamma fit
    snap = snap.assign(**{c: btyd[c] for c in BTYD_FEATURES},  # the models' BG/NBD features
                       **{BTYD_LEVEL: btyd["expected_cltv"]})  # the CLTV model's level at this cutoff
    return snap, btyd


def score_snapshot(snapshot: pd.DataFrame, champions: dict[str, Champion], horizons: HorizonsConfig,
                   with_inputs: bool = False, next_order_max_churn: float = 0.5, fitted=None,
                   levels: dict[str, float] | None = None):
    """Score every customer of a one-cutoff ``snapshot`` (no label columns needed).

    ``champions`` maps model names of the catalogue to their versions in use; each model scores its population
    into its ``score_column`` (empty elsewhere, and everywhere for a model without a champion: one that stepped
    aside). Returns one row per customer, sorted by ``customer_id``, with ``is_active``, the scores and the values
    described in the module docstring, ``rfm_segment`` and ``country``; with ``with_inputs``, also the model
    inputs (the snapshot plus its BG/NBD features, same row order) for explanations. ``fitted``: see
    :func:`model_inputs`; ``levels``: model name -> the level factor of a population-level model
    (:meth:`models.training.ScoringModel.score`) over the whole population. With both, every value is a function
    of the row: a part of the snapshot scores as the whole would score it, which is how :mod:`serving.spark` scores
    on the executors.
    """
    cutoffs = snapshot["cutoff"].unique()
    if len(cutoffs) != 1:
        raise ValueError(f"score one cutoff at a time; the snapshot has {len(cutoffs)}")
    as_of = pd.Timestamp(cutoffs[0]).date()
    snap, btyd = model_inputs(snapshot, horizons, fitted)
    is_active = ACTIVE.mask(snap, horizons).to_numpy()

    out = pd.DataFrame({"customer_id": snap["customer_id"], "as_of": as_of, "is_active": is_active})
    for spec in MODELS:
        out[spec.score_column] = np.nan
        members = spec.population.mask(snap, horizons).to_numpy()
        if spec.name in champions and members.any():
            model, level = champions[spec.name].model, (levels or {}).get(spec.name)
            rows = snap[members]
            out.loc[members, spec.score_column] = model.score(rows) if level is None else model.score(rows, level)
    out["p_alive"] = btyd["p_alive"].to_numpy()  # BG/NBD's, the churn and win-back models' feature too
    out["value_at_risk"] = np.where(is_active, out["churn_probability"] * out["predicted_cltv"], np.nan)
    out["value_if_reactivated"] = np.where(is_active, np.nan, btyd["value_if_still_buying"])
    out["expected_winback_value"] = out["reactivation_probability"] * out["value_if_reactivated"]
    days = next((out[spec.score_column] for spec in MODELS if spec.kind == "duration" and spec.name in champions),
                btyd["next_order_days"])
    next_days = np.rint(days.to_numpy(dtype=float))
    dated = is_active & (out["churn_probability"] < next_order_max_churn).to_numpy()  # NaN: no date either
    out["expected_next_order_date"] = [as_of + dt.timedelta(days=int(d)) if a and np.isfinite(d) else None
                                       for a, d in zip(dated, next_days)]
    for column in ("rfm_segment", "country"):
        out[column] = snap[column] if column in snap.columns else None
    return (out, snap) if with_inputs else out


LIST_COLUMNS = {spec.name: spec.list_columns for spec in LISTS}


def _model_versions(champions: dict[str, Champion]) -> dict[str, str]:
    """``<section>_model_version`` of every model in use (by model name, so the column order is stable)."""
    from models.catalog import get

    return {get(name).version_column: c.version for name, c in sorted(champions.items())}


def build_lists(scores: pd.DataFrame, champions: dict[str, Champion], run_id: str) -> dict[str, pd.DataFrame]:
    """Every list of the catalogue: the customers its model scored (its ``probability`` is set), by its ``value``,
    highest first, each with a 1-based ``rank``, the model versions and ``run_id``. A list whose model has no
    champion (it stepped aside) has no rows; without a value (the CLTV model stepped aside: ``predicted_cltv`` and
    the values built on it stay empty, never estimated otherwise) the list is ranked by its probability.

    Ties are broken by ``customer_id`` so that the same scores always give the same order.
    """
    versions = _model_versions(champions)
    lists = {}
    for spec in LISTS:
        rows = scores[scores[spec.probability].notna()]
        rows = rows.assign(**{c: np.nan for c in spec.model_columns if c not in rows.columns})  # no such model
        order = [spec.value, spec.probability, "customer_id"]  # no value (the CLTV model stepped aside): by P
        ranked = rows.sort_values(order, ascending=[False, False, True], kind="stable",
                                  na_position="last")[spec.list_columns]
        ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
        lists[spec.name] = ranked.assign(**versions, run_id=run_id).reset_index(drop=True)
    return lists


def add_reasons(lists: dict[str, pd.DataFrame], inputs: pd.DataFrame, champions: dict[str, Champion],
                catalog, currency: str, horizons: HorizonsConfig,
                audit: dict | None = None, playbooks=None, explain=None) -> dict[str, pd.DataFrame]:
    """``reason_1..3`` for the rows of each list (only those: explanations cost), from the model that defines the
    list (the churn model for the at-risk list, the win-back model for the win-back list); ``inputs`` are the
    model inputs of every customer. A reason agrees with the score it explains: its value is compared with the
    median of the model's whole population at the cutoff (not of the list, which holds the riskiest). ``audit``,
    when given, receives :func:`serving.explain.audit_reasons` per list (every count should be 0), with the rows
    not all in their language (:func:`serving.explain.language_mismatches`, against ``playbooks`` when given).
    ``explain(model, rows, raises, reference)``: what computes :func:`serving.explain.top_reasons` (with drivers and
    contributions) of ``rows``, in their order; default: here (:mod:`serving.spark` runs it on the executors)."""
    from serving.explain import (CONTRIBUTIONS, audit_reasons, language_mismatches, reason_columns,
                                 reference_values, top_reasons)

    by_id = inputs.set_index("customer_id", drop=False)
    out = {}
    for spec in LISTS:
        rows = by_id.loc[lists[spec.name]["customer_id"]].reset_index(drop=True)
        if spec.model.name in champions:
            model, raises = champions[spec.model.name].model, spec.model.explains
            population = inputs[spec.model.population.mask(inputs, horizons).to_numpy()]
            reference = reference_values(population, model.features)
            found = (explain(model, rows, raises, reference) if explain is not None else
                     top_reasons(model, rows, catalog, currency, horizons.churn_days, raises=raises,
                                 reference=reference, with_drivers=True, with_contributions=True))
            if audit is not None:
                audit[spec.name] = audit_reasons(found, rows, catalog, raises, reference)
            reasons = found[[*reason_columns(), CONTRIBUTIONS]]
        else:  # the model stepped aside: its list has no rows, and nothing is explained
            reasons = pd.DataFrame(columns=[*reason_columns(), CONTRIBUTIONS], index=rows.index, dtype="object")
        frame = lists[spec.name].reset_index(drop=True)
        position = frame.columns.get_loc("language" if "language" in frame.columns else "country") + 1
        out[spec.name] = pd.concat([frame.iloc[:, :position], reasons[reason_columns()], frame.iloc[:, position:],
                                    reasons[[CONTRIBUTIONS]]], axis=1)  # the waterfall's data last: no reading
        if audit is not None and spec.name in audit:
            audit[spec.name]["mixed_language"] = language_mismatches(out[spec.name], catalog, playbooks)
    return out


HISTORY = "purchase_history"
HISTORY_MONTHS = 24


def add_purchase_history(lists: dict[str, pd.DataFrame], transactions: Path, cutoff: dt.date,
                         months: int = HISTORY_MONTHS) -> dict[str, pd.DataFrame]:
    """A last column ``purchase_history`` per listed customer: a JSON text of their orders and refunds per
    calendar month over the ``months`` months before ``cutoff`` (nothing on or after it), ``[[month, orders,
    refunds, net amount], ...]`` for the months with any, net amount in the base currency. The workspace's profile
    draws it as the purchase timeline; ``transactions`` is the validated table (a refund is a negative amount)."""
    import json

    import duckdb

    ids = sorted({c for frame in lists.values() for c in frame["customer_id"].astype(str)})
    start = (pd.Timestamp(cutoff) - pd.DateOffset(months=months)).date().replace(day=1)
    by_customer: dict[str, list] = {}
    if ids and Path(transactions).exists():
        con = duckdb.connect()
        try:
            con.register("listed", pd.DataFrame({"customer_id": ids}))
            rows = con.execute(
                "SELECT t.customer_id, strftime(date_trunc('month', t.ts), '%Y-%m') AS month, "
                "count(*) FILTER (WHERE t.amount >= 0) AS orders, count(*) FILTER (WHERE t.amount < 0) AS refunds, "
                "round(sum(t.amount), 2) AS net FROM read_parquet(?) t JOIN listed USING (customer_id) "
                "WHERE t.ts >= ? AND t.ts < ? GROUP BY 1, 2 ORDER BY 1, 2",
                [str(transactions), start, cutoff]).fetchall()
        finally:
            con.close()
        for customer, month, orders, refunds, net in rows:
            by_customer.setdefault(customer, []).append([month, int(orders), int(refunds), float(net or 0)])
    return {name: frame.assign(**{HISTORY: [json.dumps(by_customer.get(str(c), []))
                                             for c in frame["customer_id"]]})
            for name, frame in lists.items()}


def in_currency(lists: dict[str, pd.DataFrame], currency: str) -> dict[str, pd.DataFrame]:
    """The lists as published: every money column (:data:`serving.lists.MONEY_COLUMNS`) rounded to the currency's
    minor unit (CLDR: 2 decimals for USD and EUR, 0 for JPY) and a ``currency`` column naming it, after
    ``expected_net_value``."""
    from babel.numbers import get_currency_precision

    from serving.lists import MONEY_COLUMNS

    digits = get_currency_precision(currency)
    out = {}
    for name, frame in lists.items():
        frame = frame.assign(**{c: frame[c].astype("float64").round(digits) for c in MONEY_COLUMNS
                                if c in frame.columns})
        at = frame.columns.get_loc("expected_net_value") + 1 if "expected_net_value" in frame.columns else len(
            frame.columns)
        frame.insert(at, "currency", pd.Series(currency, index=frame.index, dtype="object"))
        out[name] = frame
    return out


# published order: rank, id, date and probability, then the risk tier, then the rest of the list's columns
LIST_ORDER = {name: ["rank", *columns[:3], "risk_tier", *columns[3:]] for name, columns in LIST_COLUMNS.items()}
ACTION_COLUMNS = ["recommended_action", "offer", "playbook", "cost_per_contact", "success_rate",
                  "expected_net_value", "contact_group", "campaign_id"]


def target_lists(lists: dict[str, pd.DataFrame], inputs: pd.DataFrame, consent: pd.Series | None, settings,
                 playbooks, as_of: dt.date, catalog=None) -> tuple[dict[str, pd.DataFrame], dict[str, dict]]:
    """Risk tiers, playbooks, consent, budget and control group applied to the ranked lists (see
    :mod:`serving.targeting`). ``consent`` maps customer_id to marketing consent (None: no customers table).
    ``catalog`` (the reasons catalogue) gives each customer's ``language`` from their country: actions and offers
    are written in it, as the reasons are.

    Returns the lists to publish (treatment and control customers, ranked by value again) and one campaign
    summary per list."""
    from serving import targeting as tg

    features = inputs.set_index("customer_id")
    out, campaigns = {}, {}
    for spec in LISTS:
        ranked = lists[spec.name]
        frame = ranked.drop(columns="rank")
        extra = [c for c in features.columns if c not in frame.columns]
        frame = frame.join(features[extra], on="customer_id")
        frame["risk_tier"] = (tg.risk_tiers(frame[spec.probability], settings.risk_tiers) if spec.tiered
                              else spec.model.population.name)
        if spec.tiered:  # the list holds min_tier and the tiers above it, as the summary counts them
            frame = frame[frame[spec.probability] >= settings.at_risk_threshold]
        default = catalog.default_language if catalog is not None else "en"
        languages = (frame["country"].astype("object").where(frame["country"].notna(), None).map(
            catalog.language_for) if catalog is not None else pd.Series(default, index=frame.index))
        frame = frame.assign(language=languages.to_numpy())
        frame = pd.concat([frame, tg.assign_playbooks(frame, playbooks.for_list(spec.name), frame["language"],
                                                      default)], axis=1)
        if consent is not None:
            frame["marketing_consent"] = frame["customer_id"].map(consent).fillna(False).astype(bool)
        else:
            frame["marketing_consent"] = not settings.require_consent
        campaign = f"{settings.campaign_prefix}-{spec.name}-{as_of.isoformat()}"
        chosen = tg.select(frame, spec.name, settings.budgets.get(spec.name), settings.control_share, campaign)
        campaigns[spec.name] = {"campaign_id": campaign, **tg.campaign_summary(
            chosen, spec.name, len(frame), int((~frame["marketing_consent"]).sum()))}
        chosen = chosen.sort_values([spec.value, spec.probability, "customer_id"], ascending=[False, False, True],
                                    kind="stable", na_position="last")
        chosen.insert(0, "rank", np.arange(1, len(chosen) + 1))
        versions = [c for c in ranked.columns if c.endswith("_model_version")]
        order = LIST_ORDER[spec.name]
        at = order.index("country") + 1
        out[spec.name] = chosen[[*order[:at], "language", *order[at:], *ACTION_COLUMNS, *versions,
                                 "run_id"]].reset_index(drop=True)
    return out, campaigns


def summarize(scores: pd.DataFrame, lists: dict[str, pd.DataFrame], champions: dict[str, Champion],
              at_risk_threshold: float, campaigns: dict[str, dict] | None = None) -> dict:
    """Headline numbers of a scoring run (for the flow's summary artifact and the CLI); at-risk customers are the
    active ones with ``churn_probability >= at_risk_threshold`` (the lower bound of ``targeting.min_tier``: the
    same customers the at-risk list chooses from)."""
    active = scores[scores["is_active"]]
    return {
        "customers_scored": int(len(scores)),
        "active_customers": int(len(active)),
        "at_risk_customers": int((active["churn_probability"] >= at_risk_threshold).sum()),
        "value_at_risk": _total(active["value_at_risk"]),
        "mean_predicted_cltv": (float(active["predicted_cltv"].mean()) if active["predicted_cltv"].notna().any()
                                else None),  # of the active customers: the KPI report shows it beside its own
        "lapsed_customers": int((~scores["is_active"]).sum()),
        "expected_winback_value": _total(scores["expected_winback_value"]),
        "list_rows": {name: int(len(frame)) for name, frame in lists.items()},
        "campaigns": campaigns or {},
        "champion_versions": {name: c.version for name, c in sorted(champions.items())},
        "models_without_champion": [spec.name for spec in MODELS if spec.name not in champions],
    }


def _total(values: pd.Series) -> float | None:
    """The sum, or None when no value is known (its model stepped aside): unknown is not zero."""
    return float(values.sum()) if values.notna().any() else None


def score_drift(scores: pd.DataFrame, inputs: pd.DataFrame, champions: dict[str, Champion], horizons: HorizonsConfig,
                warn: float, alert: float) -> dict:
    """The drift of this run (:mod:`models.monitoring`): per champion, the PSI of each of its features and of its
    score over the customers of its population in this snapshot, against the nearest of its training snapshots
    and within each market (:func:`models.monitoring.drift`); ``scores`` and ``inputs`` are :func:`score_snapshot`'s, in the same row order.
    ``columns`` holds every column's row for the whole population and a market's row when it warns or alerts;
    ``alerts`` and ``warnings`` name the columns at those levels (``<column> in <market>`` for a market's);
    ``markets`` the markets with enough customers for at least one column to be judged; ``max_psi`` the highest
    judged PSI, markets included (a clock feature's, or one with too few values, is shown but not judged). A
    champion trained before the current profiles existed has none (``reference: false``: retrain it)."""
    from models.catalog import get
    from models.monitoring import drift, readable

    out: dict = {"warn_psi": warn, "alert_psi": alert, "models": {}}
    for name, champion in sorted(champions.items()):
        spec = get(name)
        reference = getattr(champion.model, "reference", None)
        members = spec.population.mask(inputs, horizons).to_numpy()
        if not readable(reference) or not members.any():
            out["models"][name] = {"reference": readable(reference), "rows": int(members.sum()), "alerts": [],
                                   "warnings": [], "max_psi": None, "markets": [], "columns": []}
            continue
        table = drift(reference, inputs[members], scores.loc[members, spec.score_column].to_numpy(), warn, alert)
        judged = table["level"].isin(["ok", "warn", "alert"])
        by_market = table["market"].notna()
        kept = table[~by_market | table["level"].isin(["warn", "alert"])]  # a market's row when it is flagged
        out["models"][name] = {
            "reference": True, "rows": int(members.sum()),
            "alerts": kept.loc[kept["level"] == "alert", "column"].tolist(),
            "warnings": kept.loc[kept["level"] == "warn", "column"].tolist(),
            "max_psi": float(table.loc[judged, "psi"].max()) if judged.any() else None,
            "markets": sorted(table.loc[by_market & judged, "market"].unique().tolist()),
            "columns": [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
                        for row in kept.to_dict("records")]}
    return out


def drift_alerts(drift: dict) -> list[str]:
    """``model: column (PSI x.xx)`` for every alert of a run's drift."""
    found = []
    for name, state in (drift or {}).get("models", {}).items():
        by_column = {c["column"]: c["psi"] for c in state["columns"]}
        found += [f"{name}: {column} (PSI {by_column[column]:.2f})" for column in state["alerts"]]
    return found
