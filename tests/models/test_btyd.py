"""BG/NBD and Gamma-Gamma: the published CDNOW estimates and hand-checked formulas."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.utils.estimator_checks import check_estimator, parametrize_with_checks

from models.btyd import BetaGeo, GammaGamma


def _cdnow(name: str) -> pd.DataFrame:
    """A CDNOW sample file shipped inside lifetimes (a dev dependency), read without importing lifetimes (its import
    sets a global pandas option)."""
    spec = importlib.util.find_spec("lifetimes")
    folder = Path(spec.submodule_search_locations[0]) / "datasets"
    return pd.read_csv(folder / name)


def test_bgnbd_reproduces_fader_hardie_lee_2005_on_cdnow():
    data = _cdnow("cdnow_customers_summary.csv")
    assert len(data) == 2357
    model = BetaGeo(horizon=39).fit(data[["frequency", "recency", "T"]].to_numpy())
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    for name, value in published.items():
        assert model.params()[name] == pytest.approx(value, rel=0.02), name
    # The paper's worked example: x = 2, t_x = 30.43, T = 38.86 weeks expects 1.226 purchases in the next 39 weeks.
    example = np.array([[2, 30.43, 38.86]])
    assert model.expected_purchases(example)[0] == pytest.approx(1.226, rel=0.01)


def test_bgnbd_closed_forms_by_hand():
    model = BetaGeo(horizon=10)
    model.r_, model.alpha_, model.a_, model.b_ = 1.0, 2.0, 2.0, 3.0
    model.n_features_in_ = 3
    # x = 0: P(alive) = 1 whatever the ages
    assert model.p_alive(np.array([[0, 0, 5.0]]))[0] == 1.0
    # x = 1, t_x = 2, T = 6: odds = a / (b + x - 1) * ((alpha + T) / (alpha + t_x))^(r + x) = 2/3 * (8/4)^2 = 8/3
    assert model.p_alive(np.array([[1, 2.0, 6.0]]))[0] == pytest.approx(1 / (1 + 8 / 3))
    # Log-likelihood for x = 0, T = 6: the gamma-function terms cancel, leaving r ln(alpha / (alpha + T)) = ln(2/8)
    ll = BetaGeo.log_likelihood(np.array([1.0, 2.0, 2.0, 3.0]), np.array([0.0]), np.array([0.0]), np.array([6.0]))
    assert ll[0] == pytest.approx(np.log(2 / 8))
    # More history of buying recently means more expected purchases; none bought long ago means fewer.
    e = model.expected_purchases(np.array([[5, 5.9, 6.0], [5, 1.0, 6.0]]))
    assert e[0] > e[1] > 0


def test_the_fits_use_the_exact_likelihood_and_its_gradient():
    """The likelihoods the fits maximise (grouped by frequency) match values worked out by hand for repeat buyers,
    and their analytic gradients equal numerical ones."""
    def approx_fprime(p, f, h):  # central differences
        return np.array([(f(p + h * e) - f(p - h * e)) / (2 * h) for e in np.eye(len(p))])

    # BG/NBD, r=1, alpha=2, a=2, b=3, x=1, t_x=2, T=6: ln[G(2)/G(1) 2^1] + ln[G(5) G(4) / (G(3) G(6))]
    # + ln[(2/8)^2 + 2/3 (2/4)^2] = ln 2 + ln 0.6 + ln(11/192)
    by_hand = BetaGeo.log_likelihood(np.array([1.0, 2.0, 2.0, 3.0]), np.array([1.0]), np.array([2.0]),
                                     np.array([6.0]))
    assert by_hand[0] == pytest.approx(np.log(2 * 0.6 * 11 / 192))
    data = _cdnow("cdnow_customers_summary_with_transactions.csv")
    x, t_x, T = (data[c].to_numpy(dtype=float) for c in ("x", "t_x", "T"))
    params = np.array([0.3, 4.0, 0.8, 2.5])
    _, grads = BetaGeo._log_likelihood_and_gradient(params, x, t_x, T, *np.unique(x, return_inverse=True))
    numeric = approx_fprime(params, lambda p: BetaGeo.log_likelihood(p, x, t_x, T).mean(), 1e-5)
    np.testing.assert_allclose([g.mean() for g in grads], numeric, rtol=1e-5)

    # Gamma-Gamma density, p=1, q=2, v=1, x=1, m=1: G(3) / (G(1) G(2)) * 1 / (1 + 1)^3 = 1/4
    assert GammaGamma.log_likelihood(np.array([1.0, 2.0, 1.0]), np.array([1.0]), np.array([1.0]))[0] == (
        pytest.approx(np.log(0.25)))
    returning = data[data["x"] > 0]
    x, m = returning["x"].to_numpy(dtype=float), returning["zbar"].to_numpy(dtype=float)
    params = np.array([6.0, 3.5, 15.0])
    _, grads = GammaGamma._log_likelihood_and_gradient(params, x, m, *np.unique(x, return_inverse=True))
    numeric = approx_fprime(params, lambda p: GammaGamma.log_likelihood(p, x, m).mean(), 1e-5)
    np.testing.assert_allclose([g.mean() for g in grads], numeric, rtol=1e-5)


def test_gamma_gamma_reproduces_published_cdnow_estimates():
    data = _cdnow("cdnow_customers_summary_with_transactions.csv")
    returning = data[data["x"] > 0]
    model = GammaGamma().fit(returning[["x", "zbar"]].to_numpy())
    published = {"p": 6.25, "q": 3.74, "v": 15.44}  # Fader & Hardie (2013), "The Gamma-Gamma model of monetary value"
    for name, value in published.items():
        assert model.params()[name] == pytest.approx(value, rel=0.02), name
    # Conditional expectation by hand for x = 2, m = 22.35: p (v + x m) / (p x + q - 1)
    p, q, v = model.p_, model.q_, model.v_
    got = model.expected_spend(np.array([[2, 22.35]]))[0]
    assert got == pytest.approx(p * (v + 2 * 22.35) / (p * 2 + q - 1))


def test_gamma_gamma_handles_refunds_and_single_purchases():
    rng = np.random.default_rng(3)
    x = rng.integers(1, 10, 500).astype(float)
    m = rng.gamma(5.0, 10.0, 500)
    model = GammaGamma().fit(np.column_stack([x, m]))
    population = model.p_ * model.v_ / (model.q_ - 1)
    out = model.expected_spend(np.array([[0, 0.0], [3, -12.0], [2, 0.0], [2, 50.0]]))
    assert out[0] == out[1] == out[2] == pytest.approx(population)
    assert np.isfinite(out).all() and out[3] != population


# The generic checks feed random data of any width, but a BTYD model reads fixed summary columns
# ([frequency, recency, T] or [frequency, monetary_value]) and rejects any other width with a message naming them.
# These checks can only fail for that reason; test_expected_check_failures_are_only_the_fixed_width proves it.
_WIDTH = "random data of another width than the fixed summary columns"
_EXPECTED_FAILURES = {
    "BetaGeo": dict.fromkeys([
        "check_estimators_overwrite_params", "check_estimators_fit_returns_self", "check_readonly_memmap_input",
        "check_n_features_in_after_fitting", "check_estimators_dtypes", "check_dtype_object",
        "check_fit_idempotent", "check_fit_check_is_fitted", "check_n_features_in"], _WIDTH),
    "GammaGamma": dict.fromkeys([
        "check_fit_score_takes_y", "check_dont_overwrite_parameters", "check_n_features_in_after_fitting",
        "check_positive_only_tag_during_fit", "check_estimators_dtypes", "check_dtype_object",
        "check_pipeline_consistency", "check_estimators_nan_inf", "check_estimators_pickle",
        "check_f_contiguous_array_estimator", "check_transformer_data_not_an_array", "check_transformer_general",
        "check_transformer_preserve_dtypes", "check_methods_sample_order_invariance",
        "check_methods_subset_invariance", "check_dict_unchanged", "check_fit2d_predict1d"], _WIDTH),
}


def _expected_failures(estimator) -> dict[str, str]:
    return _EXPECTED_FAILURES[type(estimator).__name__]


@parametrize_with_checks([BetaGeo(), GammaGamma()], expected_failed_checks=_expected_failures)
def test_sklearn_estimator_contract(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", [BetaGeo(), GammaGamma()], ids=["BetaGeo", "GammaGamma"])
def test_expected_check_failures_are_only_the_fixed_width(estimator):
    results = check_estimator(estimator, on_fail=None)
    failed = {r["check_name"]: str(r["exception"]) for r in results if r["status"] == "failed"}
    expected = _expected_failures(estimator)
    assert set(failed) == set(expected)
    for name, message in failed.items():
        assert "columns [" in message, (name, message)
    assert sum(r["status"] == "passed" for r in results) >= 28
