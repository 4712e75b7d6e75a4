"""Scoring and explaining on Spark (``engine: spark``, docs/spark.md).

The executors read the scoring snapshot's Parquet themselves and run, per partition, what is a function of the
row: the BG/NBD values from the population's fit, every champion's score (:func:`serving.scoring.score_snapshot`)
and, for the customers a list publishes, TreeSHAP and the reason texts (:func:`serving.explain.top_reasons`),
through ``mapInPandas``. What needs the whole population stays on the driver, as on DuckDB: the BG/NBD and
Gamma-Gamma fit (four columns), the ranking, budgets and control groups, the reasons' reference medians and the
drift profile, and the publisher. Each partition's result comes back as one pickled pandas frame, so its values
and dtypes are bit for bit what the same code gives in one process: the lists equal DuckDB's
(tests/pipelines/test_flows.py).
"""

from __future__ import annotations

import datetime as dt
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from common.config import HorizonsConfig

PART = "part binary"  # the schema of what a partition returns: one pickled frame


def _like(batch: pd.DataFrame, empty: pd.DataFrame, cutoff: dt.date) -> pd.DataFrame:
    """``batch`` as Spark hands it over (Arrow types: categories as text, nullable integers as floats) with the
    driver's columns and dtypes again (``empty``: the driver's snapshot, no rows), the partition's ``cutoff``
    added back."""
    batch = batch.assign(cutoff=[cutoff] * len(batch))
    out = {}
    for column, dtype in empty.dtypes.items():
        values = batch[column].reset_index(drop=True)
        if isinstance(dtype, pd.CategoricalDtype):
            out[column] = pd.Categorical(values, categories=dtype.categories, ordered=dtype.ordered)
        else:
            out[column] = values if values.dtype == dtype else values.astype(dtype)
    return pd.DataFrame(out)


def _frames(rows) -> list[pd.DataFrame]:
    return [pickle.loads(row.part) for row in rows]


class SparkScorer:
    """One scoring snapshot on Spark: ``folder`` (a snapshot folder, :func:`features.snapshots.read_snapshots`'s
    layout, on storage the executors can read) and the same snapshot on the driver (``snapshot``, one cutoff)."""

    def __init__(self, spark, folder: str | Path, snapshot: pd.DataFrame, horizons: HorizonsConfig,
                 partitions: int):
        from models.training import btyd_fit

        cutoffs = snapshot["cutoff"].unique()
        if len(cutoffs) != 1:
            raise ValueError(f"score one cutoff at a time; the snapshot has {len(cutoffs)}")
        self.spark, self.horizons, self.partitions = spark, horizons, partitions
        self.cutoff = pd.Timestamp(cutoffs[0]).date()
        self.path = str(Path(folder) / f"cutoff={self.cutoff.isoformat()}")
        self.snapshot, self.empty = snapshot, snapshot.iloc[:0]
        self.fitted = btyd_fit(snapshot, horizons.churn_days)  # the population's fit, on the driver

    def _rows(self):
        return self.spark.read.parquet(self.path).repartition(self.partitions)

    def score(self, champions: dict, next_order_max_churn: float) -> tuple[pd.DataFrame, pd.DataFrame]:
        """:func:`serving.scoring.score_snapshot` ``(..., with_inputs=True)``, the scores computed on the
        executors; the inputs (the snapshot with its BG/NBD features) are the driver's."""
        from serving.scoring import model_inputs, score_snapshot

        empty, cutoff, horizons, fitted = self.empty, self.cutoff, self.horizons, self.fitted
        inputs, _ = model_inputs(self.snapshot, horizons, fitted)
        levels = self._levels(champions, inputs)

        def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            for batch in batches:
                if len(batch):
                    scored = score_snapshot(_like(batch, empty, cutoff), champions, horizons,
                                            next_order_max_churn=next_order_max_churn, fitted=fitted,
                                            levels=levels)
                    yield pd.DataFrame({"part": [pickle.dumps(scored)]})

        parts = _frames(self._rows().mapInPandas(score, PART).collect())
        scores = pd.concat(parts, ignore_index=True).sort_values("customer_id", kind="stable")
        return scores.reset_index(drop=True), inputs

    def _levels(self, champions: dict, inputs: pd.DataFrame) -> dict[str, float]:
        """The level factor of every champion whose scores depend on the whole population (the BTYD-levelled
        CLTV model): the executors compute its raw scores, the driver the factor over all of them in customer
        order, exactly as one process would."""
        from models.catalog import get
        from models.training import btyd_level_factor
        from serving.scoring import model_inputs

        leveled = {name: c.model for name, c in champions.items() if getattr(c.model, "population_level", False)}
        if not leveled:
            return {}
        empty, cutoff, horizons, fitted = self.empty, self.cutoff, self.horizons, self.fitted

        def raw(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            for batch in batches:
                if len(batch):
                    snap, _ = model_inputs(_like(batch, empty, cutoff), horizons, fitted)
                    for name, model in leveled.items():
                        rows = snap[get(name).population.mask(snap, horizons).to_numpy()]
                        yield pd.DataFrame({"part": [pickle.dumps(pd.DataFrame({
                            "model": name, "customer_id": rows["customer_id"].to_numpy(),
                            "raw": model.raw_score(rows) if len(rows) else []}))]})

        found = pd.concat(_frames(self._rows().mapInPandas(raw, PART).collect()), ignore_index=True)
        levels = {}
        for name in leveled:
            members = inputs[get(name).population.mask(inputs, horizons).to_numpy()]
            mine = found[found["model"] == name].set_index("customer_id")["raw"]
            levels[name] = btyd_level_factor(members, mine.loc[members["customer_id"]].to_numpy())
        return levels

    def explainer(self, catalog, currency: str) -> Callable:
        """An ``explain`` for :func:`serving.scoring.add_reasons`: the listed customers' rows are picked from the
        snapshot on the executors (a broadcast join with their ids), given their model inputs there and
        explained there; the driver puts the results back in the list's order."""
        from pyspark.sql import functions as F

        from serving.explain import top_reasons
        from serving.scoring import model_inputs

        empty, cutoff, horizons, fitted = self.empty, self.cutoff, self.horizons, self.fitted

        def explain(model, rows: pd.DataFrame, raises, reference: pd.Series) -> pd.DataFrame:
            if rows.empty:
                return top_reasons(model, rows, catalog, currency, horizons.churn_days, raises=raises,
                                   reference=reference, with_drivers=True, with_contributions=True)

            def reasons(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
                for batch in batches:
                    if len(batch):
                        part, _ = model_inputs(_like(batch, empty, cutoff), horizons, fitted)
                        found = top_reasons(model, part, catalog, currency, horizons.churn_days, raises=raises,
                                            reference=reference, with_drivers=True, with_contributions=True)
                        yield pd.DataFrame({"part": [pickle.dumps(found.set_axis(part["customer_id"]))]})

            ids = self.spark.createDataFrame(pd.DataFrame({"customer_id": rows["customer_id"].astype(str)}))
            listed = self._rows().join(F.broadcast(ids), "customer_id", "left_semi")
            found = pd.concat(_frames(listed.mapInPandas(reasons, PART).collect()))
            missing = set(rows["customer_id"]) - set(found.index)
            if missing:
                raise RuntimeError(f"{len(missing)} listed customer(s) were not explained on Spark")
            return found.loc[rows["customer_id"].to_numpy()].set_axis(rows.index)

        return explain
