"""Parameters of the synthetic global retailer, shared by the simulator and the oracle.

The simulator is a discrete-time (daily) Markov process per customer, so that the oracle can compute the
*exact* probability of any future event by recursion instead of estimating it:

* engagement state ``S`` in {ENGAGED, DISENGAGING, DORMANT} and the number of open support tickets
  ``n`` in {0, ..., MAX_OPEN_TICKETS};
* on day ``d`` a customer in state ``S`` places ``Poisson(lambda_i * season(d) * purchase_factor[S])`` orders;
* at the end of day ``d`` an engaged customer starts disengaging with probability ``1 - exp(-h_i(d, n))`` where
  ``h_i(d, n) = h0_i * exp(beta_open * n - beta_satisfaction * z_i + beta_price * s_i * shock_c(d))``;
  a disengaging customer goes dormant with probability ``gamma``; a dormant customer returns (win-back) with
  probability ``return_hazard_i``;
* each open ticket is resolved during a day with probability ``rho`` (memoryless, so only ``n`` matters);
  an engaged or disengaging customer opens a new ticket with probability ``ticket_rate_i`` when ``n`` after the
  day's resolutions is below the cap.

Surveys (NPS, CSAT, CES) and ticket CSAT are noisy readings of the latent satisfaction ``z_i``; web sessions and
email engagement fall while disengaging (the leading indicators); price increases (``price_shocks``, by default
:data:`PRICE_SHOCKS`) raise spend and, for price-sensitive customers, the hazard during ``price_shock_window_days``.
A sales channel opened during the history (``new_channel``) takes a share of the orders from its first day; it
changes which channel an order is placed in and nothing else, so the Markov state and the oracle do not see it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

import numpy as np

ENGAGED, DISENGAGING, DORMANT = 0, 1, 2
STATE_NAMES = ("engaged", "disengaging", "dormant")

COUNTRIES = ("US", "GB", "DE", "FR", "CZ", "GR", "JP", "CA", "SI", "IL")
COUNTRY_WEIGHTS = (0.28, 0.13, 0.14, 0.10, 0.08, 0.07, 0.08, 0.06, 0.03, 0.03)
COUNTRY_CURRENCY = {"US": "USD", "GB": "GBP", "DE": "EUR", "FR": "EUR", "CZ": "CZK", "GR": "EUR", "JP": "JPY",
                    "CA": "CAD", "SI": "EUR", "IL": "ILS"}
COUNTRY_CONSENT_RATE = {"US": 0.80, "GB": 0.70, "DE": 0.55, "FR": 0.65, "CZ": 0.60, "GR": 0.62, "JP": 0.75,
                        "CA": 0.78, "SI": 0.58, "IL": 0.72}
# Units of the base currency (USD) for one unit of the currency, around which the daily rates wander.
FX_CENTRE = {"EUR": 1.08, "GBP": 1.27, "CZK": 0.044, "JPY": 0.0068, "CAD": 0.74, "ILS": 0.27}
CURRENCY_DECIMALS = {"USD": 2, "EUR": 2, "GBP": 2, "CZK": 2, "JPY": 0, "CAD": 2, "ILS": 2}
# Price increases per country: (day offset from the start, relative increase).
PRICE_SHOCKS = {"US": ((400, 0.08),), "GB": ((520, 0.10),), "DE": ((300, 0.07), (800, 0.09)),
                "FR": ((650, 0.12),), "CZ": ((450, 0.15),), "GR": ((700, 0.10),), "JP": ((560, 0.06),),
                "CA": ((380, 0.09), (900, 0.05)), "SI": ((610, 0.08),), "IL": ((480, 0.11),)}
CATEGORIES = ("grocery", "home", "beauty", "fashion", "electronics", "toys", "sports", "books")
CHANNELS = ("web", "app", "store")
TICKET_CATEGORIES = ("delivery", "billing", "product", "returns", "account")
PLANS = ("basic", "plus", "premium")
PLAN_PRICE_USD = (9.99, 19.99, 39.99)
PLAN_SHARES = (0.5, 0.35, 0.15)  # plan chosen at signup
RESUBSCRIBE_PLAN_SHARES = (0.6, 0.3, 0.1)  # plan chosen by a returning customer who subscribes again
# Subscription changes, tied to engagement transitions (the same uniform draw decides either): a customer who starts
# disengaging downgrades a plus or premium plan by one step with DOWNGRADE_PROB (the old subscription ends and the
# lower one starts the next day); going dormant cancels any subscription; a dormant subscriber who comes back
# subscribes again with RESUBSCRIBE_PROB (from the next day).
DOWNGRADE_PROB = 0.4
RESUBSCRIBE_PROB = 0.3
# Category of the monthly subscription charges in transactions (scenarios with billing only).
SUBSCRIPTION_CATEGORY = "subscription"


@dataclass(frozen=True)
class SimulationParams:
    """Global parameters of the simulation; per-customer parameters are drawn from these."""

    start_date: dt.date = dt.date(2023, 11, 1)
    end_date: dt.date = dt.date(2026, 10, 31)  # last simulated day (inclusive)
    base_currency: str = "USD"
    # purchase rate while engaged, per day: Gamma(shape, scale=mean/shape) across customers (NBD heterogeneity)
    purchase_rate_shape: float = 1.1
    purchase_rate_mean: float = 0.13
    purchase_factor: tuple[float, float, float] = (1.0, 0.35, 0.0)  # by state
    # spend per order (base currency): Gamma-Gamma, value ~ Gamma(p, rate nu_i), nu_i ~ Gamma(q, rate g)
    spend_p: float = 3.0
    spend_q: float = 3.5
    spend_g: float = 37.5
    # dropout: h0_i ~ Gamma(shape, scale=mean/shape) per day
    hazard_shape: float = 2.0
    hazard_mean: float = 1 / 500
    beta_open_ticket: float = 0.9
    beta_satisfaction: float = 0.6
    beta_price: float = 2.5
    price_shock_window_days: int = 60
    disengaged_to_dormant: float = 1 / 28  # gamma: mean 28 days of disengagement before going quiet
    returner_share: float = 0.35  # customers who may come back after going dormant
    return_hazard_mean: float = 1 / 300
    # support tickets
    ticket_rate_mean: float = 1 / 250
    ticket_resolve_prob: float = 1 / 6  # rho: mean 6 days open
    max_open_tickets: int = 3
    # engagement signals
    web_rate_mean: float = 0.09
    web_factor: tuple[float, float, float] = (1.0, 0.2, 0.02)
    email_open_mean: float = 0.35
    email_factor: tuple[float, float, float] = (1.0, 0.3, 0.05)
    email_every_days: int = 14
    survey_rate: float = 1 / 150
    refund_prob: float = 0.05
    subscriber_share: float = 0.12
    seasonality: tuple[float, float] = (0.15, 0.6)  # annual sine amplitude, Black-Friday-to-Christmas boost
    chunk_size: int = 50_000
    extra: dict = field(default_factory=dict)
    # Fields added after the saved format was fixed: ``params.json`` leaves each out while it has its default, so
    # that the default data's files stay byte-identical (see LATER_FIELDS).
    # price increases, country -> ((day offset from start_date, relative increase), ...); None: PRICE_SHOCKS
    price_shocks: dict | None = None
    # a sales channel opened on day offset ``new_channel_day``: from then on each order goes through it with
    # probability ``new_channel_share`` (else through the customer's usual channels); None: no new channel
    new_channel: str | None = None
    new_channel_day: int = 0
    new_channel_share: float = 0.0

    @property
    def n_days(self) -> int:
        return (self.end_date - self.start_date).days + 1

    @property
    def as_of(self) -> dt.date:
        """The data's as-of date: the day after the last simulated day."""
        return self.end_date + dt.timedelta(days=1)

    @property
    def shock_schedule(self) -> dict[str, tuple[tuple[int, float], ...]]:
        """The price increases in force: ``price_shocks``, or :data:`PRICE_SHOCKS` when it is None."""
        return PRICE_SHOCKS if self.price_shocks is None else self.price_shocks

    def to_json_dict(self) -> dict:
        d = asdict(self)
        d["start_date"] = self.start_date.isoformat()
        d["end_date"] = self.end_date.isoformat()
        for name, default in LATER_FIELDS.items():
            if d[name] == default:
                del d[name]
        return d

    @classmethod
    def from_json_dict(cls, d: dict) -> "SimulationParams":
        d = dict(d)
        d["start_date"] = dt.date.fromisoformat(d["start_date"])
        d["end_date"] = dt.date.fromisoformat(d["end_date"])
        for key in ("purchase_factor", "web_factor", "email_factor", "seasonality"):
            d[key] = tuple(d[key])
        if d.get("price_shocks") is not None:
            d["price_shocks"] = {c: tuple((int(day), float(up)) for day, up in shocks)
                                 for c, shocks in d["price_shocks"].items()}
        return cls(**d)


LATER_FIELDS = {"price_shocks": None, "new_channel": None, "new_channel_day": 0, "new_channel_share": 0.0}
"""Fields of :class:`SimulationParams` that ``params.json`` leaves out while they have these defaults."""


def season(params: SimulationParams, days: np.ndarray) -> np.ndarray:
    """Seasonal multiplier of the purchase rate for day offsets ``days`` (0 = ``start_date``)."""
    dates = np.datetime64(params.start_date) + days.astype("timedelta64[D]")
    doy = (dates - dates.astype("datetime64[Y]")).astype(int)
    month_day = dates.astype("datetime64[M]").astype(int) % 12 + 1
    amp, boost = params.seasonality
    holiday = ((month_day == 11) & (doy >= 327)) | ((month_day == 12) & (doy <= 357))
    return 1.0 + amp * np.sin(2 * np.pi * (doy - 100) / 365.25) + boost * holiday


def price_shock_active(params: SimulationParams, country_idx: np.ndarray, day: int | np.ndarray) -> np.ndarray:
    """1.0 where the customer's country raised prices within the last ``price_shock_window_days`` of ``day``."""
    out = np.zeros(np.broadcast(country_idx, day).shape)
    schedule = params.shock_schedule
    for c, country in enumerate(COUNTRIES):
        for shock_day, _ in schedule.get(country, ()):
            in_window = (day >= shock_day) & (day < shock_day + params.price_shock_window_days)
            out = np.where((country_idx == c) & in_window, 1.0, out)
    return out


def price_level(params: SimulationParams, country_idx: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Cumulative price level (1.0 before any increase) of the customer's country on ``day``."""
    level = np.ones(np.broadcast(country_idx, day).shape)
    schedule = params.shock_schedule
    for c, country in enumerate(COUNTRIES):
        for shock_day, increase in schedule.get(country, ()):
            level = np.where((country_idx == c) & (day >= shock_day), level * (1 + increase), level)
    return level


def dropout_hazard(params: SimulationParams, h0: np.ndarray, satisfaction: np.ndarray,
                   price_sensitivity: np.ndarray, shock: np.ndarray, n_open: np.ndarray) -> np.ndarray:
    """Daily probability that an engaged customer starts disengaging (see the module docstring)."""
    log_h = (params.beta_open_ticket * n_open - params.beta_satisfaction * satisfaction
             + params.beta_price * price_sensitivity * shock)
    return -np.expm1(-h0 * np.exp(log_h))


def billing_days(params: SimulationParams, start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Monthly billing days of subscriptions that start on day ``start`` and are active until ``stop`` (exclusive).

    A subscription is charged on the day it starts and then on the same day of every following month, or on the
    month's last day when that month is shorter (started on 31 January: charged 28 or 29 February, 31 March, ...).
    Days are offsets from ``params.start_date``. Returns ``(row, day)``: the index into ``start`` and the billing
    day of every charge in ``[start, stop)``, ordered by row and then day.
    """
    start = np.asarray(start, np.int64)
    stop = np.asarray(stop, np.int64)
    if len(start) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    origin = np.datetime64(params.start_date, "D")
    first = origin + start.astype("timedelta64[D]")
    month = first.astype("datetime64[M]")
    day_of_month = (first - month.astype("datetime64[D]")).astype(np.int64)  # 0-based
    n_months = int(np.max(stop - start, initial=0)) // 28 + 2  # enough months to pass every stop
    months = month[:, None] + np.arange(n_months)
    month_start = months.astype("datetime64[D]")
    month_length = ((months + 1).astype("datetime64[D]") - month_start).astype(np.int64)
    days = (month_start + np.minimum(day_of_month[:, None], month_length - 1) - origin).astype(np.int64)
    row, k = np.nonzero(days < stop[:, None])
    return row, days[row, k]
