"""Preflight: before anything is built or trained, which models of the catalogue this data can backtest and
train with the configured horizons, activity window, cadence and lookback, and, for each that cannot, why and the
setting that would make it possible.

It replays the backtest's schedule (:func:`models.backtest.needed_cutoffs`, :func:`models.catalog.training_rows`)
on population counts taken straight from the purchase days (:mod:`features.populations`), and applies the same
rules as :meth:`models.catalog.ModelSpec.check_trainable`: more than ``validation_cutoffs`` training cutoffs with
members whose label is known, at least ``min_positives`` positive outcomes, both outcomes at the evaluation
cutoff. `churn validate` prints it; `churn run` and `churn backtest` check it first, and stop only when a
required model cannot be trained. The counts follow the label definitions (see :mod:`features.populations`), so
a model that passes here can still step aside in training on a detail the counts do not see (the CLTV count
ignores refunds; a classifier needs both outcomes in its fitting and validation cutoffs).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from common.config import HorizonsConfig, ModelsConfig, SnapshotsConfig
from features.populations import PurchaseDays, counts
from features.snapshots import cutoff_schedule, latest_labeled_cutoff
from models.catalog import MODELS, ModelSpec, check_settings

# a model's label -> (its population's members, its positives) as columns of features.populations.counts
COLUMNS = {"churned": ("active", "churned"), "days_to_next_order": ("active", "returned"),
           "reactivated": ("lapsed", "reactivated"), "future_net_revenue": ("customers", "buyers"),
           "subscription_churned": ("subscribers", "cancelled")}


@dataclass(frozen=True)
class Check:
    """One model's preflight: ``ok`` (it can be trained), the evaluation cutoff and counts or why not, and the
    setting that would make it possible (None when none would, or when it is fine)."""

    model: str
    required: bool
    ok: bool
    detail: str
    fix: str | None = None

    @property
    def line(self) -> str:
        if self.ok:
            return f"{self.model}: {self.detail}"
        verb = "cannot be trained (required)" if self.required else "steps aside"
        return f"{self.model} {verb}: {self.detail}" + (f". {self.fix}" if self.fix else "")


@dataclass(frozen=True)
class Settings:
    horizons: HorizonsConfig
    snapshots: SnapshotsConfig
    models: ModelsConfig


def _why_not(spec: ModelSpec, days: PurchaseDays, s: Settings, tables: set[str]) -> tuple[str | None, str]:
    """(the reason the model cannot be trained or None, what was found)."""
    if spec.population.needs and "subscriptions" not in tables:
        return "no subscriptions table is configured (tables.subscriptions)", ""
    h, v = s.horizons, s.models.validation_cutoffs
    first, last = days.first_day, days.last_day
    as_of = latest_labeled_cutoff(last, h.churn_days)
    if as_of <= first:
        return (f"the data spans {(last - first).days + 1} days ({first} .. {last}), shorter than the "
                f"{h.churn_days}-day churn window (horizons.churn_days)"), ""
    window = spec.horizon_days(h)
    at = spec.evaluation_cutoff(as_of, last, h)
    if at <= first:
        return (f"its {window}-day label window (horizons.{spec.horizon}) must end by the data's last day {last}, "
                f"so its latest evaluation cutoff {at} is not after the data's first day {first}"), ""
    schedule = [c for c in cutoff_schedule(at, s.snapshots, first) if c + dt.timedelta(days=window) <= at]
    members, positive = COLUMNS[spec.label]
    table = counts(days, [*schedule, at], h.activity_window_days, h.churn_days, h.cltv_days)
    train, evaluation = table.iloc[:-1], table.iloc[-1]
    usable = train[(train[members] > 0) & train[positive].notna()]
    noun = spec.population.noun
    found = (f"evaluated at {at}; {len(usable)} training cutoffs ({schedule[0] if schedule else '-'} .. "
             f"{schedule[-1] if schedule else '-'}) with {int(usable[members].sum()):,} rows of {noun} and "
             f"{int(usable[positive].sum()):,} positive outcomes")
    if len(usable) <= v:
        span = f"{len(usable)} training cutoff{'s' if len(usable) != 1 else ''}"
        return (f"{span} with {noun} before its evaluation cutoff {at} (each needs its {window}-day window "
                f"to end by then), not more than models.validation_cutoffs ({v})"), found
    if int(usable[positive].sum()) < s.models.min_positives:
        return (f"{int(usable[positive].sum()):,} positive outcomes among {int(usable[members].sum()):,} rows of "
                f"{noun} at {len(usable)} training cutoffs, fewer than models.min_positives "
                f"({s.models.min_positives})"), found
    if evaluation[members] == 0:
        return f"no {noun} at its evaluation cutoff {at}", found
    if spec.kind == "duration" and evaluation[positive] == 0:
        return f"none of the {noun} at its evaluation cutoff {at} orders again inside the churn window", found
    if spec.kind == "classifier" and evaluation[positive] in (0, evaluation[members]):
        return f"all {int(evaluation[members]):,} {noun} at its evaluation cutoff {at} have the same outcome", found
    return None, found


def _candidates(spec: ModelSpec, s: Settings) -> list[tuple[str, Settings]]:
    """Single-setting changes to try, mildest first."""
    h, out = s.horizons, []
    window = spec.horizon_days(h)
    for days in (d for d in (270, 180, 120, 90, 60, 30) if d < window):
        out.append((f"horizons.{spec.horizon}: {days}",
                    Settings(h.model_copy(update={spec.horizon: days}), s.snapshots, s.models)))
    if spec.population.name in ("lapsed", "active"):
        for days in (d for d in (270, 180, 120, 90, 60) if d < h.activity_window_days):
            out.append((f"horizons.activity_window_days: {days}",
                        Settings(h.model_copy(update={"activity_window_days": days}), s.snapshots, s.models)))
    if s.snapshots.cadence == "monthly":
        out.append(("snapshots.cadence: weekly",
                    Settings(h, s.snapshots.model_copy(update={"cadence": "weekly"}), s.models)))
    for months in (m for m in (36, 48, 60) if m > s.snapshots.lookback_months):
        out.append((f"snapshots.lookback_months: {months}",
                    Settings(h, s.snapshots.model_copy(update={"lookback_months": months}), s.models)))
    return out


def preflight(days: PurchaseDays, horizons: HorizonsConfig, schedule: SnapshotsConfig, settings: ModelsConfig,
              tables: set[str], models: Sequence[ModelSpec] = MODELS) -> list[Check]:
    """One :class:`Check` per model of the catalogue (see the module docstring); ``tables`` are the configured
    tables."""
    check_settings(settings)
    s = Settings(horizons, schedule, settings)
    checks = []
    for spec in models:
        why, found = _why_not(spec, days, s, tables)
        if why is None:
            checks.append(Check(spec.name, spec.required, True, found))
            continue
        fix = None
        if "subscriptions table" not in why:
            for setting, changed in _candidates(spec, s):
                if _why_not(spec, days, changed, tables)[0] is None:
                    also = (" (this also changes who counts as active for the churn model and the lists)"
                            if "activity_window" in setting else
                            " (this also changes the churn label and every model's cutoffs)"
                            if "churn_days" in setting else "")
                    fix = f"With {setting} it could be trained{also}"
                    break
            else:
                fix = "No single setting would make it possible on this data (more history would)"
        checks.append(Check(spec.name, spec.required, False, why, fix))
    return checks
