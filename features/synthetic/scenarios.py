"""Named scenarios of the synthetic generator: businesses unlike the default retailer, each with exact ground truth.

A scenario is declared once, as a :class:`Scenario` in :data:`SCENARIOS`; the simulator, the oracle, the CLI's
``--scenario`` option, the tests and the docs all iterate over that registry. A scenario changes only what the
declaration says: parameter overrides, which contract tables are written, columns left out, the signup pattern and
whether subscriptions are billed in ``transactions``. Everything else is the default process of
:mod:`features.synthetic.params`, so the oracle of :mod:`features.synthetic.oracle` stays exact for every one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

from common.errors import ConfigError
from features.synthetic.params import PRICE_SHOCKS, SimulationParams

DRIFT_DATE = dt.date(2026, 8, 3)
"""When the ``drifted`` scenario's changes start: the first day that no training snapshot of a model scored on
2026-11-01 sees (its newest training cutoff, 2026-08-03, is the latest one whose 90-day churn window ends with the
data; a snapshot sees only the days before its cutoff)."""
DRIFT_DAY = (DRIFT_DATE - SimulationParams().start_date).days
DRIFT_MARKET = "US"
DRIFT_PRICE_INCREASE = 2.0  # prices triple
DRIFT_CHANNEL, DRIFT_CHANNEL_SHARE = "marketplace", 0.3

TABLES = ("customers", "transactions", "support_tickets", "surveys", "web_sessions", "email_events",
          "subscriptions", "fx_rates")
"""Every contract table the generator can write, in the order it reports them."""


@dataclass(frozen=True)
class Scenario:
    """One kind of business the generator can simulate.

    Parameters
    ----------
    name, description
        How ``churn generate --scenario`` and the docs refer to it.
    overrides
        :class:`SimulationParams` fields replaced (applied on top of the ``params`` given to ``generate``).
    tables
        The contract tables written (``<table>.parquet``); the simulation is the same whatever is left out, so the
        ground truth and the tables that are written do not depend on it.
    dropped_columns
        Table name -> columns left out of that table's file.
    signup_window_days
        ``None``: the default acquisition (a launch cohort, then growing acquisition over the whole history);
        a number ``w``: every customer joins on a day drawn uniformly from the first ``w`` days, nobody later.
    billing
        Subscriptions are charged in ``transactions`` (category ``"subscription"``) on every billing day while
        active (:func:`features.synthetic.params.billing_days`); a charge is a purchase, also for the oracle.
    """

    name: str
    description: str
    overrides: dict = field(default_factory=dict)
    tables: tuple[str, ...] = TABLES
    dropped_columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    signup_window_days: int | None = None
    billing: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.tables) - set(TABLES)
        if unknown or any(t not in self.tables for t in self.dropped_columns):
            raise ValueError(f"scenario {self.name!r}: tables must be among {TABLES} and include those with "
                             f"dropped columns")

    def params(self, base: SimulationParams | None = None) -> SimulationParams:
        """``base`` (default: :class:`SimulationParams`) with this scenario's overrides applied."""
        return replace(base or SimulationParams(), **self.overrides)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("default", "The global retailer: every table, three years (2023-11-01 to 2026-10-31), a launch "
                        "cohort then growing acquisition, 12% subscribers whose fees are not in transactions."),
    Scenario("transactions-only", "The default business when only orders and exchange rates are available: "
                                  "transactions and fx_rates are written, no other table.",
             tables=("transactions", "fx_rates")),
    Scenario("single-cohort", "One acquisition cohort: every customer joins within the first quarter "
                              "(91 days) of 18 months of history (2025-05-01 to 2026-10-31) and nobody later, "
                              "so activity decays as customers drop out.",
             overrides={"start_date": dt.date(2025, 5, 1)}, signup_window_days=91),
    Scenario("short-history", "A young business: 12 months of history (2025-11-01 to 2026-10-31) with the default "
                              "acquisition pattern.",
             overrides={"start_date": dt.date(2025, 11, 1)}),
    Scenario("no-consent-data", "Every table, but the customers table has no marketing_consent column (consent is "
                                "still simulated and still decides who gets e-mails; it is just not exported).",
             dropped_columns={"customers": ("marketing_consent",)}),
    Scenario("subscription-business", "Most revenue is subscription fees: 70% of customers subscribe, each "
                                      "subscription is charged monthly in transactions (category subscription, "
                                      "channel web, the subscription's amount and currency), and orders are rare "
                                      "(one every 200 days while engaged, 30 USD on average).",
             overrides={"subscriber_share": 0.7, "purchase_rate_mean": 0.005, "spend_g": 25.0}, billing=True),
    Scenario("stable", "The default business with prices that never change: no price increase in any market, so "
                       "nothing about how customers behave changes over the three years but the seasons (and the "
                       "customer base grows and ages as in the default). A drift check must stay quiet on it.",
             overrides={"price_shocks": {}}),
    Scenario("drifted", "The default business with two changes from 2026-08-03 on, after the newest training "
                        "snapshot of a model scored on 2026-11-01: prices in the US triple (a price increase like "
                        "the scheduled ones: order values x 3, and for 60 days a higher dropout hazard for "
                        "price-sensitive US customers), and a new sales channel, marketplace, takes 30% of the "
                        "orders in every market. A drift check must see both, and nothing else.",
             overrides={"price_shocks": {**PRICE_SHOCKS, DRIFT_MARKET: PRICE_SHOCKS[DRIFT_MARKET] + (
                 (DRIFT_DAY, DRIFT_PRICE_INCREASE),)},
                 "new_channel": DRIFT_CHANNEL, "new_channel_day": DRIFT_DAY,
                 "new_channel_share": DRIFT_CHANNEL_SHARE}),
)}
"""Every scenario, by name; ``default`` is exactly the generator's output from before scenarios existed."""


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``; a :class:`~common.errors.ConfigError` listing the known ones otherwise."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ConfigError(f"unknown scenario {name!r}; known scenarios: {', '.join(SCENARIOS)} "
                          "(set generator.scenario or pass --scenario)") from None


def scenario_tables(name: str) -> tuple[str, ...]:
    """The contract tables the scenario writes (``<table>.parquet`` in the output folder), in :data:`TABLES` order.

    Write a config naming only these, e.g. ``{t: {"source": {"path": f"raw/{t}.parquet"}} for t in ...}``.
    """
    return get_scenario(name).tables
