"""The model catalogue: every model the pipeline backtests, trains, registers and scores, declared once.

A :class:`ModelSpec` says who the model is for (its :class:`Population`), what it predicts (a label of
:data:`features.definitions.LABEL_FAMILIES`), how it is fitted, which baselines it must beat in the backtest, how a
challenger replaces the champion, and which scoring column it writes. :mod:`models.backtest`,
:mod:`models.tracking`, :func:`pipelines.jobs.train`, :mod:`serving.scoring` and the CLI iterate over
:data:`MODELS`; adding a model is one entry here plus its tests.

A model that is not ``required`` steps aside, with one line naming it and the reason (also in the backtest report),
when the data cannot train it: its population or label is missing (no subscriptions table), its label window does
not fit in the data's history, or its training rows have too few positive outcomes (``models.min_positives``). The
other models train and score as usual, and its scoring column stays empty. :mod:`models.preflight` says the same
before anything runs, with the setting that would make the model possible.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from common.config import HorizonsConfig, ModelsConfig, SnapshotsConfig
from common.errors import ConfigError


class _OnFirstUse:
    """A module imported when one of its names is first used: the catalogue is read by quick commands (`churn
    models`) that never train, and LightGBM, scikit-learn and SciPy cost seconds to import."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute: str):
        import importlib

        return getattr(importlib.import_module(self._name), attribute)


m = _OnFirstUse("models.metrics")
tr = _OnFirstUse("models.training")

# the baselines' columns
RECENCY_RULE = ["days_since_last_purchase"]
RFM_COLUMNS = ["days_since_last_purchase", "orders", "net_spend"]
SUBSCRIPTION_COLUMNS = ["months_subscribed", "subscription_monthly_amount", "days_since_last_purchase", "orders",
                        "net_spend"]


class StepAside(ValueError):
    """A model cannot be trained on this data (its population or label is missing, its label window does not fit,
    too few positive outcomes). ``str()`` is the one line people read: ``<model> steps aside: <reason>``."""

    def __init__(self, model: str, reason: str):
        super().__init__(f"{model} steps aside: {reason}")
        self.model, self.reason = model, reason


# ---- populations ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Population:
    """Who a model is for, as a rule on the snapshot's features (the same at training and at scoring time)."""

    name: str
    noun: str  # how a report counts its members: "4,350 lapsed customers"
    description: str
    rule: Callable[[pd.DataFrame, HorizonsConfig], pd.Series]
    needs: tuple[str, ...] = ()  # snapshot columns the rule reads that come from an optional table

    def mask(self, snapshot: pd.DataFrame, horizons: HorizonsConfig) -> pd.Series:
        """True for the rows of ``snapshot`` in the population (all False when a needed column is absent)."""
        if any(c not in snapshot.columns for c in self.needs):
            return pd.Series(False, index=snapshot.index)
        return self.rule(snapshot, horizons).fillna(False).astype(bool)

    def missing(self, snapshot: pd.DataFrame) -> list[str]:
        return [c for c in self.needs if c not in snapshot.columns]


ACTIVE = Population("active", "active customers",
                    "customers with an order in the last activity_window_days before the cutoff (the labels' "
                    "is_active)",
                    lambda s, h: s["days_since_last_purchase"] <= h.activity_window_days)
LAPSED = Population("lapsed", "lapsed customers",
                    "customers whose last order is more than activity_window_days before the cutoff",
                    lambda s, h: s["days_since_last_purchase"] > h.activity_window_days)
CUSTOMERS = Population("customers", "customers", "every customer with an order before the cutoff",
                       lambda s, h: pd.Series(True, index=s.index))
SUBSCRIBERS = Population("subscribers", "subscribers",
                         "customers with an active subscription at the cutoff (started before it, not cancelled "
                         "before it)",
                         lambda s, h: s["subscription_plan"].notna(), needs=("subscription_plan",))


# ---- what a backtest hands a model and its baselines -------------------------------------------------------------


@dataclass
class BacktestData:
    """One model's backtest at its evaluation cutoff ``as_of``: the training rows (its population at the cutoffs
    whose label window ends on or before ``as_of``) and the evaluation rows (its population at ``as_of``, label
    known), plus what baselines need."""

    snapshots: pd.DataFrame
    as_of: dt.date
    train: pd.DataFrame
    evaluation: pd.DataFrame
    cutoff_rows: pd.DataFrame  # every customer at as_of (BG/NBD is fitted on them, no labels used)
    horizons: HorizonsConfig
    schedule: SnapshotsConfig
    btyd_by_cutoff: dict = field(default_factory=dict)  # shared by the models of one backtest

    def btyd(self) -> pd.DataFrame:
        """:func:`models.training.btyd_predictions` at ``as_of`` for the evaluation rows (fitted once per cutoff
        and backtest, whichever model asks first)."""
        return btyd_at(self.btyd_by_cutoff, self.as_of, self.cutoff_rows, self.horizons).loc[self.evaluation.index]

    def allowed(self, horizon_days: int) -> pd.DataFrame:
        """Every row (all customers) at the training cutoffs of ``as_of`` whose ``horizon_days`` window has ended."""
        from features.snapshots import cutoff_schedule

        return training_rows(self.snapshots, self.as_of, horizon_days, cutoff_schedule(self.as_of, self.schedule))


def btyd_at(cache: dict, cutoff: dt.date, cutoff_rows: pd.DataFrame, horizons: HorizonsConfig) -> pd.DataFrame:
    """BG/NBD and Gamma-Gamma predictions for every customer at ``cutoff`` (``cutoff_rows``), kept in ``cache``."""
    if cutoff not in cache:
        cache[cutoff] = tr.btyd_predictions(cutoff_rows, horizons.churn_days, horizons.cltv_days)
    return cache[cutoff]


def evaluation_cutoff(as_of: dt.date, last_day: dt.date, horizon_days: int) -> dt.date:
    """``as_of`` when a ``horizon_days`` label window at ``as_of`` lies inside the data, else the latest cutoff whose
    window does."""
    from features.snapshots import latest_labeled_cutoff

    return min(as_of, latest_labeled_cutoff(last_day, horizon_days))


def training_rows(snapshots: pd.DataFrame, as_of: dt.date, horizon_days: int,
                  cutoffs: list[dt.date]) -> pd.DataFrame:
    """Rows at ``cutoffs`` whose label window ``[t, t + horizon_days)`` ends on or before ``as_of``."""
    allowed = {c for c in cutoffs if c + dt.timedelta(days=horizon_days) <= as_of}
    return snapshots[snapshots["cutoff"].isin(allowed)]


# ---- baselines ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    """A simple method the model must beat: ``score(data)`` returns one prediction per evaluation row and any
    extra figures to report beside its metrics."""

    name: str
    description: str
    score: Callable[[BacktestData, str], tuple[np.ndarray, dict]]


def _btyd(column: str, invert: bool = False) -> Callable[[BacktestData, str], tuple[np.ndarray, dict]]:
    def score(data: BacktestData, label: str) -> tuple[np.ndarray, dict]:
        values = data.btyd()[column].to_numpy(dtype=float)
        return (1 - values if invert else values), {}
    return score


def _rule(columns: list[str]) -> Callable[[BacktestData, str], tuple[np.ndarray, dict]]:
    def score(data: BacktestData, label: str) -> tuple[np.ndarray, dict]:
        return tr.fit_rule(data.train, label, columns).score(data.evaluation), {}
    return score


def _historical_formula(data: BacktestData, label: str) -> tuple[np.ndarray, dict]:
    rate = tr.annual_churn_rate(data.allowed(data.horizons.churn_days), data.horizons.churn_days)
    return tr.historical_cltv(data.evaluation, data.horizons.cltv_days, rate), {"annual_churn_rate": rate}


def _typical_gap(data: BacktestData, label: str) -> tuple[np.ndarray, dict]:
    return tr.typical_gap_next_order_days(data.evaluation), {}


def _tenure_plan(data: BacktestData, label: str) -> tuple[np.ndarray, dict]:
    return tr.fit_tenure_plan_rule(data.train, label).score(data.evaluation), {}


BTYD_NO_PURCHASE = "P(no purchase in the churn horizon) from BG/NBD, fitted on the evaluation cutoff"
RECENCY = "logistic regression on log1p(days since the last purchase)"
RFM = "logistic regression on log1p of recency, orders and net spend"

# ---- promotion ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Promotion:
    """A challenger becomes champion when ``metric`` is at least the config's ``margin`` (a ModelsConfig field)
    better than the champion's on the same evaluation cutoff (higher, or lower with ``lower_is_better``), and
    none of ``not_worse`` (lower is better) is higher."""

    metric: str
    label: str
    margin: str
    not_worse: tuple[str, ...] = ()
    lower_is_better: bool = False

    def gain(self, challenger: dict[str, float], champion: dict[str, float]) -> float:
        """How much better the challenger's ``metric`` is (positive: better)."""
        difference = challenger[self.metric] - champion[self.metric]
        return -difference if self.lower_is_better else difference


CLASSIFIER_PROMOTION = Promotion("roc_auc", "ROC AUC", "promotion_margin_auc", not_worse=("ece",))
REGRESSOR_PROMOTION = Promotion("normalized_gini", "normalized Gini", "promotion_margin_gini")
DURATION_PROMOTION = Promotion("median_abs_error_days", "reduction of the median absolute error (days)",
                               "promotion_margin_days", lower_is_better=True)
PROMOTIONS = {"classifier": CLASSIFIER_PROMOTION, "regressor": REGRESSOR_PROMOTION, "duration": DURATION_PROMOTION}

# metrics logged with each registered version (and compared by promotion), and those in the backtest table
LOGGED_METRICS = {"classifier": ("roc_auc", "pr_auc", "ece", "brier"),
                  "regressor": ("normalized_gini", "spearman", "total_error"),
                  "duration": ("median_abs_error_days", "median_abs_error_days_unrounded", "mean_abs_error_days",
                              "within_7_days")}
TABLE_METRICS = {"classifier": ("roc_auc", "pr_auc", "brier", "ece", "top_decile_lift", "top_decile_capture"),
                 "regressor": ("normalized_gini", "spearman", "decile_mape", "total_error"),
                 "duration": ("median_abs_error_days", "median_abs_error_days_unrounded", "mean_abs_error_days",
                              "within_7_days")}


# ---- the model declaration ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """One model of the pipeline.

    ``section`` names it in backtest reports (``report[section]``) and in the published
    ``<section>_model_version`` column; ``horizon`` says which label window decides the cutoffs it may train on
    and its evaluation cutoff (the latest one on or before the backtest's as-of date whose window lies inside the
    data); ``score_column`` is what scoring writes for its population; ``on_lists`` also publishes that column on
    every list (empty outside the population); ``oracle`` turns the generator's truth per evaluation row (the
    frame of :func:`features.synthetic.oracle.true_no_purchase_probability`) into the model's best possible
    prediction (generated data only); ``explains`` says what a higher score means, for the reasons: churn
    risk, or (win-back) the chance that the customer buys again; ``plot_prefix`` asks for backtest plots
    (``<prefix>roc.png`` ... for classifiers, ``<prefix>deciles.png`` for regressors).
    """

    name: str
    section: str
    kind: Literal["classifier", "regressor", "duration"]  # duration: a number of days, L1 (the median)
    description: str
    population: Population
    label: str
    score_column: str
    baselines: tuple[Baseline, ...]
    horizon: Literal["churn_days", "cltv_days"] = "churn_days"
    required: bool = True
    on_lists: bool = False
    oracle: Callable[[pd.DataFrame], np.ndarray] | None = None
    explains: Literal["risk", "return"] = "risk"  # what a higher score means: churn risk, or the chance to return
    plot_prefix: str | None = None
    # this model's own boosting settings over the shared ``models`` ones (``models.per_model`` overrides them)
    boosting: dict = field(default_factory=dict)

    @property
    def promotion(self) -> Promotion:
        return PROMOTIONS[self.kind]

    @property
    def logged_metrics(self) -> tuple[str, ...]:
        return LOGGED_METRICS[self.kind]

    @property
    def table_metrics(self) -> tuple[str, ...]:
        return TABLE_METRICS[self.kind]

    @property
    def version_column(self) -> str:
        return f"{self.section}_model_version"

    def horizon_days(self, horizons: HorizonsConfig) -> int:
        return getattr(horizons, self.horizon)

    def evaluation_cutoff(self, as_of: dt.date, last_day: dt.date, horizons: HorizonsConfig) -> dt.date:
        """:func:`evaluation_cutoff` for this model's label window."""
        return evaluation_cutoff(as_of, last_day, self.horizon_days(horizons))

    def rows(self, snapshots: pd.DataFrame, horizons: HorizonsConfig) -> pd.DataFrame:
        """The population's rows of ``snapshots``, or :class:`StepAside` when the data cannot have any."""
        missing = self.population.missing(snapshots)
        if missing or self.label not in snapshots.columns:
            raise StepAside(self.name, f"the snapshots have no {', '.join(missing or [self.label])} "
                            f"(the {self.population.name} population needs it; is its table configured?)")
        return snapshots[self.population.mask(snapshots, horizons)]

    def positives(self, rows: pd.DataFrame) -> pd.Series:
        """True for the labeled rows with a positive outcome (the event happened; CLTV: the customer bought; a
        duration: every row whose label is known, i.e. the event happened inside the window)."""
        values = rows[self.label].dropna()
        if self.kind == "duration":
            return pd.Series(True, index=values.index)
        return values.astype(bool) if self.kind == "classifier" else values > 0

    def settings(self, settings: ModelsConfig) -> ModelsConfig:
        """The LightGBM settings this model trains with (:meth:`common.config.ModelsConfig.for_model`)."""
        return settings.for_model(self.name, self.boosting)

    def check_trainable(self, rows: pd.DataFrame, settings: ModelsConfig, where: str = "training") -> None:
        """:class:`StepAside` when the population's labeled ``rows`` cannot train the model: too few cutoffs for
        the temporal validation split, fewer than ``settings.min_positives`` positive outcomes, or a split
        without both outcomes (classifiers)."""
        labeled = rows[rows[self.label].notna()]
        noun = self.population.noun
        cutoffs = sorted(labeled["cutoff"].unique())
        if len(cutoffs) <= settings.validation_cutoffs:
            found = (f"only {len(cutoffs)} {where} cutoff{'s' if len(cutoffs) != 1 else ''} "
                     f"({', '.join(_dates(cutoffs))})" if cutoffs else f"no {where} cutoff")
            raise StepAside(self.name, f"{found} with {noun} whose {self.label} is known; it needs "
                            f"more than models.validation_cutoffs ({settings.validation_cutoffs}) to train and "
                            "validate over time")
        positive = self.positives(labeled)
        if int(positive.sum()) < settings.min_positives:
            what = {"regressor": "customers who bought", "duration": f"rows with a known {self.label}"}.get(
                self.kind, f"{self.label} outcomes")
            raise StepAside(self.name, f"{int(positive.sum()):,} {what} among {len(labeled):,} "
                            f"{noun} in the {where} rows, fewer than models.min_positives "
                            f"({settings.min_positives})")
        if self.kind == "classifier":
            later = labeled["cutoff"].isin(cutoffs[-settings.validation_cutoffs:]).to_numpy()
            for part, mask in (("validation", later), ("fitting", ~later)):
                if positive[mask].nunique() < 2:
                    raise StepAside(self.name, f"the {part} cutoffs' {noun} all have "
                                    f"{self.label} = {bool(positive[mask].iloc[0])}; both outcomes are needed")

    def fit(self, rows: pd.DataFrame, settings: ModelsConfig,
            on_round: Callable[[int, int], None] | None = None, *, reference: bool = True) -> tr.ScoringModel:
        """Train on ``rows`` (the population's rows; unlabeled ones are not trained on) after
        :meth:`check_trainable`; ``on_round(done, total)`` after each boosting round. With ``reference`` (the
        model to be registered; a backtest's challenger needs none) the model carries the distributions of its
        features and score over its population at each of its training cutoffs (:func:`models.monitoring.profile`),
        which drift is measured against at every scoring run."""
        self.check_trainable(rows, settings)
        settings = self.settings(settings)
        fit = {"classifier": tr.fit_classifier, "regressor": tr.fit_cltv, "duration": tr.fit_duration}[self.kind]
        model = fit(rows, self.label, self.name, settings, on_round)
        if reference:
            from models.monitoring import profile

            # every row of the population at those cutoffs, labeled or not: the next-order model trains only on
            # customers who ordered, but scores (and is measured on) every active customer
            trained = rows[rows["cutoff"].isin(model.training_cutoffs)] if "cutoff" in rows.columns else rows
            model.reference = profile(trained, model.features, model.score)
        return model

    def outcome(self, rows: pd.DataFrame) -> np.ndarray:
        values = rows[self.label]
        return values.astype(int).to_numpy() if self.kind == "classifier" else values.to_numpy(dtype=float)

    def metrics(self, y: np.ndarray, score: np.ndarray) -> dict:
        return {"classifier": m.classification_metrics, "regressor": m.regression_metrics,
                "duration": m.duration_metrics}[self.kind](y, score)


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="churn-classifier", section="churn", kind="classifier",
        description="P(no order in the next churn_days) for an active customer, calibrated",
        population=ACTIVE, label="churned", score_column="churn_probability",
        # at the shared 0.1 its validation loss still falls after 1,000 rounds (early stopping never fired); at
        # 0.2 it turns near 500 with the same backtest AUC (docs/models.md)
        boosting={"learning_rate": 0.2},
        baselines=(Baseline("btyd", BTYD_NO_PURCHASE, _btyd("p_no_purchase")),
                   Baseline("recency_rule", RECENCY, _rule(RECENCY_RULE)),
                   Baseline("logistic_rfm", RFM, _rule(RFM_COLUMNS))),
        oracle=lambda truth: truth["p_no_purchase"], plot_prefix=""),
    ModelSpec(
        name="winback-classifier", section="winback", kind="classifier",
        description="P(an order in the next churn_days) for a lapsed customer, calibrated",
        population=LAPSED, label="reactivated", score_column="reactivation_probability",
        baselines=(Baseline("btyd", "1 - BG/NBD's P(no purchase in the churn horizon)",
                            _btyd("p_no_purchase", invert=True)),
                   Baseline("recency_rule", RECENCY, _rule(RECENCY_RULE))),
        required=False, oracle=lambda truth: 1 - truth["p_no_purchase"], explains="return"),
    ModelSpec(
        name="cltv-regressor", section="cltv", kind="regressor",
        description="expected net revenue over the next cltv_days (base currency), every customer",
        population=CUSTOMERS, label="future_net_revenue", score_column="predicted_cltv", horizon="cltv_days",
        baselines=(Baseline("btyd", "BG/NBD expected purchases x Gamma-Gamma expected spend",
                            _btyd("expected_cltv")),
                   Baseline("historical_formula", "average order value x purchase frequency x expected lifespan "
                                                  "(1 / annual churn rate)", _historical_formula)),
        required=False, plot_prefix="cltv_"),
    ModelSpec(
        name="subscription-churn-classifier", section="subscription", kind="classifier",
        description="P(the subscription is cancelled within the next churn_days) for a customer with an active "
                    "subscription, calibrated (a plan change is not a cancellation)",
        population=SUBSCRIBERS, label="subscription_churned", score_column="subscription_cancel_probability",
        baselines=(Baseline("tenure_plan_rule", "the training rows' cancellation rate of the same plan and tenure "
                                                "band", _tenure_plan),
                   Baseline("logistic_regression", "logistic regression on log1p of tenure, monthly amount, "
                                                   "recency, orders and net spend",
                            _rule(SUBSCRIPTION_COLUMNS))),
        required=False, on_lists=True, plot_prefix="subscription_"),
    ModelSpec(
        name="next-order-regressor", section="next_order", kind="duration",
        description="days from the cutoff to an active customer's next order, given that they order within "
                    "churn_days (the conditional median); scoring's expected_next_order_date",
        population=ACTIVE, label="days_to_next_order", score_column="expected_next_order_days",
        baselines=(Baseline("btyd", "BG/NBD's median time to the next order given alive, fitted on the evaluation "
                                    "cutoff", _btyd("next_order_days")),
                   Baseline("typical_gap", "the customer's mean gap between orders minus the days since their last "
                                           "(the population's median gap for one-time buyers), at least 0",
                            _typical_gap)),
        required=False, oracle=lambda truth: truth["next_order_median_days"]),
)


def _dates(values) -> list[str]:
    return [pd.Timestamp(v).date().isoformat() for v in values]


def get(name: str) -> ModelSpec:
    """The declaration of model ``name`` (a clear error naming the known ones otherwise)."""
    for spec in MODELS:
        if spec.name == name:
            return spec
    raise KeyError(f"unknown model {name!r}; expected one of {names()}")


def check_settings(settings: ModelsConfig) -> None:
    """A :class:`ConfigError` when ``models.per_model`` names a model the catalogue does not have."""
    unknown = sorted(set(settings.per_model) - set(names()))
    if unknown:
        raise ConfigError(f"models.per_model names {', '.join(map(repr, unknown))}, not a model of the catalogue; "
                          f"expected one of {names()}")


def names() -> list[str]:
    return [spec.name for spec in MODELS]


def producing(column: str) -> ModelSpec:
    """The model whose scoring column is ``column``."""
    for spec in MODELS:
        if spec.score_column == column:
            return spec
    raise KeyError(f"no model writes {column!r}; scoring columns: {[s.score_column for s in MODELS]}")
