"""Simulate the synthetic global retailer and write the tables of the data contract as Parquet.

The process is described in :mod:`features.synthetic.params`, the named variants of it in
:mod:`features.synthetic.scenarios`. Customers are simulated in fixed-size chunks, each with its own random stream
derived from ``(seed, chunk index)``, and every table is streamed to its Parquet file chunk by chunk, so memory
stays flat as the number of customers grows and the same seed gives byte-identical files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from features.synthetic.params import (
    CATEGORIES,
    CHANNELS,
    COUNTRIES,
    COUNTRY_CONSENT_RATE,
    COUNTRY_CURRENCY,
    COUNTRY_WEIGHTS,
    CURRENCY_DECIMALS,
    DISENGAGING,
    DORMANT,
    DOWNGRADE_PROB,
    ENGAGED,
    FX_CENTRE,
    PLAN_PRICE_USD,
    PLAN_SHARES,
    PLANS,
    RESUBSCRIBE_PLAN_SHARES,
    RESUBSCRIBE_PROB,
    SUBSCRIPTION_CATEGORY,
    TICKET_CATEGORIES,
    SimulationParams,
    billing_days,
    dropout_hazard,
    price_level,
    price_shock_active,
    season,
)
from features.synthetic.scenarios import SCENARIOS, TABLES, Scenario, get_scenario, scenario_tables

__all__ = ["SCENARIOS", "TABLES", "GenerationResult", "Scenario", "generate", "scenario_tables"]

NOT_JOINED = 3
US_PER_DAY = 86_400_000_000
TRUTH_TABLES = ("customers", "transitions", "tickets")  # plus "subscriptions" when the scenario bills them
BILLING_MICROS = 3 * 3600 * 1_000_000  # subscription charges run at 03:00, before any order of the day

_FIRST = ("Alex", "Maria", "Jan", "Eva", "Nikos", "Sofia", "Yuki", "Hiro", "Emma", "Lucas", "Anna", "Tom",
          "Petra", "Jakub", "Elena", "Chloe", "Noah", "Mia", "Liam", "Zoe", "Luka", "Noa", "Yael", "Ana")
_LAST = ("Smith", "Novak", "Muller", "Martin", "Papadopoulos", "Tanaka", "Brown", "Dvorak", "Schmidt", "Dubois",
         "Georgiou", "Sato", "Wilson", "Svoboda", "Weber", "Bernard", "Nikolaou", "Suzuki", "Taylor", "Roy",
         "Horvat", "Kovac", "Cohen", "Levi")
_DIAL = {"US": "+1", "GB": "+44", "DE": "+49", "FR": "+33", "CZ": "+420", "GR": "+30", "JP": "+81", "CA": "+1",
         "SI": "+386", "IL": "+972"}

ACQUISITION_CHANNELS = ("organic", "paid_search", "social", "referral", "email")
ACQUISITION_SHARES = (0.38, 0.24, 0.16, 0.14, 0.08)

_SCHEMAS = {
    "customers": pa.schema([("customer_id", pa.string()), ("signup_date", pa.date32()), ("country", pa.string()),
                            ("marketing_consent", pa.bool_()), ("acquisition_channel", pa.string()),
                            ("email", pa.string()), ("name", pa.string()), ("phone", pa.string())]),
    "transactions": pa.schema([("order_id", pa.int64()), ("customer_id", pa.string()),
                               ("ts", pa.timestamp("us")), ("amount", pa.float64()), ("currency", pa.string()),
                               ("category", pa.string()), ("channel", pa.string()), ("quantity", pa.int32()),
                               ("discount", pa.float64())]),
    "support_tickets": pa.schema([("ticket_id", pa.int64()), ("customer_id", pa.string()),
                                  ("opened_at", pa.timestamp("us")), ("resolved_at", pa.timestamp("us")),
                                  ("category", pa.string()), ("csat", pa.float64())]),
    "surveys": pa.schema([("customer_id", pa.string()), ("ts", pa.timestamp("us")), ("nps", pa.float64()),
                          ("csat", pa.float64()), ("ces", pa.float64())]),
    "web_sessions": pa.schema([("customer_id", pa.string()), ("ts", pa.timestamp("us")), ("pages", pa.int32()),
                               ("duration", pa.float64())]),
    "email_events": pa.schema([("customer_id", pa.string()), ("ts", pa.timestamp("us")),
                               ("event", pa.string()), ("campaign_id", pa.string())]),
    "subscriptions": pa.schema([("subscription_id", pa.int64()), ("customer_id", pa.string()),
                                ("plan", pa.string()), ("started_at", pa.date32()), ("cancelled_at", pa.date32()),
                                ("monthly_amount", pa.float64()), ("currency", pa.string())]),
    "fx_rates": pa.schema([("date", pa.date32()), ("currency", pa.string()), ("rate_to_base", pa.float64())]),
}
_TRUTH_SCHEMAS = {
    "customers": pa.schema([("customer_id", pa.string()), ("signup_day", pa.int32()), ("country", pa.string()),
                            ("purchase_rate", pa.float64()), ("spend_nu", pa.float64()),
                            ("hazard_h0", pa.float64()), ("satisfaction", pa.float64()),
                            ("price_sensitivity", pa.float64()), ("return_hazard", pa.float64()),
                            ("ticket_rate", pa.float64()), ("web_rate", pa.float64()),
                            ("email_open_prob", pa.float64()), ("first_dormant_date", pa.date32())]),
    # state in force from the start of ``day`` (days since params.start_date) until the next row
    "transitions": pa.schema([("customer_id", pa.string()), ("day", pa.int32()), ("state", pa.int8())]),
    "tickets": pa.schema([("customer_id", pa.string()), ("open_day", pa.int32()), ("resolve_day", pa.int32())]),
    # every subscription, active on days [start_day, end_day); end_day missing = still active after the data
    "subscriptions": pa.schema([("customer_id", pa.string()), ("plan", pa.int8()), ("start_day", pa.int32()),
                                ("end_day", pa.int32())]),
}


@dataclass(frozen=True)
class GenerationResult:
    """What :func:`generate` wrote."""

    out_dir: Path
    truth_dir: Path
    row_counts: dict[str, int]
    params: SimulationParams
    scenario: str = "default"


def _chunk_rng(seed: int, chunk: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, chunk]))


def fx_rate_table(params: SimulationParams, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Business-day rates (geometric random walks around ``FX_CENTRE``) from 14 days before the start.

    Returns the dates and, per currency, the rates; the base currency has no rows.
    """
    rng = _chunk_rng(seed, 1_000_000)
    first = np.datetime64(params.start_date) - np.timedelta64(14, "D")
    days = np.arange(first, np.datetime64(params.end_date) + np.timedelta64(1, "D"))
    days = days[np.is_busday(days)]
    rates = {}
    for currency, centre in FX_CENTRE.items():
        steps = rng.normal(0, 0.004, size=len(days))
        walk = np.cumsum(steps)
        walk -= 0.02 * np.arange(len(days)) / len(days) * np.sign(walk[-1])  # keep it near the centre
        rates[currency] = np.round(centre * np.exp(walk - walk.mean()), 6)
    return days, rates


def _rates_by_day(params: SimulationParams, fx_days: np.ndarray, fx: dict[str, np.ndarray]) -> np.ndarray:
    """Rate in force (latest business day on or before) per country and simulated day: shape (countries, days)."""
    sim_days = np.arange(np.datetime64(params.start_date), np.datetime64(params.as_of))
    pos = np.searchsorted(fx_days, sim_days, side="right") - 1
    out = np.ones((len(COUNTRIES), len(sim_days)))
    for c, country in enumerate(COUNTRIES):
        currency = COUNTRY_CURRENCY[country]
        if currency != params.base_currency:
            out[c] = fx[currency][pos]
    return out


def _signup_days(rng: np.random.Generator, n: int, n_days: int, window_days: int | None = None) -> np.ndarray:
    """A launch cohort (15% in the first 30 days), then growing acquisition (density rising 1 -> 2); or, with
    ``window_days``, a single cohort joining uniformly in the first ``window_days`` days."""
    if window_days is not None:
        return rng.integers(0, window_days, n).astype(np.int32)
    launch = rng.random(n) < 0.15
    u = rng.random(n)
    growing = (-1 + np.sqrt(1 + 3 * u)) * (n_days - 14)
    return np.where(launch, rng.integers(0, 30, n), growing.astype(np.int64)).astype(np.int32)


def _ids(prefix: str, numbers: np.ndarray, width: int = 7) -> np.ndarray:
    return np.char.add(prefix, np.char.zfill(numbers.astype(str), width))


def _ts(params: SimulationParams, day: np.ndarray, micros: np.ndarray) -> pa.Array:
    start = np.datetime64(params.start_date, "us").astype(np.int64)
    return pa.array(start + day.astype(np.int64) * US_PER_DAY + micros, pa.int64()).cast(pa.timestamp("us"))


def _take(values: np.ndarray, idx: np.ndarray) -> pa.Array:
    """``values[idx]`` as an Arrow string array without building Python strings per row."""
    return pa.array(values).take(pa.array(idx))


def _date(params: SimulationParams, day: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    start = np.datetime64(params.start_date, "D").astype(np.int64)
    return pa.array((start + day).astype(np.int32), pa.int32(), mask=mask).cast(pa.date32())


def _simulate_chunk(params: SimulationParams, seed: int, chunk: int, first_number: int, n: int,
                    rates: np.ndarray, scenario: Scenario) -> tuple[dict[str, pa.Table], dict[str, pa.Table]]:
    """Simulate customers ``first_number .. first_number + n - 1``; return their tables and ground truth.

    Every table is returned whatever the scenario writes (the random streams must not depend on it)."""
    rng = _chunk_rng(seed, chunk)
    p = params
    n_days = p.n_days
    ids = _ids("C", np.arange(first_number, first_number + n) + 1)

    # --- latent customer parameters -------------------------------------------------------------------------
    country = rng.choice(len(COUNTRIES), size=n, p=np.array(COUNTRY_WEIGHTS) / sum(COUNTRY_WEIGHTS))
    signup = _signup_days(rng, n, n_days, scenario.signup_window_days)
    lam = rng.gamma(p.purchase_rate_shape, p.purchase_rate_mean / p.purchase_rate_shape, n)
    nu = rng.gamma(p.spend_q, 1 / p.spend_g, n)  # rate of the per-order Gamma
    h0 = rng.gamma(p.hazard_shape, p.hazard_mean / p.hazard_shape, n)
    z = rng.normal(0, 1, n)  # satisfaction
    sens = rng.beta(2, 5, n)  # price sensitivity
    mu = np.where(rng.random(n) < p.returner_share, rng.gamma(2, p.return_hazard_mean / 2, n), 0.0)
    kappa = p.ticket_rate_mean * rng.gamma(2, 0.5, n) * np.exp(-0.4 * z - 0.08)
    web = rng.gamma(1.5, p.web_rate_mean / 1.5, n)
    open_prob = rng.beta(2, 2 / p.email_open_mean - 2, n)
    consent_rate = np.array([COUNTRY_CONSENT_RATE[c] for c in COUNTRIES])
    consent = rng.random(n) < consent_rate[country]
    fav_category = rng.integers(0, len(CATEGORIES), n)
    fav_channel = rng.choice(len(CHANNELS), size=n, p=[0.5, 0.3, 0.2])
    subscriber = rng.random(n) < p.subscriber_share
    plan = np.where(subscriber, rng.choice(3, size=n, p=PLAN_SHARES), -1)

    season_d = season(p, np.arange(n_days))
    shock_cd = np.stack([price_shock_active(p, np.full(n_days, c), np.arange(n_days))
                         for c in range(len(COUNTRIES))])
    purchase_factor = np.array(p.purchase_factor + (0.0,))
    web_factor = np.array(p.web_factor + (0.0,))
    email_factor = np.array(p.email_factor + (0.0,))
    unsubscribe_factor = np.array([0.004, 0.016, 0.008, 0.0])

    # --- daily simulation -------------------------------------------------------------------------------------
    state = np.full(n, NOT_JOINED, np.int8)
    slots = np.full((n, p.max_open_tickets), -1, np.int32)  # resolve day of each open ticket, -1 = free
    unsubscribed = np.zeros(n, bool)
    sub_start = np.where(subscriber, signup, -1)
    ev: dict[str, list] = {k: [] for k in ("order", "ticket", "survey", "web", "email", "trans", "sub")}
    for d in range(n_days):
        joining = signup == d
        state[joining] = ENGAGED
        ev["trans"].append((np.flatnonzero(joining), np.full(joining.sum(), d), np.full(joining.sum(), ENGAGED)))
        alive = state <= DISENGAGING

        n_start = (slots >= d).sum(axis=1)
        k = rng.poisson(lam * season_d[d] * purchase_factor[state])
        k[joining] = np.maximum(k[joining], 1)
        idx = np.flatnonzero(k)
        ev["order"].append((idx, np.full(len(idx), d), k[idx]))

        n_after = (slots > d).sum(axis=1)
        new = alive & (n_after < p.max_open_tickets) & (rng.random(n) < kappa)
        if new.any():
            t_idx = np.flatnonzero(new)
            resolve = d + rng.geometric(p.ticket_resolve_prob, len(t_idx))
            free_slot = np.argmax(slots[t_idx] <= d, axis=1)
            slots[t_idx, free_slot] = resolve
            ev["ticket"].append((t_idx, np.full(len(t_idx), d), resolve))

        s_idx = np.flatnonzero(alive & (rng.random(n) < p.survey_rate))
        ev["survey"].append((s_idx, np.full(len(s_idx), d)))
        w = rng.poisson(web * web_factor[state])
        w_idx = np.flatnonzero(w)
        ev["web"].append((w_idx, np.full(len(w_idx), d), w[w_idx]))
        if d % p.email_every_days == 0:
            sent = (state != NOT_JOINED) & consent & ~unsubscribed
            e_idx = np.flatnonzero(sent)
            u_open = rng.random(len(e_idx))
            u_click = rng.random(len(e_idx))
            u_unsub = rng.random(len(e_idx))
            opened = u_open < open_prob[e_idx] * email_factor[state[e_idx]]
            clicked = opened & (u_click < 0.3)
            unsub = u_unsub < unsubscribe_factor[state[e_idx]]
            unsubscribed[e_idx[unsub]] = True
            ev["email"].append((e_idx, np.full(len(e_idx), d), opened, clicked, unsub))

        # transitions at the end of day d, effective from the start of day d + 1
        u = rng.random(n)
        hazard = dropout_hazard(p, h0, z, sens, shock_cd[country, d], n_start)
        to_g = (state == ENGAGED) & (u < hazard)
        to_d = (state == DISENGAGING) & (u < p.disengaged_to_dormant)
        to_e = (state == DORMANT) & (u < mu)
        if to_g.any() or to_d.any() or to_e.any():
            u_sub = rng.random(n)
            downgrade = to_g & (plan > 0) & (u_sub < DOWNGRADE_PROB)
            cancel = to_d & (plan >= 0)
            resub = to_e & subscriber & (plan < 0) & (u_sub < RESUBSCRIBE_PROB)
            for mask, new_plan in ((downgrade, plan - 1), (cancel, np.full(n, -1))):
                m_idx = np.flatnonzero(mask)
                ev["sub"].append((m_idx, sub_start[m_idx], np.full(len(m_idx), d + 1), plan[m_idx]))
                plan[m_idx] = new_plan[m_idx]
                sub_start[m_idx] = np.where(new_plan[m_idx] >= 0, d + 1, -1)
            r_idx = np.flatnonzero(resub)
            plan[r_idx] = rng.choice(3, size=len(r_idx), p=RESUBSCRIBE_PLAN_SHARES)
            sub_start[r_idx] = d + 1
            state[to_g] = DISENGAGING
            state[to_d] = DORMANT
            state[to_e] = ENGAGED
            for mask, new_state in ((to_g, DISENGAGING), (to_d, DORMANT), (to_e, ENGAGED)):
                m_idx = np.flatnonzero(mask)
                ev["trans"].append((m_idx, np.full(len(m_idx), d + 1), np.full(len(m_idx), new_state)))
    open_subs = np.flatnonzero(plan >= 0)
    ev["sub"].append((open_subs, sub_start[open_subs], np.full(len(open_subs), -1), plan[open_subs]))

    def cat(name: str) -> list[np.ndarray]:
        return [np.concatenate(parts) for parts in zip(*ev[name])]

    tables = {
        "customers": _customers_table(p, rng, ids, signup, country, consent, first_number),
        "transactions": _transactions_table(p, rng, ids, chunk, cat("order"), nu, country, fav_category,
                                            fav_channel, rates),
        "support_tickets": _tickets_table(p, rng, ids, chunk, cat("ticket"), z),
        "surveys": _surveys_table(p, rng, ids, cat("survey"), z),
        "web_sessions": _web_table(p, rng, ids, cat("web")),
        "email_events": _email_table(p, rng, ids, cat("email")),
        "subscriptions": _subscriptions_table(p, ids, chunk, cat("sub"), country, rates),
    }
    if scenario.billing:
        charges = _charges_table(p, ids, chunk, cat("sub"), country, rates)
        tables["transactions"] = pa.concat_tables([tables["transactions"], charges]).sort_by(
            [("customer_id", "ascending"), ("ts", "ascending")])
    t_cust, t_day, t_state = cat("trans")
    order = np.lexsort((t_day, t_cust))
    t_cust, t_day, t_state = t_cust[order], t_day[order], t_state[order]
    dormant = t_state == DORMANT
    first_dormant = np.full(n, -1, np.int64)
    first_dormant[t_cust[dormant][::-1]] = t_day[dormant][::-1]  # reversed so the earliest wins
    tk_cust, tk_open, tk_resolve = cat("ticket")
    truth = {
        "customers": pa.table({
            "customer_id": ids, "signup_day": signup, "country": np.array(COUNTRIES)[country],
            "purchase_rate": lam, "spend_nu": nu, "hazard_h0": h0, "satisfaction": z, "price_sensitivity": sens,
            "return_hazard": mu, "ticket_rate": kappa, "web_rate": web, "email_open_prob": open_prob,
            "first_dormant_date": _date(p, np.maximum(first_dormant, 0), mask=first_dormant < 0),
        }, schema=_TRUTH_SCHEMAS["customers"]),
        "transitions": pa.table({"customer_id": _take(ids, t_cust), "day": t_day.astype(np.int32),
                                 "state": t_state.astype(np.int8)}, schema=_TRUTH_SCHEMAS["transitions"]),
        "tickets": pa.table({"customer_id": _take(ids, tk_cust), "open_day": tk_open.astype(np.int32),
                             "resolve_day": tk_resolve.astype(np.int32)}, schema=_TRUTH_SCHEMAS["tickets"]),
    }
    if scenario.billing:
        s_cust, s_start, s_end, s_plan = cat("sub")
        order = np.lexsort((s_start, s_cust))
        truth["subscriptions"] = pa.table({
            "customer_id": _take(ids, s_cust), "plan": s_plan.astype(np.int8), "start_day": s_start.astype(np.int32),
            "end_day": pa.array(s_end.astype(np.int32), mask=s_end < 0),
        }, schema=_TRUTH_SCHEMAS["subscriptions"]).take(pa.array(order))
    return tables, truth


def _customers_table(p, rng, ids, signup, country, consent, first_number) -> pa.Table:
    n = len(ids)
    first = np.array(_FIRST)[rng.integers(0, len(_FIRST), n)]
    last = np.array(_LAST)[rng.integers(0, len(_LAST), n)]
    number = np.arange(first_number, first_number + n) + 1
    email = np.char.add(np.char.add(np.char.add(np.char.lower(first), "."), np.char.lower(last)),
                        np.char.add(number.astype(str), "@example.com"))
    dial = np.array([_DIAL[c] for c in COUNTRIES])[country]
    phone = np.char.add(np.char.add(dial, " 555 "), np.char.zfill(rng.integers(0, 10**6, n).astype(str), 6))
    # from a child of the chunk's seed, so that adding the column changed no other value of the data
    channel_rng = np.random.default_rng(rng.bit_generator.seed_seq.spawn(1)[0])
    channel = channel_rng.choice(np.array(ACQUISITION_CHANNELS), size=n, p=ACQUISITION_SHARES)
    return pa.table({
        "customer_id": ids, "signup_date": _date(p, signup), "country": np.array(COUNTRIES)[country],
        "marketing_consent": consent, "acquisition_channel": channel, "email": email, "name": np.char.add(np.char.add(first, " "), last),
        "phone": phone,
    }, schema=_SCHEMAS["customers"])


def _transactions_table(p, rng, ids, chunk, order_events, nu, country, fav_category, fav_channel,
                        rates) -> pa.Table:
    o_cust, o_day, o_k = order_events
    cust = np.repeat(o_cust, o_k)
    day = np.repeat(o_day, o_k)
    m = len(cust)
    c_country = country[cust]
    value_base = rng.gamma(p.spend_p, 1 / nu[cust]) * price_level(p, c_country, day)
    currency = np.array([COUNTRY_CURRENCY[c] for c in COUNTRIES])[c_country]
    decimals = np.array([CURRENCY_DECIMALS[COUNTRY_CURRENCY[c]] for c in COUNTRIES])[c_country]
    scale = 10.0 ** decimals
    amount = np.maximum(np.round(value_base / rates[c_country, day] * scale), 1) / scale
    discounted = rng.random(m) < 0.2
    frac = rng.uniform(0.05, 0.3, m)
    discount = np.where(discounted, np.round(amount * frac / (1 - frac) * scale) / scale, 0.0)
    category = np.where(rng.random(m) < 0.6, fav_category[cust], rng.integers(0, len(CATEGORIES), m))
    channel = np.where(rng.random(m) < 0.7, fav_channel[cust], rng.integers(0, len(CHANNELS), m))
    channels = np.array(CHANNELS + ((p.new_channel,) if p.new_channel is not None else ()))
    if p.new_channel is not None:
        # from a stream of its own (the chunk seed's second child; the first draws acquisition channels), so that
        # every other value of the data is what it would be without the new channel
        seeds = rng.bit_generator.seed_seq
        switch_rng = np.random.default_rng(np.random.SeedSequence(seeds.entropy, spawn_key=(*seeds.spawn_key, 1)))
        switched = (day >= p.new_channel_day) & (switch_rng.random(m) < p.new_channel_share)
        channel = np.where(switched, len(CHANNELS), channel)
    quantity = 1 + rng.poisson(1.2, m)
    micros = rng.integers(7 * 3600, 23 * 3600, m) * 1_000_000 + rng.integers(0, 1_000_000, m)
    order_id = chunk * 1_000_000_000 + np.arange(m) + 1

    refunded = np.flatnonzero(rng.random(m) < p.refund_prob)
    r_day = day[refunded] + rng.integers(2, 31, len(refunded))
    partial = rng.random(len(refunded)) < 0.3
    r_share = np.where(partial, rng.uniform(0.2, 0.9, len(refunded)), 1.0)
    keep = r_day < p.n_days
    refunded, r_day, r_share, partial = refunded[keep], r_day[keep], r_share[keep], partial[keep]
    r_amount = -np.round(amount[refunded] * r_share * scale[refunded]) / scale[refunded]
    r_micros = rng.integers(7 * 3600, 23 * 3600, len(refunded)) * 1_000_000

    all_cust = np.concatenate([cust, cust[refunded]])
    all_day = np.concatenate([day, r_day])
    all_micros = np.concatenate([micros, r_micros])
    order = np.lexsort((all_micros, all_day, all_cust))
    return pa.table({
        "order_id": np.concatenate([order_id, chunk * 1_000_000_000 + 500_000_000 + np.arange(len(refunded)) + 1]),
        "customer_id": _take(ids, all_cust),
        "ts": _ts(p, all_day, all_micros),
        "amount": np.concatenate([amount, r_amount]),
        "currency": np.concatenate([currency, currency[refunded]]),
        "category": np.array(CATEGORIES)[np.concatenate([category, category[refunded]])],
        "channel": channels[np.concatenate([channel, channel[refunded]])],
        "quantity": np.concatenate([quantity, np.where(partial, -1, -quantity[refunded])]).astype(np.int32),
        "discount": np.concatenate([discount, np.zeros(len(refunded))]),
    }, schema=_SCHEMAS["transactions"]).take(pa.array(order))


def _tickets_table(p, rng, ids, chunk, ticket_events, z) -> pa.Table:
    cust, open_day, resolve_day = ticket_events
    m = len(cust)
    resolved = resolve_day < p.n_days
    weeks_open = (resolve_day - open_day) / 7
    csat = np.clip(np.round(3.6 + 0.9 * z[cust] - 0.15 * weeks_open + rng.normal(0, 0.8, m)), 1, 5)
    answered = resolved & (rng.random(m) < 0.55)
    open_micros = rng.integers(7 * 3600, 22 * 3600, m) * 1_000_000
    resolve_micros = rng.integers(7 * 3600, 22 * 3600, m) * 1_000_000
    order = np.lexsort((open_micros, open_day, cust))
    return pa.table({
        "ticket_id": chunk * 1_000_000_000 + np.arange(m) + 1,
        "customer_id": _take(ids, cust),
        "opened_at": _ts(p, open_day, open_micros),
        "resolved_at": pa.array(np.where(resolved, _ts(p, resolve_day, resolve_micros).cast(pa.int64()), 0),
                                mask=~resolved).cast(pa.timestamp("us")),
        "category": np.array(TICKET_CATEGORIES)[rng.integers(0, len(TICKET_CATEGORIES), m)],
        "csat": pa.array(csat, mask=~answered),
    }, schema=_SCHEMAS["support_tickets"]).take(pa.array(order))


def _surveys_table(p, rng, ids, survey_events, z) -> pa.Table:
    cust, day = survey_events
    m = len(cust)
    zc = z[cust]
    nps = np.clip(np.round(7.3 + 2.0 * zc + rng.normal(0, 1.2, m)), 0, 10)
    csat = np.clip(np.round(3.8 + 0.9 * zc + rng.normal(0, 0.7, m)), 1, 5)
    ces = np.clip(np.round(3.0 - 1.0 * zc + rng.normal(0, 1.0, m)), 1, 7)
    has_nps = rng.random(m) < 0.85
    has_csat = (rng.random(m) < 0.6) | ~has_nps
    has_ces = rng.random(m) < 0.5
    micros = rng.integers(7 * 3600, 23 * 3600, m) * 1_000_000
    order = np.lexsort((micros, day, cust))
    return pa.table({
        "customer_id": _take(ids, cust), "ts": _ts(p, day, micros),
        "nps": pa.array(nps, mask=~has_nps), "csat": pa.array(csat, mask=~has_csat),
        "ces": pa.array(ces, mask=~has_ces),
    }, schema=_SCHEMAS["surveys"]).take(pa.array(order))


def _web_table(p, rng, ids, web_events) -> pa.Table:
    w_cust, w_day, w_k = web_events
    cust = np.repeat(w_cust, w_k)
    day = np.repeat(w_day, w_k)
    m = len(cust)
    micros = rng.integers(0, US_PER_DAY, m)
    order = np.lexsort((micros, day, cust))
    return pa.table({
        "customer_id": _take(ids, cust), "ts": _ts(p, day, micros),
        "pages": (1 + rng.poisson(3.0, m)).astype(np.int32),
        "duration": np.round(rng.lognormal(5.0, 0.8, m)),
    }, schema=_SCHEMAS["web_sessions"]).take(pa.array(order))


def _email_table(p, rng, ids, email_events) -> pa.Table:
    cust, day, opened, clicked, unsub = email_events
    sent_micros = np.full(len(cust), 9 * 3600 * 1_000_000)
    open_micros = sent_micros + rng.integers(60, 48 * 3600, len(cust)) * 1_000_000
    click_micros = open_micros + rng.integers(5, 600, len(cust)) * 1_000_000
    unsub_micros = sent_micros + rng.integers(60, 72 * 3600, len(cust)) * 1_000_000
    parts = [(np.ones(len(cust), bool), sent_micros, "sent"), (opened, open_micros, "open"),
             (clicked, click_micros, "click"), (unsub, unsub_micros, "unsubscribe")]
    e_cust = np.concatenate([cust[mask] for mask, _, _ in parts])
    e_day = np.concatenate([day[mask] for mask, _, _ in parts])
    e_micros = np.concatenate([micros[mask] for mask, micros, _ in parts])
    e_kind = np.concatenate([np.full(mask.sum(), i, np.int8) for i, (mask, _, _) in enumerate(parts)])
    keep = e_day * US_PER_DAY + e_micros < p.n_days * US_PER_DAY  # nothing after the last simulated day
    e_cust, e_day, e_micros, e_kind = e_cust[keep], e_day[keep], e_micros[keep], e_kind[keep]
    campaign_day = np.concatenate([day[mask] for mask, _, _ in parts])[keep]
    campaign_dates = (np.datetime64(p.start_date) + campaign_day.astype("timedelta64[D]")).astype(str)
    order = np.lexsort((e_kind, e_micros, e_day, e_cust))
    return pa.table({
        "customer_id": _take(ids, e_cust), "ts": _ts(p, e_day, e_micros),
        "event": np.array([name for _, _, name in parts])[e_kind],
        "campaign_id": np.char.add("newsletter-", campaign_dates),
    }, schema=_SCHEMAS["email_events"]).take(pa.array(order))


def _subscription_spells(p, sub_events, country, rates):
    """The subscriptions that start within the data: customer, start, end (-1 = open), plan, monthly amount and
    currency (the plan's USD price at the start day's rate, in the customer's currency)."""
    cust, start, end, plan = sub_events
    keep = (start >= 0) & (start < p.n_days)  # a change on the last day takes effect after the data
    cust, start, end, plan = cust[keep], start[keep], end[keep], plan[keep]
    currency = np.array([COUNTRY_CURRENCY[c] for c in COUNTRIES])[country[cust]]
    decimals = np.array([CURRENCY_DECIMALS[COUNTRY_CURRENCY[c]] for c in COUNTRIES])[country[cust]]
    price_usd = np.array(PLAN_PRICE_USD)[plan]
    amount = np.round(price_usd / rates[country[cust], start] * 10.0**decimals) / 10.0**decimals
    return cust, start, end, plan, amount, currency


def _subscriptions_table(p, ids, chunk, sub_events, country, rates) -> pa.Table:
    cust, start, end, plan, amount, currency = _subscription_spells(p, sub_events, country, rates)
    ended = (end >= 0) & (end < p.n_days)
    order = np.lexsort((start, cust))
    return pa.table({
        "subscription_id": chunk * 1_000_000_000 + np.arange(len(cust)) + 1,
        "customer_id": _take(ids, cust), "plan": np.array(PLANS)[plan], "started_at": _date(p, start),
        "cancelled_at": _date(p, np.where(ended, end, 0), mask=~ended),
        "monthly_amount": amount, "currency": currency,
    }, schema=_SCHEMAS["subscriptions"]).take(pa.array(order))


def _charges_table(p, ids, chunk, sub_events, country, rates) -> pa.Table:
    """Monthly subscription charges as transaction rows: one per billing day of every subscription, before its
    end and within the data, for the subscription's ``monthly_amount`` and currency (no discount, never refunded)."""
    cust, start, end, _, amount, currency = _subscription_spells(p, sub_events, country, rates)
    stop = np.where((end >= 0) & (end < p.n_days), end, p.n_days)
    row, day = billing_days(p, start, stop)
    m = len(row)
    return pa.table({
        "order_id": chunk * 1_000_000_000 + 800_000_000 + np.arange(m) + 1,
        "customer_id": _take(ids, cust[row]),
        "ts": _ts(p, day, np.full(m, BILLING_MICROS)),
        "amount": amount[row],
        "currency": currency[row],
        "category": np.full(m, SUBSCRIPTION_CATEGORY),
        "channel": np.full(m, "web"),
        "quantity": np.ones(m, np.int32),
        "discount": np.zeros(m),
    }, schema=_SCHEMAS["transactions"])


def _written_schema(name: str, scenario: Scenario) -> pa.Schema:
    schema = _SCHEMAS[name]
    for column in scenario.dropped_columns.get(name, ()):
        schema = schema.remove(schema.get_field_index(column))
    return schema


def generate(out_dir: str | Path, n_customers: int = 20_000, seed: int = 42,
             params: SimulationParams | None = None,
             progress: Callable[[int, int], None] | None = None,
             scenario: str = "default") -> GenerationResult:
    """Simulate ``n_customers`` and write ``<table>.parquet`` for every table of the scenario into ``out_dir``.

    ``scenario`` names an entry of :data:`features.synthetic.scenarios.SCENARIOS` (see
    :func:`scenario_tables` for the tables it writes); its parameter overrides are applied on top of ``params``.
    Contract tables the scenario does not write are removed from ``out_dir``, so no file of an earlier run is
    mistaken for part of this one. Ground truth (latent parameters, state transitions, ticket days, for billing
    scenarios every subscription, and ``params.json`` with the scenario's name) goes to ``out_dir/truth/``; the
    pipeline never reads it. The default scenario leaves the name out of ``params.json``, so that its files stay
    byte-identical to those of the generator before scenarios existed. Files are written to a temporary folder and
    moved into place at the end, so an interrupted run leaves earlier files untouched. ``progress(done, total)``
    is called after each chunk of customers.

    Raises
    ------
    ConfigError
        When ``scenario`` is not a known name (the message lists the known ones).
    """
    scen = get_scenario(scenario)
    if n_customers < 1:
        raise ValueError(f"n_customers must be at least 1, got {n_customers}")
    p = scen.params(params)
    if scen.signup_window_days is not None and not 0 < scen.signup_window_days <= p.n_days:
        raise ValueError(f"scenario {scen.name!r}: signup_window_days must be within the {p.n_days} simulated days")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".generate-", dir=out_dir))
    try:
        (tmp / "truth").mkdir()
        fx_days, fx = fx_rate_table(p, seed)
        rates = _rates_by_day(p, fx_days, fx)
        written = scen.tables
        writers = {name: pq.ParquetWriter(tmp / f"{name}.parquet", _written_schema(name, scen), compression="zstd")
                   for name in written if name != "fx_rates"}
        truth_tables = TRUTH_TABLES + (("subscriptions",) if scen.billing else ())
        truth_writers = {name: pq.ParquetWriter(tmp / "truth" / f"{name}.parquet", _TRUTH_SCHEMAS[name],
                                                compression="zstd") for name in truth_tables}
        counts = dict.fromkeys(written, 0)
        n_chunks = -(-n_customers // p.chunk_size)
        for chunk in range(n_chunks):
            first = chunk * p.chunk_size
            size = min(p.chunk_size, n_customers - first)
            tables, truth = _simulate_chunk(p, seed, chunk, first, size, rates, scen)
            for name, writer in writers.items():
                table = tables[name].drop_columns(list(scen.dropped_columns.get(name, ())))
                writer.write_table(table)
                counts[name] += table.num_rows
            for name, table in truth.items():
                truth_writers[name].write_table(table)
            if progress:
                progress(chunk + 1, n_chunks)
        for w in (*writers.values(), *truth_writers.values()):
            w.close()
        fx_cur = [c for c in FX_CENTRE]
        fx_table = pa.table({
            "date": pa.array(np.tile(fx_days, len(fx_cur))).cast(pa.date32()),
            "currency": np.repeat(fx_cur, len(fx_days)),
            "rate_to_base": np.concatenate([fx[c] for c in fx_cur]),
        }, schema=_SCHEMAS["fx_rates"])
        if "fx_rates" in written:
            pq.write_table(fx_table, tmp / "fx_rates.parquet", compression="zstd")
            counts["fx_rates"] = fx_table.num_rows
        meta = {"seed": seed, "n_customers": n_customers, "params": p.to_json_dict()}
        if scen.name != "default":
            meta["scenario"] = scen.name
        (tmp / "truth" / "params.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        for name in TABLES:
            if name in written:
                os.replace(tmp / f"{name}.parquet", out_dir / f"{name}.parquet")
            else:
                (out_dir / f"{name}.parquet").unlink(missing_ok=True)
        if (out_dir / "truth").exists():
            shutil.rmtree(out_dir / "truth")
        os.replace(tmp / "truth", out_dir / "truth")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return GenerationResult(out_dir=out_dir, truth_dir=out_dir / "truth", row_counts=counts, params=p,
                            scenario=scen.name)

