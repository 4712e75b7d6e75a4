"""A small, idiomatic pandas implementation of the core RFM/BTYD features: the oracle the engines must match."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

CORE = ["frequency", "recency", "T", "monetary_value", "days_since_last_purchase", "orders", "net_spend",
        "orders_30d", "orders_90d", "orders_365d", "net_spend_90d", "refund_rate"]


def reference_rfm(transactions: pd.DataFrame, cutoff: dt.date) -> pd.DataFrame:
    """Core features per customer with an order (amount >= 0) strictly before ``cutoff``."""
    t = pd.Timestamp(cutoff)
    tx = transactions[transactions["ts"] < t].copy()
    tx["day"] = tx["ts"].dt.normalize()
    orders = tx[tx["amount"] >= 0]
    per_day = orders.groupby(["customer_id", "day"])["amount"].sum().reset_index()
    if per_day.empty:
        return pd.DataFrame(columns=CORE, index=pd.Index([], name="customer_id"))
    first = per_day.groupby("customer_id")["day"].min()
    last = per_day.groupby("customer_id")["day"].max()
    n_days = per_day.groupby("customer_id").size()
    repeat = per_day[per_day["day"] > per_day["customer_id"].map(first)]
    out = pd.DataFrame(index=first.index)
    out["frequency"] = n_days - 1
    out["recency"] = (last - first).dt.days
    out["T"] = (t - pd.Timedelta(days=1) - first).dt.days
    out["monetary_value"] = repeat.groupby("customer_id")["amount"].mean().reindex(out.index).fillna(0.0)
    out["days_since_last_purchase"] = (t - last).dt.days
    out["orders"] = orders.groupby("customer_id").size()
    out["net_spend"] = tx.groupby("customer_id")["amount"].sum().reindex(out.index)
    age = (t - tx["day"]).dt.days
    for w in (30, 90, 365):
        recent = orders[age[orders.index] <= w]
        out[f"orders_{w}d"] = recent.groupby("customer_id").size().reindex(out.index).fillna(0).astype(int)
    out["net_spend_90d"] = tx[age <= 90].groupby("customer_id")["amount"].sum().reindex(out.index).fillna(0.0)
    refunds = tx[tx["amount"] < 0].groupby("customer_id").size().reindex(out.index).fillna(0)
    out["refund_rate"] = refunds / out["orders"]
    out.index.name = "customer_id"
    return out.sort_index().astype({c: np.float64 for c in ("monetary_value", "net_spend", "net_spend_90d")})
