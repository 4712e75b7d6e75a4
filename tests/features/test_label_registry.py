"""Labels are declared once, in the label registry next to their definitions; a label can never become a feature."""

from __future__ import annotations

import datetime as dt

import ibis
import pytest

from common.config import HorizonsConfig
from features import definitions as d
from features.snapshots import build_snapshots, open_sources
from models.training import feature_columns

CUTOFFS = [dt.date(2026, 3, 1), dt.date(2026, 4, 1)]


def _orders_in_30d(x: d.LabelInputs) -> ibis.Table:
    """A new outcome: orders in [t, t + 30 days), counted from the per-day rows."""
    window = (x.days.day >= x.cutoffs.cutoff) & (x.days.day < x.cutoffs.cutoff + ibis.interval(days=30))
    days = x.days.join(x.cutoffs, window)
    return days.group_by(["customer_id", "cutoff"]).aggregate(orders_next_30d=days.orders.sum())


def test_a_new_label_reaches_the_snapshot_but_never_the_features(validated_dir, monkeypatch):
    monkeypatch.setattr(d, "LABEL_FAMILIES", [*d.LABEL_FAMILIES,
                                              d.LabelFamily("next_month", ("orders_next_30d",), _orders_in_30d)])
    snap = build_snapshots(open_sources(validated_dir), CUTOFFS, HorizonsConfig(), with_labels=True)
    assert "orders_next_30d" in snap.columns and snap["orders_next_30d"].notna().any()
    features = feature_columns(snap)
    assert "orders_next_30d" not in features
    assert not set(features) & set(d.label_columns())  # no outcome of the registry is a feature
    assert {"days_since_last_purchase", "orders"} <= set(features)


def test_a_label_family_computing_an_undeclared_column_is_refused(validated_dir, monkeypatch):
    def sneaky(x: d.LabelInputs) -> ibis.Table:
        return _orders_in_30d(x).mutate(bought_next_30d=ibis.literal(True))

    monkeypatch.setattr(d, "LABEL_FAMILIES", [*d.LABEL_FAMILIES,
                                              d.LabelFamily("next_month", ("orders_next_30d",), sneaky)])
    with pytest.raises(ValueError, match=r"declares \['orders_next_30d'\] but computes .*bought_next_30d.*"
                                         "declare every outcome column"):
        build_snapshots(open_sources(validated_dir), CUTOFFS, HorizonsConfig(), with_labels=True)


def test_every_label_of_the_snapshot_is_declared(validated_dir):
    """The labeled snapshot's columns minus the unlabeled one's are exactly the registry's outcomes."""
    src = open_sources(validated_dir)
    labeled = build_snapshots(src, CUTOFFS[:1], HorizonsConfig(), with_labels=True)
    plain = build_snapshots(src, CUTOFFS[:1], HorizonsConfig())
    assert set(labeled.columns) - set(plain.columns) == set(d.label_columns())
