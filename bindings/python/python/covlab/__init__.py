"""covlab: exact reverse-covariance truth for diffusion models.

Gaussian-mixture data have closed-form posteriors at every noise level, so covlab gives the
exact mean and covariance of q(x_s | x_t), diffusers' schedules in their own arithmetic, the
exact path KL of covlab's covariance families (`path_kl`, the `path-kl --json` document) and of
any user kernel (`path_kl_model`, with `kernels`), sample checks against exact draws
(`metrics`) and the Lanczos square root (`lanczos_sqrt`). Arrays are numpy float64, batch
first (n, D).
"""

from ._covlab import (
    Mixture,
    Schedule,
    lanczos_sqrt,
    path_kl,
    path_kl_model,
    path_kl_model_internal,
    posterior,
)
from . import kernels, metrics

__all__ = [
    "Mixture",
    "Schedule",
    "posterior",
    "path_kl",
    "path_kl_model",
    "path_kl_model_internal",
    "lanczos_sqrt",
    "kernels",
    "metrics",
]
