"""The true probability of future purchases in the synthetic data, computed exactly from the ground truth.

Because the simulated process is Markov in (engagement state, open tickets) given each customer's latent
parameters (see :mod:`features.synthetic.params`), the probability that a customer makes no purchase in the
days ``[t, t + H)`` is an exact forward recursion over those 3 x (K + 1) states, carrying only the probability
mass of paths without a purchase. This is the oracle that models are compared with: it knows the latent state
at ``t`` (whether the customer has already begun to disengage or gone dormant), which no model sees.

In scenarios that bill subscriptions in ``transactions`` (:mod:`features.synthetic.scenarios`) a charge is a
purchase too, and the recursion also carries whether the subscription active at ``t`` is still active. That is
enough to stay exact: the subscription's billing days are fixed by its start day
(:func:`features.synthetic.params.billing_days`); it ends only by a downgrade, whose new subscription is charged on
its first day, or by going dormant, which cancels it without a charge; and a dormant subscriber who returns and
subscribes again is charged on the new subscription's first day. So on every path without a purchase the
subscription at ``t`` keeps its plan, and any new subscription within the horizon is a purchase.
"""

from __future__ import annotations

import datetime as dt
import json
from math import comb
from pathlib import Path

import numpy as np
import pandas as pd

from features.synthetic.params import (
    COUNTRIES,
    DISENGAGING,
    DORMANT,
    DOWNGRADE_PROB,
    ENGAGED,
    RESUBSCRIBE_PROB,
    STATE_NAMES,
    SimulationParams,
    billing_days,
    dropout_hazard,
    price_shock_active,
    season,
)
from features.synthetic.scenarios import Scenario, get_scenario


def load_params(truth_dir: str | Path) -> SimulationParams:
    """Read the simulation parameters that :func:`features.synthetic.simulate.generate` saved."""
    meta = json.loads((Path(truth_dir) / "params.json").read_text())
    return SimulationParams.from_json_dict(meta["params"])


def load_scenario(truth_dir: str | Path) -> Scenario:
    """The scenario the data were generated with (``default`` when ``params.json`` names none)."""
    meta = json.loads((Path(truth_dir) / "params.json").read_text())
    return get_scenario(meta.get("scenario", "default"))


def latent_state(truth_dir: str | Path, cutoff: dt.date) -> pd.DataFrame:
    """State of every customer who joined before ``cutoff``, at the start of the cutoff day.

    Returns one row per customer with ``customer_id``, ``state`` (0 engaged, 1 disengaging, 2 dormant),
    ``open_tickets`` and the latent parameters. Customers whose first purchase is on or after ``cutoff`` are
    left out (the cutoff is exclusive, like every snapshot). When the scenario bills subscriptions, also
    ``subscriber`` (drew a subscription at signup, so may subscribe again after returning),
    ``subscription_start_day`` and ``subscription_plan`` of the subscription active on the cutoff day (-1: none).
    """
    truth_dir = Path(truth_dir)
    params = load_params(truth_dir)
    day = (cutoff - params.start_date).days
    customers = pd.read_parquet(truth_dir / "customers.parquet")
    customers = customers[customers["signup_day"] < day]
    transitions = pd.read_parquet(truth_dir / "transitions.parquet", filters=[("day", "<=", day)])
    state = transitions.sort_values(["customer_id", "day"]).groupby("customer_id")["state"].last()
    tickets = pd.read_parquet(truth_dir / "tickets.parquet", filters=[("open_day", "<", day)])
    open_tickets = tickets[tickets["resolve_day"] >= day].groupby("customer_id").size()
    out = customers.assign(
        state=customers["customer_id"].map(state).astype("int8"),
        open_tickets=customers["customer_id"].map(open_tickets).fillna(0).astype("int8"),
    )
    if load_scenario(truth_dir).billing:
        subs = pd.read_parquet(truth_dir / "subscriptions.parquet")
        active = subs[(subs["start_day"] <= day) & (subs["end_day"].isna() | (subs["end_day"] > day))]
        active = active.set_index("customer_id")  # at most one per customer: a change ends one, starts the next
        out = out.assign(
            subscriber=out["customer_id"].isin(subs["customer_id"]),
            subscription_start_day=out["customer_id"].map(active["start_day"]).fillna(-1).astype("int64"),
            subscription_plan=out["customer_id"].map(active["plan"]).fillna(-1).astype("int64"),
        )
    return out.reset_index(drop=True)


def no_purchase_probability(state: pd.DataFrame, params: SimulationParams, cutoff: dt.date,
                            horizon_days: int, billing: bool | None = None) -> np.ndarray:
    """Exact P(no purchase in ``[cutoff, cutoff + horizon_days)``) for customers in ``state``.

    ``state`` is the output of :func:`latent_state` (one row per customer). With ``billing`` (the scenario
    charges subscriptions in transactions), a charge counts as a purchase and ``state`` needs the subscription
    columns :func:`latent_state` adds for such scenarios; ``None`` means billing exactly when ``state`` has them.
    """
    return no_purchase_curve(state, params, cutoff, horizon_days, billing)[:, -1]


def no_purchase_curve(state: pd.DataFrame, params: SimulationParams, cutoff: dt.date,
                      horizon_days: int, billing: bool | None = None) -> np.ndarray:
    """``S[:, h - 1]`` = exact P(no purchase in ``[cutoff, cutoff + h)``) for ``h = 1 .. horizon_days``, one row per
    customer of ``state`` (the recursion of :func:`no_purchase_probability`, read after every day)."""
    if billing is None:
        billing = "subscription_start_day" in state.columns
    n = len(state)
    k_max = params.max_open_tickets
    day0 = (cutoff - params.start_date).days
    lam = state["purchase_rate"].to_numpy()
    country = pd.Categorical(state["country"], categories=COUNTRIES).codes
    h0, z, sens = (state[c].to_numpy() for c in ("hazard_h0", "satisfaction", "price_sensitivity"))
    mu, kappa = state["return_hazard"].to_numpy(), state["ticket_rate"].to_numpy()
    rho, gamma = params.ticket_resolve_prob, params.disengaged_to_dormant

    # last axis (billing only): 1 while the subscription active at the cutoff is still active, else 0
    mass = np.zeros((n, 3, k_max + 1, 2 if billing else 1))
    subscribed = np.zeros(n, np.int64)
    if billing:
        start = state["subscription_start_day"].to_numpy()
        subscribed = (start >= 0).astype(np.int64)
        end = day0 + horizon_days
        row, bill_day = billing_days(params, start[start >= 0], np.full(subscribed.sum(), end))
        in_horizon = bill_day >= day0
        billed = np.zeros((n, horizon_days), bool)  # the subscription at the cutoff charges on that day
        billed[np.flatnonzero(start >= 0)[row[in_horizon]], bill_day[in_horizon] - day0] = True
        downgrade = DOWNGRADE_PROB * (state["subscription_plan"].to_numpy() > 0)
        resubscribe = RESUBSCRIBE_PROB * state["subscriber"].to_numpy()
    mass[np.arange(n), state["state"].to_numpy(), np.minimum(state["open_tickets"].to_numpy(), k_max),
         subscribed] = 1.0
    # P(r of n open tickets resolve today), independent of everything else (memoryless resolution)
    resolve = {(o, r): comb(o, r) * rho**r * (1 - rho) ** (o - r) for o in range(k_max + 1) for r in range(o + 1)}
    curve = np.empty((n, horizon_days))
    for d in range(day0, day0 + horizon_days):
        s_d = season(params, np.array([d]))[0]
        for s in (ENGAGED, DISENGAGING, DORMANT):
            mass[:, s] *= np.exp(-lam * s_d * params.purchase_factor[s])[:, None, None]
        # a subscription change at the end of the horizon's last day is charged after the horizon
        changes_count = billing and d + 1 < day0 + horizon_days
        if billing:
            mass[:, :, :, 1] *= ~billed[:, d - day0, None, None]
        shock = price_shock_active(params, country, d)
        new_mass = np.zeros_like(mass)
        for o in range(k_max + 1):
            hazard = dropout_hazard(params, h0, z, sens, shock, np.full(n, o))
            moves = {  # (from, to): probability per customer
                (ENGAGED, ENGAGED): 1 - hazard, (ENGAGED, DISENGAGING): hazard,
                (DISENGAGING, DISENGAGING): np.full(n, 1 - gamma), (DISENGAGING, DORMANT): np.full(n, gamma),
                (DORMANT, DORMANT): 1 - mu, (DORMANT, ENGAGED): mu,
            }
            for (s_from, s_to), p_move in moves.items():
                m = mass[:, s_from, o] * p_move[:, None]
                if billing:
                    m = _subscription_move(m, s_from, s_to, downgrade, resubscribe, changes_count)
                for r in range(o + 1):
                    after = o - r
                    base = m * resolve[(o, r)]
                    if s_from != DORMANT and after < k_max:
                        new_mass[:, s_to, after + 1] += base * kappa[:, None]
                        new_mass[:, s_to, after] += base * (1 - kappa[:, None])
                    else:
                        new_mass[:, s_to, after] += base
        mass = new_mass
        curve[:, d - day0] = mass.sum(axis=(1, 2, 3))
    return curve


def conditional_median_days(curve: np.ndarray) -> np.ndarray:
    """The median of the days from the cutoff to the next order (0 = on the cutoff day) given that it falls in the
    horizon, from :func:`no_purchase_curve`: the smallest ``k`` with ``(1 - S(k + 1)) / (1 - S(H)) >= 1/2``; NaN
    for a customer certain not to buy in the horizon. It is the best constant guess under absolute error, so no
    estimate of the next-order date can have a lower expected absolute error for that customer."""
    bought = 1 - curve  # P(next order within k + 1 days) at column k
    within = bought[:, -1]
    share = np.divide(bought, within[:, None], out=np.zeros_like(bought), where=within[:, None] > 0)
    median = np.argmax(share >= 0.5 - 1e-12, axis=1).astype(float)
    median[within <= 0] = np.nan
    return median


def _subscription_move(m: np.ndarray, s_from: int, s_to: int, downgrade: np.ndarray, resubscribe: np.ndarray,
                       charged: bool) -> np.ndarray:
    """Mass of no-purchase paths after one engagement move, split by (no subscription, cutoff's still active).

    Starting to disengage downgrades a plus or premium plan with ``DOWNGRADE_PROB`` and going dormant cancels any
    plan; a returning subscriber subscribes again with ``RESUBSCRIBE_PROB``. A new subscription is charged the
    next day, which removes the path (a purchase) when ``charged`` (that day is within the horizon).
    """
    m = m.copy()
    if (s_from, s_to) == (ENGAGED, DISENGAGING) and charged:
        m[:, 1] *= 1 - downgrade
    elif (s_from, s_to) == (DISENGAGING, DORMANT):
        m[:, 0] += m[:, 1]
        m[:, 1] = 0.0
    elif (s_from, s_to) == (DORMANT, ENGAGED) and charged:
        m[:, 0] *= 1 - resubscribe
    return m


def true_no_purchase_probability(truth_dir: str | Path, cutoff: dt.date, horizon_days: int = 90) -> pd.DataFrame:
    """True probability that each customer who joined before ``cutoff`` makes no purchase in the horizon.

    Returns ``customer_id``, ``latent_state`` (engaged / disengaging / dormant), ``open_tickets``,
    ``p_no_purchase`` and ``next_order_median_days`` (:func:`conditional_median_days`). For customers active at
    ``cutoff`` ``p_no_purchase`` is the true churn probability; for lapsed ones, one minus it is the true
    reactivation probability.
    """
    params = load_params(truth_dir)
    state = latent_state(truth_dir, cutoff)
    curve = no_purchase_curve(state, params, cutoff, horizon_days, billing=load_scenario(truth_dir).billing)
    return pd.DataFrame({
        "customer_id": state["customer_id"],
        "latent_state": pd.Categorical.from_codes(state["state"], categories=list(STATE_NAMES)),
        "open_tickets": state["open_tickets"],
        "p_no_purchase": curve[:, -1],
        "next_order_median_days": conditional_median_days(curve),
    })
