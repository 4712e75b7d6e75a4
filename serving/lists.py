"""The list catalogue: every retention list the pipeline publishes, declared once.

A :class:`ListSpec` says who is on the list (the customers its model scores: the rows where its ``probability``
column is set), what ranks it (``value``), which columns it publishes and in what order, and where it goes (one
folder of files and one SQL table named after it, with the view ``<name>_latest``). Scoring, targeting, the
reasons, publishing, ``churn forget`` and the summaries iterate over :data:`LISTS`; adding a list is one entry here
plus its tests (and its playbooks, whose last entry for the list must have no conditions).
"""

from __future__ import annotations

from dataclasses import dataclass

from models import catalog
from models.catalog import ModelSpec


@dataclass(frozen=True)
class ListSpec:
    """One published list.

    ``probability`` is the scoring column of the model that defines the list (its reasons explain that model);
    ``value`` ranks it (highest first) and is the ``P x value`` of the expected net value of a contact;
    ``columns`` are its own columns in published order, before the scores of the models declared ``on_lists``
    (inserted before ``rfm_segment``); ``tiered``: risk tiers from ``probability`` (else every row's tier is the
    model population's name).
    """

    name: str
    description: str
    probability: str
    value: str
    columns: tuple[str, ...]
    tiered: bool = False

    @property
    def model(self) -> ModelSpec:
        """The model whose scores define the list."""
        return catalog.producing(self.probability)

    @property
    def table(self) -> str:
        """The SQL table holding every as-of date of the list."""
        return self.name

    @property
    def latest_view(self) -> str:
        return f"{self.name}_latest"

    @property
    def model_columns(self) -> list[str]:
        """The scores of the models declared ``on_lists`` that are not the list's own columns."""
        return [m.score_column for m in catalog.MODELS if m.on_lists and m.score_column not in self.columns]

    @property
    def list_columns(self) -> list[str]:
        """The published columns of the list (before reasons, tier and actions are added)."""
        at = self.columns.index("rfm_segment")
        return [*self.columns[:at], *self.model_columns, *self.columns[at:]]


LISTS: tuple[ListSpec, ...] = (
    ListSpec("at_risk", "active customers ranked by the revenue expected to be lost (value at risk)",
             probability="churn_probability", value="value_at_risk",
             columns=("customer_id", "as_of", "churn_probability", "predicted_cltv", "value_at_risk", "p_alive",
                      "expected_next_order_date", "rfm_segment", "country"), tiered=True),
    ListSpec("winback", "lapsed customers ranked by the revenue expected from winning them back",
             probability="reactivation_probability", value="expected_winback_value",
             columns=("customer_id", "as_of", "reactivation_probability", "predicted_cltv", "value_if_reactivated",
                      "expected_winback_value", "p_alive", "rfm_segment", "country")),
)


# the money columns of every list, in the base currency: published rounded to its minor unit, with a `currency`
# column after expected_net_value
MONEY_COLUMNS = ("predicted_cltv", "value_at_risk", "value_if_reactivated", "expected_winback_value",
                 "cost_per_contact", "expected_net_value")


def get(name: str) -> ListSpec:
    """The declaration of list ``name`` (a clear error naming the known ones otherwise)."""
    for spec in LISTS:
        if spec.name == name:
            return spec
    raise KeyError(f"unknown list {name!r}; expected one of {names()}")


def names() -> list[str]:
    return [spec.name for spec in LISTS]
