"""The true probability of future purchases in the synthetic data, computed exactly from the ground truth.

Because the simulated process is Markov in (engagement state, open tickets) given each customer's latent
parameters (see :mod:`features.synthetic.params`), the probability that a customer makes no purchase in the
days ``[t, t + H)`` is an exact forward recursion over those 3 x (K + 1) states, carrying only the probability
mass of paths without a purchase. This is the oracle that models are compared with: it knows the latent state
at ``t`` (whether the customer has already begun to disengage or gone dormant), which no model sees.
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
    ENGAGED,
    STATE_NAMES,
    SimulationParams,
    dropout_hazard,
    price_shock_active,
    season,
)


def load_params(truth_dir: str | Path) -> SimulationParams:
    """Read the simulation parameters that :func:`features.synthetic.simulate.generate` saved."""
    meta = json.loads((Path(truth_dir) / "params.json").read_text())
    return SimulationParams.from_json_dict(meta["params"])


def latent_state(truth_dir: str | Path, cutoff: dt.date) -> pd.DataFrame:
    """State of every customer who joined before ``cutoff``, at the start of the cutoff day.

    Returns one row per customer with ``customer_id``, ``state`` (0 engaged, 1 disengaging, 2 dormant),
    ``open_tickets`` and the latent parameters. Customers whose first purchase is on or after ``cutoff`` are
    left out (the cutoff is exclusive, like every snapshot).
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
    return out.reset_index(drop=True)


def no_purchase_probability(state: pd.DataFrame, params: SimulationParams, cutoff: dt.date,
                            horizon_days: int) -> np.ndarray:
    """Exact P(no purchase in ``[cutoff, cutoff + horizon_days)``) for customers in ``state``.

    ``state`` is the output of :func:`latent_state` (one row per customer).
    """
    n = len(state)
    k_max = params.max_open_tickets
    day0 = (cutoff - params.start_date).days
    lam = state["purchase_rate"].to_numpy()
    country = pd.Categorical(state["country"], categories=COUNTRIES).codes
    h0, z, sens = (state[c].to_numpy() for c in ("hazard_h0", "satisfaction", "price_sensitivity"))
    mu, kappa = state["return_hazard"].to_numpy(), state["ticket_rate"].to_numpy()
    rho, gamma = params.ticket_resolve_prob, params.disengaged_to_dormant

    mass = np.zeros((n, 3, k_max + 1))
    mass[np.arange(n), state["state"].to_numpy(), np.minimum(state["open_tickets"].to_numpy(), k_max)] = 1.0
    # P(r of n open tickets resolve today), independent of everything else (memoryless resolution)
    resolve = {(o, r): comb(o, r) * rho**r * (1 - rho) ** (o - r) for o in range(k_max + 1) for r in range(o + 1)}
    for d in range(day0, day0 + horizon_days):
        s_d = season(params, np.array([d]))[0]
        for s in (ENGAGED, DISENGAGING, DORMANT):
            mass[:, s, :] *= np.exp(-lam * s_d * params.purchase_factor[s])[:, None]
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
                m = mass[:, s_from, o] * p_move
                for r in range(o + 1):
                    after = o - r
                    base = m * resolve[(o, r)]
                    if s_from != DORMANT and after < k_max:
                        new_mass[:, s_to, after + 1] += base * kappa
                        new_mass[:, s_to, after] += base * (1 - kappa)
                    else:
                        new_mass[:, s_to, after] += base
        mass = new_mass
    return mass.sum(axis=(1, 2))


def true_no_purchase_probability(truth_dir: str | Path, cutoff: dt.date, horizon_days: int = 90) -> pd.DataFrame:
    """True probability that each customer who joined before ``cutoff`` makes no purchase in the horizon.

    Returns ``customer_id``, ``latent_state`` (engaged / disengaging / dormant), ``open_tickets`` and
    ``p_no_purchase``. For customers active at ``cutoff`` this is the true churn probability; for lapsed ones,
    one minus it is the true reactivation probability.
    """
    params = load_params(truth_dir)
    state = latent_state(truth_dir, cutoff)
    p = no_purchase_probability(state, params, cutoff, horizon_days)
    return pd.DataFrame({
        "customer_id": state["customer_id"],
        "latent_state": pd.Categorical.from_codes(state["state"], categories=list(STATE_NAMES)),
        "open_tickets": state["open_tickets"],
        "p_no_purchase": p,
    })
