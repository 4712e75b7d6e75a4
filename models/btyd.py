"""Buy-till-you-die models fitted by maximum likelihood: BG/NBD (purchases and P(alive)) and Gamma-Gamma (spend).

Both follow the scikit-learn estimator contract (``fit`` / ``transform``, parameters in ``__init__``, fitted state
in attributes ending in ``_``), so they sit in pipelines; they pass ``parametrize_with_checks`` except the checks
that feed random data of another width (tests/models/test_btyd.py proves that width is the only reason). Inputs are
the BTYD summary columns the feature engine writes:

* :class:`BetaGeo` takes ``[frequency, recency, T]`` (repeat purchase periods, age at the last purchase, age at the
  end of observation; any time unit, used consistently) and transforms to ``[p_alive, expected_purchases]`` over
  ``horizon`` units;
* :class:`GammaGamma` takes ``[frequency, monetary_value]`` and transforms to the expected mean spend per repeat
  purchase. Only customers with ``frequency > 0`` and ``monetary_value > 0`` inform the fit (refunds can make a
  customer's mean zero or negative; they are left out of the fit and get the population mean ``p v / (q - 1)``).

References: Fader, Hardie & Lee (2005), "Counting your customers the easy way: an alternative to the Pareto/NBD
model", Marketing Science 24(2); Fader, Hardie & Lee (2005), "RFM and CLV: using iso-value curves for customer
base analysis", JMR 42(4); Fader & Hardie (2013), "The Gamma-Gamma model of monetary value".
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, special
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data


def _fit_log_params(neg_ll, start: np.ndarray) -> np.ndarray:
    """Minimise ``neg_ll`` over log-parameters (keeps every parameter positive) and return the parameters.

    ``neg_ll(log_params)`` returns the value and its gradient with respect to the log-parameters (analytic
    gradients: a numerical one costs an extra likelihood evaluation per parameter and step).
    """
    result = optimize.minimize(neg_ll, np.log(start), method="L-BFGS-B", jac=True)
    if not np.all(np.isfinite(result.x)):
        raise ValueError("the likelihood could not be maximised: check that the inputs are BTYD summaries")
    return np.exp(result.x)


def _penalized_mean(ll: np.ndarray, grads: tuple[np.ndarray, ...], params: np.ndarray,
                    penalizer: float) -> tuple[float, np.ndarray]:
    """What :func:`_fit_log_params` minimises: minus the mean log-likelihood plus the L2 penalty, and its gradient in
    the log-parameters (d/d(log p) = p d/dp; the penalty's is 2 p^2)."""
    grad = np.array([g.mean() for g in grads])
    return -(float(ll.mean()) - penalizer * np.sum(params**2)), -(params * grad - 2 * penalizer * params**2)


class _SummaryInput:
    """Input handling shared by the BTYD estimators: a fixed set of summary columns, some of them non-negative."""

    _columns: tuple[str, ...] = ()
    _non_negative = 0  # how many leading columns must be >= 0

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True  # generic checks then pass non-negative data (a count leads each input)
        return tags

    def _summary(self, X, reset: bool) -> np.ndarray:
        name = type(self).__name__
        X = validate_data(self, X, reset=reset, dtype=np.float64, ensure_min_samples=2 if reset else 1)
        if (X[:, : self._non_negative] < 0).any():
            raise ValueError(f"Negative values in data passed to {name}: "
                             f"{', '.join(self._columns[: self._non_negative])} must be >= 0")
        if X.shape[1] != len(self._columns):
            raise ValueError(f"{name} expects {len(self._columns)} columns [{', '.join(self._columns)}], "
                             f"got n_features = {X.shape[1]}")
        return X


class BetaGeo(_SummaryInput, TransformerMixin, BaseEstimator):
    """BG/NBD model (Fader, Hardie & Lee 2005).

    Parameters
    ----------
    horizon : float
        Length of the period for ``expected_purchases`` in :meth:`transform`, in the unit of ``recency``/``T``.
    penalizer : float
        L2 penalty on the four parameters (0 = plain maximum likelihood, as in the paper).
    """

    def __init__(self, horizon: float = 90.0, penalizer: float = 0.0):
        self.horizon = horizon
        self.penalizer = penalizer

    _columns = ("frequency", "recency", "T")
    _non_negative = 3  # all three are counts or ages

    @staticmethod
    def log_likelihood(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """Per-customer log-likelihood for ``params = (r, alpha, a, b)``."""
        return BetaGeo._log_likelihood_and_gradient(params, x, t_x, T, *np.unique(x, return_inverse=True))[0]

    @staticmethod
    def _log_likelihood_and_gradient(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray,
                                     ux: np.ndarray, ix: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Per-customer log-likelihood and its gradient in ``(r, alpha, a, b)``. ``ux[ix] == x``: the terms that
        depend on ``x`` alone are computed once per distinct frequency (a few hundred values, not a million).
        """
        r, alpha, a, b = params
        a1 = (special.gammaln(r + ux) - special.gammaln(r))[ix] + r * np.log(alpha)
        a2 = (special.gammaln(a + b) + special.gammaln(b + ux) - special.gammaln(b) - special.gammaln(a + b + ux))[ix]
        rx = r + x
        log_aT, log_at = np.log(alpha + T), np.log(alpha + t_x)
        a3 = -rx * log_aT
        repeat = x > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            a4 = np.where(repeat, np.log(a) - np.log(np.maximum(b + ux - 1, 1e-300))[ix] - rx * log_at, -np.inf)
        a34 = np.logaddexp(a3, a4)
        w3, w4 = np.exp(a3 - a34), np.exp(a4 - a34)  # shares of the two terms of the sum (w4 = 0 without repeats)
        ll = a1 + a2 + a34
        with np.errstate(divide="ignore", invalid="ignore"):
            inv_b = np.where(repeat, w4 / np.maximum(b + x - 1, 1e-300), 0.0)
        d_r = (special.digamma(r + ux) - special.digamma(r))[ix] + np.log(alpha) - w3 * log_aT - w4 * log_at
        d_alpha = r / alpha - rx * (w3 / (alpha + T) + w4 / (alpha + t_x))
        d_a = (special.digamma(a + b) - special.digamma(a + b + ux))[ix] + w4 / a
        d_b = (special.digamma(a + b) + special.digamma(b + ux) - special.digamma(b)
               - special.digamma(a + b + ux))[ix] - inv_b
        return ll, (d_r, d_alpha, d_a, d_b)

    def fit(self, X, y=None):
        """Fit ``r, alpha, a, b`` by maximum likelihood; ``y`` is ignored."""
        x, t_x, T = self._summary(X, reset=True).T
        scale = max(float(np.mean(T)), 1e-9)  # optimise in units where the mean age is 1: better conditioned
        t_x, T = t_x / scale, T / scale
        ux, ix = np.unique(x, return_inverse=True)

        def neg_ll(log_params):
            p = np.exp(log_params)
            with np.errstate(over="ignore", invalid="ignore"):  # the optimiser may probe extreme values
                ll, grads = self._log_likelihood_and_gradient(p, x, t_x, T, ux, ix)
            return _penalized_mean(ll, grads, p, self.penalizer)

        r, alpha, a, b = _fit_log_params(neg_ll, np.array([0.5, 1.0, 0.5, 1.0]))
        self.r_, self.alpha_, self.a_, self.b_ = r, alpha * scale, a, b
        return self

    def params(self) -> dict[str, float]:
        check_is_fitted(self)
        return {"r": self.r_, "alpha": self.alpha_, "a": self.a_, "b": self.b_}

    def _dead_odds(self, x, t_x, T) -> np.ndarray:
        """Odds that a customer has dropped out by ``T``: ``a / (b + x - 1) ((alpha + T) / (alpha + t_x))^(r + x)``
        for ``x > 0``, 0 for customers who never repeated (they cannot have dropped out unseen in BG/NBD)."""
        r, alpha, a, b = self.r_, self.alpha_, self.a_, self.b_
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.where(x > 0, a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)

    def _expected(self, x, t_x, T, t: float) -> np.ndarray:
        r, alpha, a, b = self.r_, self.alpha_, self.a_, self.b_
        hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
        num = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
        return num / (1 + self._dead_odds(x, t_x, T))

    def _alive(self, x, t_x, T) -> np.ndarray:
        return 1.0 / (1.0 + self._dead_odds(x, t_x, T))

    def p_alive(self, X) -> np.ndarray:
        """Probability that each customer is still alive at the end of observation."""
        check_is_fitted(self)
        return self._alive(*self._summary(X, reset=False).T)

    def expected_purchases(self, X, t: float | None = None) -> np.ndarray:
        """Conditional expected number of purchases in the next ``t`` units (default ``horizon``)."""
        check_is_fitted(self)
        return self._expected(*self._summary(X, reset=False).T, self.horizon if t is None else t)

    def transform(self, X):
        """``[p_alive, expected_purchases over horizon]`` per row (the input is checked once)."""
        check_is_fitted(self)
        x, t_x, T = self._summary(X, reset=False).T
        return np.column_stack([self._alive(x, t_x, T), self._expected(x, t_x, T, self.horizon)])

    def get_feature_names_out(self, input_features=None):
        return np.array(["p_alive", "expected_purchases"], dtype=object)


class GammaGamma(_SummaryInput, TransformerMixin, BaseEstimator):
    """Gamma-Gamma model of the mean spend per repeat purchase (Fader, Hardie & Lee 2005; Fader & Hardie 2013).

    Parameters
    ----------
    penalizer : float
        L2 penalty on ``p, q, v`` (0 = plain maximum likelihood).
    """

    def __init__(self, penalizer: float = 0.0):
        self.penalizer = penalizer

    _columns = ("frequency", "monetary_value")
    _non_negative = 1  # frequency; a mean spend can be negative after refunds

    @staticmethod
    def log_likelihood(params: np.ndarray, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Per-customer log-likelihood of the mean spend ``m`` over ``x`` repeat purchases, ``params = (p, q, v)``."""
        return GammaGamma._log_likelihood_and_gradient(params, x, m, *np.unique(x, return_inverse=True))[0]

    @staticmethod
    def _log_likelihood_and_gradient(params: np.ndarray, x: np.ndarray, m: np.ndarray, ux: np.ndarray,
                                     ix: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Per-customer log-likelihood and its gradient in ``(p, q, v)``; ``ux[ix] == x`` (the gamma-function terms
        are computed once per distinct frequency)."""
        p, q, v = params
        px = p * ux
        log_m, log_x, log_xmv = np.log(m), np.log(x), np.log(x * m + v)
        pxq = p * x + q
        ll = ((special.gammaln(px + q) - special.gammaln(px))[ix] - special.gammaln(q) + q * np.log(v)
              + (p * x - 1) * log_m + p * x * log_x - pxq * log_xmv)
        d_p = x * ((special.digamma(px + q) - special.digamma(px))[ix] + log_m + log_x - log_xmv)
        d_q = special.digamma(px + q)[ix] - special.digamma(q) + np.log(v) - log_xmv
        d_v = q / v - pxq / (x * m + v)
        return ll, (d_p, d_q, d_v)

    def fit(self, X, y=None):
        """Fit ``p, q, v`` on the customers with ``frequency > 0`` and ``monetary_value > 0``; ``y`` is ignored."""
        x, m = self._summary(X, reset=True).T
        keep = (x > 0) & (m > 0)
        if keep.sum() < 2:
            raise ValueError("GammaGamma needs at least 2 customers with a repeat purchase and a positive mean spend")
        x, m = x[keep], m[keep]
        scale = float(np.mean(m))
        m = m / scale
        ux, ix = np.unique(x, return_inverse=True)

        def neg_ll(log_params):
            params = np.exp(log_params)
            with np.errstate(over="ignore", invalid="ignore"):  # the optimiser may probe extreme values
                ll, grads = self._log_likelihood_and_gradient(params, x, m, ux, ix)
            return _penalized_mean(ll, grads, params, self.penalizer)

        p, q, v = _fit_log_params(neg_ll, np.array([1.0, 2.0, 1.0]))
        self.p_, self.q_, self.v_ = p, q, v * scale
        return self

    def params(self) -> dict[str, float]:
        check_is_fitted(self)
        return {"p": self.p_, "q": self.q_, "v": self.v_}

    def expected_spend(self, X) -> np.ndarray:
        """E[mean spend per purchase | frequency, monetary_value]; the population mean where there is no usable
        history (no repeat purchase, or a mean that is zero or negative after refunds)."""
        check_is_fitted(self)
        x, m = self._summary(X, reset=False).T
        p, q, v = self.p_, self.q_, self.v_
        population = p * v / (q - 1) if q > 1 else np.nan
        ok = (x > 0) & (m > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            conditional = p * (v + x * m) / (p * x + q - 1)
        return np.where(ok, conditional, population)

    def transform(self, X):
        return self.expected_spend(X).reshape(-1, 1)

    def get_feature_names_out(self, input_features=None):
        return np.array(["expected_spend"], dtype=object)
