"""Who to contact and how: risk tiers, playbooks (recommended action, offer, cost, success rate), consent,
budget-aware selection and a reproducible control group.

* **Playbooks** (``configs/playbooks.yaml``, editable without code): for each customer the first playbook of
  their list whose conditions all hold gives ``recommended_action``, ``offer``, ``cost_per_contact`` and an
  assumed ``success_rate``. Every list must end with a playbook without conditions, so everyone gets one. An
  action and an offer are one text or one per language; a customer reads them in their language (the one their
  reasons are written in, from their country), so that a row never mixes languages.
* **Expected net saved value** of contacting a customer = ``P x value x success_rate - cost``, where ``P x value``
  is ``value_at_risk`` on the at-risk list and ``expected_winback_value`` on the win-back list.
* **Consent**: customers without marketing consent (false or unknown) are never selected; they are counted.
* **Budget**: customers with a positive expected net value are taken in order of net value per unit of cost (the
  greedy solution of the knapsack, optimal when contacts are divisible) while the budget allows; no budget =
  everyone with a positive expected net value.
* **Control group**: ``blake2b(campaign_id:customer_id)`` mapped to [0, 1) below ``control_share`` puts a customer
  in ``control``: withheld from contact (no cost) but recorded, so that uplift can be measured when outcomes
  arrive. The same customer and campaign always fall in the same group. Only control customers ranked above the
  last selected treatment customer are kept, so that both groups come from the same part of the ranking.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.yamlio import load_yaml_model
from common.resources import shipped
from common.errors import ConfigError
from serving.lists import LISTS, names as list_names

DEFAULT_PLAYBOOKS = shipped("playbooks.yaml")
VALUE_COLUMN = {spec.name: spec.value for spec in LISTS}


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str
    op: Literal[">=", ">", "<=", "<", "==", "!=", "in", "not_in", "is_missing", "is_present"]
    value: Any = None

    def mask(self, frame: pd.DataFrame) -> pd.Series:
        """Where the condition holds; nowhere when ``frame`` has no such column (a feature of a table this data
        does not have: :func:`unmatchable` names those playbooks before a run)."""
        if self.column not in frame.columns:
            return pd.Series(False, index=frame.index)
        col = frame[self.column]
        if self.op == "is_missing":
            return col.isna()
        if self.op == "is_present":
            return col.notna()
        if self.op in ("in", "not_in"):
            inside = col.isin(list(self.value or []))
            return inside if self.op == "in" else ~inside & col.notna()
        compare = {">=": col.ge, ">": col.gt, "<=": col.le, "<": col.lt, "==": col.eq, "!=": col.ne}[self.op]
        return compare(self.value).fillna(False).astype(bool)


class Playbook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    list: str  # a list of serving.lists.LISTS (checked by Playbooks)
    action: str | dict[str, str]  # one text, or one per language (a CLDR code: en, de, he, ...)
    offer: str | dict[str, str] = "none"
    cost_per_contact: float = Field(ge=0)
    success_rate: float = Field(gt=0, le=1)
    when: list[Condition] = []

    def text(self, field: Literal["action", "offer"], language: str, default_language: str = "en") -> str:
        """The ``action`` or ``offer`` in ``language`` (the default language's text when it has none)."""
        value = getattr(self, field)
        if isinstance(value, str):
            return value
        return value.get(language) or value.get(default_language) or next(iter(value.values()))

    def languages(self) -> set[str] | None:
        """The languages both texts are written in (None: one text for every language)."""
        texts = [t for t in (self.action, self.offer) if isinstance(t, dict)]
        return set.intersection(*(set(t) for t in texts)) if texts else None


class Playbooks(BaseModel):
    model_config = ConfigDict(extra="forbid")

    playbooks: list[Playbook]

    @model_validator(mode="after")
    def _everyone_gets_one(self) -> "Playbooks":
        unknown = sorted({p.list for p in self.playbooks} - set(list_names()))
        if unknown:
            raise ValueError(f"playbooks for unknown list(s) {unknown}; the lists are {list_names()}")
        for name in list_names():
            mine = [p for p in self.playbooks if p.list == name]
            if not mine or mine[-1].when:
                raise ValueError(f"the last {name} playbook must have no conditions (when: []), so that every "
                                 "customer on the list gets an action")
        return self

    def for_list(self, name: str) -> list[Playbook]:
        return [p for p in self.playbooks if p.list == name]

    def untranslated(self, languages: set[str]) -> list[str]:
        """One line per playbook whose action or offer lacks one of ``languages`` (those the reasons are written
        in): its customers in that language would read reasons in theirs and an action in another."""
        lines = []
        for book in self.playbooks:
            have = book.languages()
            missing = sorted(languages - have) if have is not None else []
            if missing:
                lines.append(f"playbook {book.name!r} has no action or offer in {', '.join(missing)}: customers "
                             "in that language get the default language's text; add it to the playbooks file")
        return lines


def unmatchable(playbooks: Playbooks, columns: set[str]) -> list[str]:
    """One line per playbook that can never match because a condition reads a column outside ``columns`` (the
    list columns and snapshot features this data and config provide): such a condition is false, and the next
    playbook of the list applies."""
    lines = []
    for book in playbooks.playbooks:
        absent = sorted({c.column for c in book.when} - columns)
        if absent:
            lines.append(f"playbook {book.name!r} ({book.list}) can never match: no {', '.join(absent)} in this "
                         "data (a condition on an absent column is false); its customers get the next playbook")
    return lines


def load_playbooks(path: str | Path = DEFAULT_PLAYBOOKS) -> Playbooks:
    """Read and check the playbooks file (a clear error naming the file and the problem)."""
    return load_yaml_model(path, Playbooks, "playbooks")


def risk_tiers(probability: pd.Series, thresholds: dict[str, float], below: str = "low") -> pd.Series:
    """The first tier (highest threshold first) whose threshold the probability reaches, else ``below``."""
    tiers = pd.Series(below, index=probability.index, dtype="object")
    for tier, minimum in sorted(thresholds.items(), key=lambda kv: kv[1]):  # higher thresholds overwrite
        tiers[probability >= minimum] = tier
    return tiers


def assign_playbooks(frame: pd.DataFrame, playbooks: list[Playbook], languages: pd.Series | None = None,
                     default_language: str = "en") -> pd.DataFrame:
    """``playbook``, ``recommended_action``, ``offer``, ``cost_per_contact``, ``success_rate`` per row: the first
    playbook whose conditions all hold (``frame`` holds the list columns and the snapshot features). The action
    and offer are in each row's ``languages`` (default: ``default_language``)."""
    chosen = pd.Series(-1, index=frame.index)
    for i, book in enumerate(playbooks):
        match = pd.Series(True, index=frame.index)
        for condition in book.when:
            match &= condition.mask(frame)
        chosen[(chosen < 0) & match] = i
    if languages is None:
        languages = pd.Series(default_language, index=frame.index)
    pairs = list(zip(chosen.tolist(), languages.tolist()))
    texts = {(i, lang): (playbooks[i].text("action", lang, default_language),
                         playbooks[i].text("offer", lang, default_language)) for i, lang in set(pairs)}
    fields = {"playbook": "name", "cost_per_contact": "cost_per_contact", "success_rate": "success_rate"}
    out = pd.DataFrame({col: [getattr(playbooks[i], attr) for i in chosen] for col, attr in fields.items()},
                       index=frame.index)
    out.insert(0, "recommended_action", [texts[p][0] for p in pairs])
    out.insert(1, "offer", [texts[p][1] for p in pairs])
    return out[["playbook", "recommended_action", "offer", "cost_per_contact", "success_rate"]]


def in_control(customer_ids: pd.Series, campaign_id: str, share: float) -> np.ndarray:
    """True for the customers in the campaign's control group (a hash of campaign and customer, below ``share``)."""
    def unit(customer_id: str) -> float:
        digest = hashlib.blake2b(f"{campaign_id}:{customer_id}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2.0 ** 64

    return np.fromiter((unit(c) < share for c in customer_ids.astype(str)), dtype=bool, count=len(customer_ids))


def select(frame: pd.DataFrame, list_name: str, budget: float | None, control_share: float, campaign_id: str
           ) -> pd.DataFrame:
    """The customers to publish: treatment within the budget plus their control group, with
    ``expected_net_value``, ``contact_group`` and ``campaign_id``. ``frame`` needs the value column of the list,
    ``cost_per_contact``, ``success_rate``, ``marketing_consent`` and ``customer_id``."""
    value = frame[VALUE_COLUMN[list_name]].fillna(0) * frame["success_rate"] - frame["cost_per_contact"]
    frame = frame.assign(expected_net_value=value)
    eligible = frame[(frame["expected_net_value"] > 0) & frame["marketing_consent"].fillna(False).astype(bool)]
    cost = eligible["cost_per_contact"].to_numpy()
    ratio = np.where(cost > 0, eligible["expected_net_value"].to_numpy() / np.where(cost > 0, cost, 1), np.inf)
    order = eligible.assign(_ratio=ratio).sort_values(["_ratio", "customer_id"], ascending=[False, True],
                                                      kind="stable")
    control = in_control(order["customer_id"], campaign_id, control_share)
    keep = np.zeros(len(order), dtype=bool)
    spent, last_treated = 0.0, -1
    for i, (is_control, c) in enumerate(zip(control, order["cost_per_contact"].to_numpy())):
        if is_control:
            keep[i] = True
        elif budget is None or spent + c <= budget:
            keep[i], spent, last_treated = True, spent + c, i
    keep[last_treated + 1:] &= ~control[last_treated + 1:]  # no control customers beyond the last treated one
    chosen = order[keep].drop(columns="_ratio")
    groups = np.where(control[keep], "control", "treatment")
    return chosen.assign(contact_group=groups, campaign_id=campaign_id)


def marketing_consent(validated_dir: Path) -> pd.Series | None:
    """customer_id -> marketing consent from the validated customers table (None when there is none); unknown
    consent counts as no consent."""
    import pyarrow.parquet as pq

    path = Path(validated_dir) / "customers.parquet"
    if not path.exists() or "marketing_consent" not in pq.ParquetFile(path).schema_arrow.names:
        return None  # a customers table without the column knows no consent either
    consent = pd.read_parquet(path, columns=["customer_id", "marketing_consent"])
    return consent.set_index("customer_id")["marketing_consent"].astype("boolean").fillna(False).astype(bool)


def check_budgets(budgets: dict[str, float | None]) -> None:
    """A clear error for a budget of a list that does not exist (``targeting.budgets`` keys are list names)."""
    unknown = sorted(set(budgets) - set(list_names()))
    if unknown:
        raise ConfigError(f"targeting.budgets names unknown list(s) {unknown}; the lists are {list_names()}")


def campaign_summary(selected: pd.DataFrame, list_name: str, candidates: int, without_consent: int) -> dict:
    """Counts, cost and the expected return of one list's campaign (treatment only is contacted)."""
    treated = selected[selected["contact_group"] == "treatment"]
    saved = float((treated[VALUE_COLUMN[list_name]] * treated["success_rate"]).sum())
    cost = float(treated["cost_per_contact"].sum())
    return {"candidates": int(candidates), "held_back_no_consent": int(without_consent),
            "treatment": int(len(treated)), "control": int((selected["contact_group"] == "control").sum()),
            "cost": cost, "expected_saved_value": saved, "expected_net_return": saved - cost,
            "return_on_cost": saved / cost if cost > 0 else None}
