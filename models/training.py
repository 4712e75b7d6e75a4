"""The estimators the model catalogue declares (LightGBM classifiers, the Tweedie CLTV regressor), trained on stacked
point-in-time snapshots, the next-order regressor (days to the next order, L1), the baselines they are compared with,
and the BG/NBD next-order estimate.

Time decides every split. A model trained on snapshots at cutoffs ``t_1 < ... < t_k`` fits its trees on the older
cutoffs and uses the ``validation_cutoffs`` latest ones (never a random split across time) for early stopping and
for calibration: Platt scaling of the classifiers' log-odds, a level factor for CLTV. What a model sees is only
what the snapshots hold; which snapshots are allowed (label windows ending on or before the as-of date) is decided
by :mod:`models.backtest`.

Features are the snapshot's columns minus keys, the labels of the label registry
(:data:`features.definitions.LABEL_FAMILIES`) and ``signup_cohort`` (a calendar label that would let a model memorise
periods; ``tenure_days`` carries the same information), plus BG/NBD's ``p_alive`` and expected purchases in the
churn horizon, fitted on each cutoff's own snapshot (point in time by construction).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from common.config import ModelsConfig
from features.definitions import label_columns
from models.btyd import BetaGeo, GammaGamma

KEY = ("customer_id", "cutoff")
CALENDAR_LABELS = ("signup_cohort",)  # would let a model memorise periods; tenure_days carries the same information
BTYD_FEATURES = ("p_alive", "expected_purchases_churn_horizon")
# BG/NBD x Gamma-Gamma's expected net revenue over cltv_days, fitted on the row's own cutoff: not a feature (it is
# another model's output), the total the CLTV model's predictions at that cutoff add up to
BTYD_LEVEL = "btyd_expected_cltv"
OnRound = Callable[[int, int], None]  # (boosting rounds done, rounds at most)


def not_features() -> set[str]:
    """Columns that are never model inputs: the keys, every outcome of the label registry
    (:data:`features.definitions.LABEL_FAMILIES`, read at call time) and the calendar labels."""
    return set(KEY) | set(label_columns()) | set(CALENDAR_LABELS) | {BTYD_LEVEL}


def add_btyd_features(snapshots: pd.DataFrame, horizon_days: int, cltv_days: int | None = None,
                      fits: dict | None = None) -> pd.DataFrame:
    """Add ``p_alive`` and ``expected_purchases_churn_horizon`` from a BG/NBD model fitted on each cutoff's rows,
    and with ``cltv_days`` also :data:`BTYD_LEVEL` (BG/NBD x Gamma-Gamma over ``cltv_days``, same fit).

    ``snapshots`` needs ``cutoff``, ``frequency``, ``recency`` and ``T`` (days; with ``cltv_days`` also
    ``monetary_value``). Returns a new frame. With ``cltv_days``, ``fits`` (when given) receives each cutoff's
    :func:`btyd_predictions` by cutoff, so that the backtest's baselines reuse them instead of fitting again.
    """
    out = snapshots.copy()
    out["p_alive"] = np.nan
    out["expected_purchases_churn_horizon"] = np.nan
    if cltv_days is not None:
        out[BTYD_LEVEL] = np.nan
    for _, rows in out.groupby("cutoff", sort=True):
        if len(rows) < 2:
            continue
        if cltv_days is not None:
            values = btyd_predictions(rows, horizon_days, cltv_days)
            if fits is not None:
                fits[rows["cutoff"].iloc[0]] = values
            out.loc[rows.index, BTYD_LEVEL] = values["expected_cltv"]
            out.loc[rows.index, list(BTYD_FEATURES)] = values[list(BTYD_FEATURES)].to_numpy()
            continue
        summary = rows[["frequency", "recency", "T"]].to_numpy(dtype=float)
        model = BetaGeo(horizon=horizon_days).fit(summary)
        values = model.transform(summary)
        out.loc[rows.index, "p_alive"] = values[:, 0]
        out.loc[rows.index, "expected_purchases_churn_horizon"] = values[:, 1]
    return out


def feature_columns(snapshots: pd.DataFrame) -> list[str]:
    """The model features present in ``snapshots`` (in column order)."""
    excluded = not_features()
    return [c for c in snapshots.columns if c not in excluded]


def design_matrix(snapshots: pd.DataFrame, features: Sequence[str],
                  categories: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """The model input: ``features`` with booleans as 0/1 and text as pandas categoricals.

    ``categories`` fixes each text column's categories (those seen in training); unseen values become missing.
    """
    missing = [c for c in features if c not in snapshots.columns]
    if missing:
        raise ValueError(f"the snapshot lacks model feature(s) {missing}: build it with the same tables and config "
                         "as the training snapshots")
    X = snapshots[list(features)].copy()
    for c in X.columns:
        is_text = c in categories if categories is not None else not (
            pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c]))
        if is_text:
            known = (categories or {}).get(c)
            values = X[c].astype("object").where(X[c].notna(), None)
            known = known if known is not None else sorted(values.dropna().unique())
            X[c] = pd.Categorical(values.where(values.isin(known), None), categories=known)
        elif pd.api.types.is_bool_dtype(X[c]) or X[c].dtype == object:
            X[c] = X[c].astype("float64")
        else:
            X[c] = X[c].astype("float64")
    return X


def _categories(X: pd.DataFrame) -> dict[str, list[str]]:
    return {c: list(X[c].cat.categories) for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)}


def split_by_time(snapshots: pd.DataFrame, validation_cutoffs: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows at the ``validation_cutoffs`` latest cutoffs, and the rows before them."""
    cutoffs = sorted(snapshots["cutoff"].unique())
    if len(cutoffs) <= validation_cutoffs:
        raise ValueError(f"need more than {validation_cutoffs} training cutoffs for a temporal validation split, got "
                         f"{len(cutoffs)}: lengthen snapshots.lookback_months or use more history")
    later = set(cutoffs[-validation_cutoffs:])
    is_later = snapshots["cutoff"].isin(later)
    return snapshots[~is_later], snapshots[is_later]


@dataclass
class ScoringModel:
    """A trained model ready to score snapshots: LightGBM booster plus its calibration.

    ``kind`` is ``classifier`` (``score`` returns calibrated probabilities), ``regressor`` (expected value) or
    ``duration`` (days, the conditional median, never negative).
    """

    name: str
    kind: str
    label: str
    features: list[str]
    categories: dict[str, list[str]]
    booster: lgb.Booster
    calibration: tuple[float, float]  # classifier: Platt (slope, intercept) on log-odds; regressor: (factor, 0);
    # duration: (1, 0)
    training_cutoffs: list = field(default_factory=list)
    best_iteration: int = 0
    info: dict = field(default_factory=dict)
    # regressor: "factor" multiplies by calibration[0]; "btyd_total" scales each cutoff's predictions to add up to
    # that cutoff's BG/NBD x Gamma-Gamma total (the BTYD_LEVEL column), see fit_cltv
    level: str = "factor"
    # the training distributions of the features and the score (models.monitoring.profile): drift is measured
    # against them at every scoring run
    reference: dict = field(default_factory=dict)

    @property
    def input_columns(self) -> list[str]:
        """What :meth:`score` reads: the features, and for a BTYD-levelled regressor the cutoff and its total."""
        return [*self.features, *(["cutoff", BTYD_LEVEL] if self.kind == "regressor" and self.level == "btyd_total"
                                  else [])]

    def raw_score(self, snapshots: pd.DataFrame) -> np.ndarray:
        """Uncalibrated output: log-odds for a classifier, the expected value for a regressor, ``log(1 + days)`` for a
        duration."""
        X = design_matrix(snapshots, self.features, self.categories)
        return self.booster.predict(X, raw_score=self.kind == "classifier", num_iteration=self.best_iteration)

    @property
    def population_level(self) -> bool:
        """Whether a score depends on the rest of its cutoff's population (a BTYD-levelled regressor: the level
        is set from the sums over the rows scored together), not only on its own row."""
        return self.kind == "regressor" and self.level == "btyd_total"

    def score(self, snapshots: pd.DataFrame, level: float | None = None) -> np.ndarray:
        """Calibrated probability (classifier), expected value (regressor) or days (duration) per row of
        ``snapshots``. ``level``: for a :attr:`population_level` model, the factor :func:`btyd_level_factor`
        computed over the whole population of a one-cutoff snapshot, so that a part of it scores as the whole
        would (default: computed over ``snapshots``)."""
        raw = self.raw_score(snapshots)
        a, b = self.calibration
        if self.kind == "classifier":
            return expit(a * raw + b)
        if self.kind == "duration":
            return np.maximum(np.expm1(raw), 0.0)
        if self.level == "factor":
            return raw * a
        return raw * (level if level is not None else _btyd_level(snapshots, raw))

    def explain(self, snapshots: pd.DataFrame) -> pd.DataFrame:
        """TreeSHAP contributions in raw-score units (log-odds for classifiers), one column per feature plus
        ``base_value``; they add up to :meth:`raw_score`."""
        X = design_matrix(snapshots, self.features, self.categories)
        contrib = self.booster.predict(X, pred_contrib=True, num_iteration=self.best_iteration)
        return pd.DataFrame(contrib, columns=[*self.features, "base_value"], index=snapshots.index)


def btyd_level_factor(rows: pd.DataFrame, raw: np.ndarray) -> float:
    """The level factor of a BTYD-levelled regressor over one cutoff's whole population: ``rows`` (with
    :data:`BTYD_LEVEL`) and the model's :meth:`ScoringModel.raw_score` of them, in the same order."""
    if rows["cutoff"].nunique() > 1:
        raise ValueError("the level factor is one cutoff's; these rows have several")
    return float(_btyd_level(rows, raw)[0]) if len(rows) else 1.0


def _btyd_level(snapshots: pd.DataFrame, raw: np.ndarray) -> np.ndarray:
    """Per row, the factor that makes the predictions of its cutoff add up to that cutoff's BG/NBD x Gamma-Gamma
    total (:data:`BTYD_LEVEL`)."""
    if BTYD_LEVEL not in snapshots.columns:
        raise ValueError(f"the CLTV model sets its level from {BTYD_LEVEL!r}, which these rows lack: score rows that "
                         "went through models.training.add_btyd_features (with cltv_days) or "
                         "serving.scoring.score_snapshot")
    frame = pd.DataFrame({"cutoff": snapshots["cutoff"].to_numpy(), "raw": raw,
                          "btyd": snapshots[BTYD_LEVEL].to_numpy(dtype=float)})
    totals = frame.groupby("cutoff")[["raw", "btyd"]].transform("sum")
    return np.where(totals["raw"] > 0, totals["btyd"] / totals["raw"].where(totals["raw"] > 0, 1.0), 1.0)


@dataclass
class _TemporalSplit:
    """Labeled rows split by time into design matrices: trees on ``X_fit``, early stopping and calibration on
    ``X_later`` (the ``validation_cutoffs`` latest cutoffs)."""

    rows: pd.DataFrame
    fit_rows: pd.DataFrame
    later: pd.DataFrame
    features: list[str]
    categories: dict[str, list[str]]
    X_fit: pd.DataFrame
    X_later: pd.DataFrame

    @classmethod
    def of(cls, snapshots: pd.DataFrame, label: str, settings: ModelsConfig) -> "_TemporalSplit":
        rows = snapshots[snapshots[label].notna()]
        features = feature_columns(rows)
        fit_rows, later = split_by_time(rows, settings.validation_cutoffs)
        X_fit = design_matrix(fit_rows, features)
        categories = _categories(X_fit)
        return cls(rows, fit_rows, later, features, categories, X_fit, design_matrix(later, features, categories))

    def fit(self, model, y_fit: np.ndarray, y_later: np.ndarray, metric: str, settings: ModelsConfig,
            on_round: OnRound | None = None) -> int:
        """Fit ``model`` with early stopping on the later cutoffs; returns the best iteration.
        ``on_round(done, total)`` after each boosting round."""
        callbacks = [lgb.early_stopping(settings.early_stopping_rounds, verbose=False)]
        if on_round is not None:
            callbacks.append(lambda env: on_round(env.iteration + 1, env.end_iteration))
        model.fit(self.X_fit, y_fit, eval_X=(self.X_later,), eval_y=(y_later,), eval_metric=metric,
                  callbacks=callbacks)
        return int(model.best_iteration_ or settings.max_rounds)

    def scoring_model(self, name: str, kind: str, label: str, booster: lgb.Booster,
                      calibration: tuple[float, float], best: int) -> ScoringModel:
        return ScoringModel(name=name, kind=kind, label=label, features=self.features, categories=self.categories,
                            booster=booster, calibration=calibration,
                            training_cutoffs=sorted(self.rows["cutoff"].unique()), best_iteration=best,
                            info={"rows_fit": len(self.fit_rows), "rows_validation": len(self.later),
                                  "validation_cutoffs": sorted(self.later["cutoff"].unique())})


def fit_classifier(snapshots: pd.DataFrame, label: str, name: str, settings: ModelsConfig,
                   on_round: OnRound | None = None) -> ScoringModel:
    """LightGBM on the older cutoffs, early stopping and Platt calibration on the ``validation_cutoffs`` latest.

    ``snapshots`` are the labeled training rows (label not null); ``label`` is a boolean column.
    """
    split = _TemporalSplit.of(snapshots, label, settings)
    y_fit, y_later = split.fit_rows[label].astype(int).to_numpy(), split.later[label].astype(int).to_numpy()
    if len(np.unique(y_fit)) < 2 or len(np.unique(y_later)) < 2:
        raise ValueError(f"{label}: both outcomes are needed in the training and the validation cutoffs")
    model = lgb.LGBMClassifier(**settings.lgb_params())
    best = split.fit(model, y_fit, y_later, "binary_logloss", settings, on_round)
    raw_later = model.booster_.predict(split.X_later, raw_score=True, num_iteration=best)
    platt = LogisticRegression(C=1e6, max_iter=1000).fit(raw_later.reshape(-1, 1), y_later)
    return split.scoring_model(name, "classifier", label, model.booster_,
                               (float(platt.coef_[0, 0]), float(platt.intercept_[0])), best)


def fit_cltv(snapshots: pd.DataFrame, label: str, name: str, settings: ModelsConfig,
             on_round: OnRound | None = None) -> ScoringModel:
    """LightGBM with a Tweedie objective (zero-inflated, heavy-tailed spend) on net future revenue.

    Tweedie needs a non-negative target: the few customers whose refunds exceed their purchases in the window
    are trained at 0 (their revenue is still counted, negative, in the evaluation).

    The trees rank and share; the level comes from the cutoff being scored. Every training window closed at least
    ``cltv_days`` before the latest data, so trees fitted on them carry the spend and purchase rates of that past
    (a population that decays or grows since is predicted at the old level, whatever factor the validation cutoffs
    give). BG/NBD x Gamma-Gamma fitted on the scored cutoff's own history (no labels) reads the population's
    current rates: at each cutoff the predictions are scaled to add up to its total (:data:`BTYD_LEVEL`), and the
    trees decide who gets what share. ``calibration[0]`` keeps the validation cutoffs' actual / predicted ratio for
    reference; it is not applied.
    """
    split = _TemporalSplit.of(snapshots, label, settings)
    y_fit = split.fit_rows[label].clip(lower=0).to_numpy(dtype=float)
    y_later = split.later[label].to_numpy(dtype=float)
    model = lgb.LGBMRegressor(objective="tweedie", tweedie_variance_power=1.5, **settings.lgb_params())
    best = split.fit(model, y_fit, y_later.clip(min=0), "tweedie", settings, on_round)
    predicted = model.booster_.predict(split.X_later, num_iteration=best)
    factor = float(y_later.sum() / predicted.sum()) if predicted.sum() > 0 and y_later.sum() > 0 else 1.0
    fitted = split.scoring_model(name, "regressor", label, model.booster_, (factor, 0.0), best)
    fitted.level = "btyd_total" if BTYD_LEVEL in snapshots.columns else "factor"
    return fitted


def fit_duration(snapshots: pd.DataFrame, label: str, name: str, settings: ModelsConfig,
                 on_round: OnRound | None = None) -> ScoringModel:
    """LightGBM with an L1 objective on ``log(1 + days)`` of a number of days (``days_to_next_order``). A median
    survives any increasing transform, so ``exp(prediction) - 1`` is the conditional median of the days, which is
    what the backtest's median absolute error rewards; on the log scale a tree's split weighs a 3-day miss on a
    weekly buyer like a 30-day miss on a quarterly one. Rows without the label (no order inside its window) are not
    trained on, exactly as they are not evaluated, so the prediction reads "if they order within the window".
    Early stopping on the later cutoffs' L1 (log scale); no calibration. Its raw score and SHAP contributions are
    in ``log(1 + days)``."""
    split = _TemporalSplit.of(snapshots, label, settings)
    y_fit = np.log1p(split.fit_rows[label].to_numpy(dtype=float))
    y_later = np.log1p(split.later[label].to_numpy(dtype=float))
    model = lgb.LGBMRegressor(objective="l1", **settings.lgb_params())
    best = split.fit(model, y_fit, y_later, "l1", settings, on_round)
    return split.scoring_model(name, "duration", label, model.booster_, (1.0, 0.0), best)


# ---- BTYD: baselines and the expected next order date ------------------------------------------------------


def btyd_fit(snapshot: pd.DataFrame, churn_days: int) -> tuple[BetaGeo, GammaGamma]:
    """BG/NBD (on ``frequency``, ``recency``, ``T``) and Gamma-Gamma (on ``frequency``, ``monetary_value``) fitted
    on one cutoff's rows."""
    bg = BetaGeo(horizon=churn_days).fit(snapshot[["frequency", "recency", "T"]].to_numpy(dtype=float))
    gg = GammaGamma().fit(snapshot[["frequency", "monetary_value"]].fillna(0).to_numpy(dtype=float))
    return bg, gg


def btyd_predictions(snapshot: pd.DataFrame, churn_days: int, cltv_days: int,
                     fitted: tuple[BetaGeo, GammaGamma] | None = None) -> pd.DataFrame:
    """BG/NBD and Gamma-Gamma fitted on one cutoff's snapshot (no labels used), per customer:

    * ``p_no_purchase``: P(no order in the next ``churn_days``) = ``1 - P(alive) + P(alive) ((alpha + T) /
      (alpha + T + H))^(r + x)``: in BG/NBD an alive customer buys at Poisson rate ``lambda``, whose posterior is
      Gamma(``r + x``, ``alpha + T``) (Fader, Hardie & Lee 2005), and drops out only right after a purchase;
    * ``expected_cltv``: expected purchases in ``cltv_days`` times Gamma-Gamma's expected spend per purchase;
    * ``next_order_days``: the median of the time to the next order given alive, ``(alpha + T) (2^(1 / (r + x))
      - 1)`` (the median of that Gamma-mixed exponential, a Lomax distribution);
    * ``p_alive`` and ``expected_purchases_churn_horizon``: the model features of :func:`add_btyd_features`;
    * ``value_if_still_buying``: expected net revenue in ``cltv_days`` for a customer known to be alive, the
      posterior mean rate ``(r + x) / (alpha + T)`` x ``cltv_days`` x the expected spend per order.

    The models are fitted on ``snapshot`` unless ``fitted`` (:func:`btyd_fit` of the whole population) is given:
    then every value is a function of the row alone, so a part of the population (a Spark partition) gets the
    values the whole would give it.
    """
    bg, gg = fitted if fitted is not None else btyd_fit(snapshot, churn_days)
    summary = snapshot[["frequency", "recency", "T"]].to_numpy(dtype=float)
    x, T = summary[:, 0], summary[:, 2]
    alive = bg.p_alive(summary)
    shape, scale = bg.r_ + x, bg.alpha_ + T
    stay_quiet = (scale / (scale + churn_days)) ** shape
    spend = gg.expected_spend(snapshot[["frequency", "monetary_value"]].fillna(0).to_numpy(dtype=float))
    return pd.DataFrame({
        "p_no_purchase": 1 - alive + alive * stay_quiet,
        "expected_cltv": bg.expected_purchases(summary, cltv_days) * spend,
        "next_order_days": scale * (2 ** (1 / shape) - 1),
        "p_alive": alive,
        "expected_purchases_churn_horizon": bg.expected_purchases(summary, churn_days),
        "value_if_still_buying": shape / scale * cltv_days * spend,
    }, index=snapshot.index)


def typical_gap_next_order_days(snapshot: pd.DataFrame) -> np.ndarray:
    """Naive next order: the customer's mean gap after their last order (population median gap for one-time
    buyers), never before the cutoff."""
    gap = snapshot["gap_mean_days"].fillna(snapshot["gap_mean_days"].median())
    return np.maximum(gap - snapshot["days_since_last_purchase"], 0).to_numpy(dtype=float)


def historical_cltv(snapshot: pd.DataFrame, cltv_days: int, annual_churn_rate: float) -> np.ndarray:
    """The textbook formula CLTV = average order value x purchase frequency x expected lifespan.

    Purchase frequency is orders per day over the customer's history (at least 30 days, so that a new customer's
    single order is not extrapolated from one day); the expected lifespan is ``1 / annual churn rate`` years,
    capped at the horizon (the target counts only ``cltv_days`` days).
    """
    orders_per_day = snapshot["orders"] / np.maximum(snapshot["days_since_first_purchase"] + 1, 30)
    lifespan_days = min(365.0 / max(annual_churn_rate, 1e-9), float(cltv_days))
    return (snapshot["avg_order_value"].fillna(0) * orders_per_day * lifespan_days).to_numpy(dtype=float)


@dataclass
class RuleModel:
    """A baseline that maps one score to a probability with a monotone fit on training rows."""

    columns: list[str]
    model: LogisticRegression

    def score(self, snapshot: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(_rfm_inputs(snapshot, self.columns))[:, 1]


def _rfm_inputs(snapshot: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """log1p of the (non-negative part of the) RFM columns: their effects are closer to linear on that scale."""
    return np.log1p(snapshot[columns].fillna(0).clip(lower=0).to_numpy(dtype=float))


def fit_rule(snapshots: pd.DataFrame, label: str, columns: list[str]) -> RuleModel:
    """Logistic regression of ``label`` on log1p of ``columns`` (one column: the recency rule; R, F, M: the RFM
    logistic baseline)."""
    rows = snapshots[snapshots[label].notna()]
    model = LogisticRegression(max_iter=1000).fit(_rfm_inputs(rows, columns), rows[label].astype(int))
    return RuleModel(columns, model)


TENURE_BANDS_MONTHS = (3, 6, 12, 24)  # tenure bands [0, 3), [3, 6), [6, 12), [12, 24), 24+ months


@dataclass
class RateTable:
    """A baseline that predicts the training rows' outcome rate of the row's group (plan x tenure band)."""

    rates: dict[tuple[str, int], float]
    overall: float

    def score(self, snapshot: pd.DataFrame) -> np.ndarray:
        keys = zip(snapshot["subscription_plan"].astype("object"), _tenure_band(snapshot))
        return np.array([self.rates.get(k, self.overall) for k in keys], dtype=float)


def _tenure_band(snapshot: pd.DataFrame) -> np.ndarray:
    return np.searchsorted(TENURE_BANDS_MONTHS, snapshot["months_subscribed"].fillna(0).to_numpy(), side="right")


def fit_tenure_plan_rule(snapshots: pd.DataFrame, label: str, prior_rows: float = 10.0) -> RateTable:
    """The cancellation rate per (plan, tenure band) over the labeled rows, shrunk towards the overall rate by
    ``prior_rows`` pseudo-rows: ``(cancels + prior_rows x overall) / (rows + prior_rows)``. Unseen groups get the
    overall rate."""
    rows = snapshots[snapshots[label].notna()]
    y = rows[label].astype(float)
    overall = float(y.mean())
    grouped = y.groupby([rows["subscription_plan"].astype("object").to_numpy(), _tenure_band(rows)])
    rates = {key: float((g.sum() + prior_rows * overall) / (len(g) + prior_rows)) for key, g in grouped}
    return RateTable(rates, overall)


def annual_churn_rate(snapshots: pd.DataFrame, churn_days: int) -> float:
    """Churn rate among active customers over the training rows, converted from ``churn_days`` to a year."""
    rate = float(snapshots["churned"].dropna().astype(float).mean())
    return 1 - (1 - rate) ** (365.0 / churn_days)

