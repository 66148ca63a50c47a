"""Gaussian reverse kernels for `covlab.path_kl_model`, built from what users have.

A kernel is a callable `kernel(x_t, abar_s, abar_t) -> (mean, variance)` for the reverse step
from `abar_t` to `abar_s > abar_t` at the rows of `x_t` (n, D); `variance` is a float, (n,),
(n, D) diagonal or (n, D, D) full. With `a^2 = abar_t / abar_s` and `b = 1 - a^2`, the DDPM mean
from an epsilon prediction is
    mean = (x_t - b / sqrt(1 - abar_t) * eps) / a,
the posterior mean of x_s given x_t and x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t).
"""

import numpy as np

__all__ = ["from_eps", "from_score", "exact"]


def _variance(variance, x_t, abar_s, abar_t, b):
    if callable(variance):
        return np.asarray(variance(x_t, abar_s, abar_t), dtype=np.float64)
    if variance == "beta":
        return float(b)
    if variance == "beta-tilde":
        # beta * (1 - abar_s) / (1 - abar_t); 0 at the last step (abar_s = 1): degenerate.
        return float(b * (1.0 - abar_s) / (1.0 - abar_t))
    if isinstance(variance, (int, float)):
        return float(variance)
    raise ValueError(
        f"variance: {variance!r} is not 'beta', 'beta-tilde', a float or a callable"
        " (x_t, abar_s, abar_t) -> (n,), (n, D) or (n, D, D)"
    )


def _gamma_estimator(data, n_mc, seed):
    """E_{q_t} ||eps||^2 / D as a function of (eps_fn, abar_t): a callable `data(abar_t)` as
    given, or a Monte Carlo estimate over `n_mc` draws x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) z
    with x_0 from the `covlab.Mixture` `data` (the same x_0 and z at every abar_t, seeded),
    cached per abar_t."""
    from ._covlab import Mixture

    if callable(data) and not isinstance(data, Mixture):
        return lambda eps_fn, abar_t: float(data(abar_t))
    if not isinstance(data, Mixture):
        raise TypeError(
            "data: variance='analytic' needs data=covlab.Mixture (Monte Carlo over q_t) or a "
            "callable abar_t -> E||eps||^2 / D"
        )
    if not (isinstance(n_mc, int) and n_mc >= 2):
        raise ValueError(f"n_mc: expected an integer >= 2, got {n_mc!r}")
    x0 = data.sample(n_mc, seed)
    z = np.random.default_rng(seed).standard_normal(x0.shape)
    cache = {}

    def gamma(eps_fn, abar_t):
        key = float(abar_t)
        if key not in cache:
            x_t = np.sqrt(abar_t) * x0 + np.sqrt(1.0 - abar_t) * z
            eps = np.asarray(eps_fn(x_t, abar_t), dtype=np.float64)
            cache[key] = float(np.mean(np.sum(eps * eps, axis=1)) / x0.shape[1])
        return cache[key]

    return gamma


def from_eps(eps_fn, variance="beta", data=None, n_mc=20000, seed=0):
    """The DDPM kernel of an epsilon-prediction model `eps_fn(x_t, abar_t) -> (n, D)` (the
    diffusers convention) with `variance`:

    - 'beta': b = 1 - abar_t / abar_s;
    - 'beta-tilde': b (1 - abar_s) / (1 - abar_t) (0 at the last step: degenerate);
    - 'analytic': Analytic-DPM's optimal isotropic variance for this mean,
      sigma^2 = (b / a^2) (1 - b Gamma_t / (1 - abar_t)), Gamma_t = E_{q_t} ||eps(x_t)||^2 / D
      with Gamma_t clipped to [0, 1] (sigma^2 between beta-tilde and b / a^2, as Analytic-DPM
      bounds it). This is Bao et al.'s sigma*^2 with lambda^2 = beta-tilde, rewritten; with the
      exact eps it is E[tr Cov(x_s | x_t)] / D, covlab's `analytic` family. Gamma_t comes from
      `data`: a `covlab.Mixture` (Monte Carlo over `n_mc` draws of q_t, seeded by `seed`, the
      model's own eps, as Analytic-DPM estimates it) or a callable abar_t -> Gamma_t;
    - a float (a constant variance), or a callable (x_t, abar_s, abar_t) -> (n,), (n, D) or
      (n, D, D).
    """
    if not callable(eps_fn):
        raise TypeError("eps_fn: must be callable as eps_fn(x_t, abar_t)")
    named = ("beta", "beta-tilde", "analytic")
    if not (callable(variance) or variance in named or isinstance(variance, (int, float))):
        raise ValueError(
            f"variance: {variance!r} is not 'beta', 'beta-tilde', 'analytic', a float or a callable"
        )
    gamma = _gamma_estimator(data, n_mc, seed) if variance == "analytic" else None

    def kernel(x_t, abar_s, abar_t):
        a2 = abar_t / abar_s
        b = -np.expm1(np.log(abar_t) - np.log(abar_s))
        eps = np.asarray(eps_fn(x_t, abar_t), dtype=np.float64)
        mean = (x_t - b / np.sqrt(1.0 - abar_t) * eps) / np.sqrt(a2)
        if gamma is not None:
            g = min(max(gamma(eps_fn, abar_t), 0.0), 1.0)
            return mean, float(b / a2 * (1.0 - b * g / (1.0 - abar_t)))
        return mean, _variance(variance, x_t, abar_s, abar_t, b)

    return kernel


def from_score(score_fn, variance="beta", data=None, n_mc=20000, seed=0):
    """The same from a score model `score_fn(x_t, abar_t) = grad ln q_t` (eps = -sqrt(1 - abar_t) score)."""
    if not callable(score_fn):
        raise TypeError("score_fn: must be callable as score_fn(x_t, abar_t)")
    return from_eps(
        lambda x, abar: -np.sqrt(1.0 - abar) * np.asarray(score_fn(x, abar)),
        variance,
        data=data,
        n_mc=n_mc,
        seed=seed,
    )


def exact(mix, covariance="full"):
    """The exact kernel of a `covlab.Mixture`: the posterior mean with the full covariance,
    its diagonal ('diag'), or 'beta'."""
    from ._covlab import posterior

    def kernel(x_t, abar_s, abar_t):
        mean, cov = posterior(mix, x_t, abar_s, abar_t)
        if covariance == "full":
            return mean, cov
        if covariance == "diag":
            return mean, np.ascontiguousarray(np.diagonal(cov, axis1=1, axis2=2))
        return mean, float(-np.expm1(np.log(abar_t) - np.log(abar_s)))

    return kernel
