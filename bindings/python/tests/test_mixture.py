"""covlab.Mixture and covlab.posterior against closed forms and finite differences."""

import numpy as np
import pytest

import covlab


def gaussian(mu, cov):
    return covlab.Mixture(np.array([1.0]), np.array([mu]), np.array([cov]))


def test_single_gaussian_closed_forms():
    mu = np.array([1.0, -2.0])
    cov = np.array([[2.0, 0.3], [0.3, 0.5]])
    m = gaussian(mu, cov)
    abar = 0.3
    x = np.array([[0.1, 0.2], [-1.0, 3.0]])
    # q_t = N(sqrt(abar) mu, abar cov + (1 - abar) I).
    ct = abar * cov + (1 - abar) * np.eye(2)
    prec = np.linalg.inv(ct)
    r = x - np.sqrt(abar) * mu
    np.testing.assert_allclose(m.score(x, abar), -r @ prec, rtol=1e-12)
    np.testing.assert_allclose(m.hessian(x, abar), np.broadcast_to(-prec, (2, 2, 2)), rtol=1e-12)
    lp = -0.5 * np.einsum("ni,ij,nj->n", r, prec, r) - 0.5 * np.log(np.linalg.det(2 * np.pi * ct))
    np.testing.assert_allclose(m.log_prob(x, abar), lp, rtol=1e-12)
    v = np.array([[1.0, 0.0], [0.5, -1.0]])
    np.testing.assert_allclose(m.hvp(x, abar, v), -v @ prec, rtol=1e-12)
    # Posterior q(x_0 | x_t) of a Gaussian: Kalman.
    mean, c = covlab.posterior(m, x, 1.0, abar)
    gain = np.sqrt(abar) * cov @ prec
    np.testing.assert_allclose(mean, mu + (x - np.sqrt(abar) * mu) @ gain.T, rtol=1e-10)
    np.testing.assert_allclose(c[0], cov - gain @ (np.sqrt(abar) * cov), rtol=1e-10, atol=1e-14)


def test_score_is_the_gradient_of_log_prob():
    m = covlab.Mixture.preset("grid9")
    x = m.sample(20, seed=3)
    h = 1e-5
    for j in range(m.dim):
        e = np.zeros(m.dim)
        e[j] = h
        fd = (m.log_prob(x + e, 0.4) - m.log_prob(x - e, 0.4)) / (2 * h)
        # Central differences: O(h^2) ~ 1e-10 times the third derivative.
        np.testing.assert_allclose(m.score(x, 0.4)[:, j], fd, rtol=1e-6, atol=1e-7)


def test_sampling_is_seeded():
    m = covlab.Mixture.preset("mix6")
    np.testing.assert_array_equal(m.sample(10, 1), m.sample(10, 1))
    assert not np.array_equal(m.sample(10, 1), m.sample(10, 2))


def test_bad_input_names_the_argument():
    m = covlab.Mixture.preset("grid9")
    with pytest.raises(ValueError, match="x"):
        m.score(np.zeros((3, 5)), 0.5)
    with pytest.raises(ValueError, match="x"):
        m.score(np.array([[np.nan, 0.0]]), 0.5)
    with pytest.raises(ValueError, match="abar"):
        m.score(np.zeros((3, 2)), 1.5)
    with pytest.raises(ValueError, match="abar_t"):
        covlab.posterior(m, np.zeros((1, 2)), 0.5, 0.6)
    with pytest.raises(ValueError, match="name"):
        covlab.Mixture.preset("nope")
    with pytest.raises(ValueError, match="covariances"):
        covlab.Mixture(np.array([1.0]), np.zeros((1, 2)), np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="weights"):
        covlab.Mixture(np.array([0.5, 0.5]), np.zeros((1, 2)), np.eye(2)[None])
    with pytest.raises(TypeError):
        m.score("not an array", 0.5)


def test_parameters_rebuild_the_mixture():
    # weights, means and covariances are the constructor's arguments: the mixture rebuilt
    # from them has the same density (to round-off of its re-derived eigendecompositions)
    # and grid9's are its documented values (means {-3, 0, 3}^2, std 0.1, equal weights).
    g = covlab.Mixture.preset("grid9")
    assert g.weights.shape == (9,) and g.means.shape == (9, 2) and g.covariances.shape == (9, 2, 2)
    np.testing.assert_allclose(g.weights, np.full(9, 1 / 9), rtol=1e-15)
    grid = sorted(map(tuple, g.means))
    assert grid == sorted((a, b) for a in (-3.0, 0.0, 3.0) for b in (-3.0, 0.0, 3.0))
    np.testing.assert_allclose(g.covariances, np.broadcast_to(0.01 * np.eye(2), (9, 2, 2)), rtol=1e-14)
    for name in ("grid9", "aniso2", "mix6"):
        m = covlab.Mixture.preset(name)
        r = covlab.Mixture(m.weights, m.means, m.covariances)
        x = m.sample(50, seed=5)
        np.testing.assert_allclose(r.log_prob(x, 0.6), m.log_prob(x, 0.6), rtol=1e-12)
