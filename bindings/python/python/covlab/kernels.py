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


def from_eps(eps_fn, variance="beta"):
    """The DDPM kernel of an epsilon-prediction model `eps_fn(x_t, abar_t) -> (n, D)` (the
    diffusers convention) with `variance` 'beta', 'beta-tilde', a float, or a callable."""
    if not callable(eps_fn):
        raise TypeError("eps_fn: must be callable as eps_fn(x_t, abar_t)")
    if not (callable(variance) or variance in ("beta", "beta-tilde") or isinstance(variance, (int, float))):
        raise ValueError(f"variance: {variance!r} is not 'beta', 'beta-tilde', a float or a callable")

    def kernel(x_t, abar_s, abar_t):
        a2 = abar_t / abar_s
        b = -np.expm1(np.log(abar_t) - np.log(abar_s))
        eps = np.asarray(eps_fn(x_t, abar_t), dtype=np.float64)
        mean = (x_t - b / np.sqrt(1.0 - abar_t) * eps) / np.sqrt(a2)
        return mean, _variance(variance, x_t, abar_s, abar_t, b)

    return kernel


def from_score(score_fn, variance="beta"):
    """The same from a score model `score_fn(x_t, abar_t) = grad ln q_t` (eps = -sqrt(1 - abar_t) score)."""
    if not callable(score_fn):
        raise TypeError("score_fn: must be callable as score_fn(x_t, abar_t)")
    return from_eps(lambda x, abar: -np.sqrt(1.0 - abar) * np.asarray(score_fn(x, abar)), variance)


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
