"""covlab: exact reverse-covariance truth for diffusion models.

Gaussian-mixture data have closed-form posteriors at every noise level, so covlab gives the
exact mean and covariance of q(x_s | x_t), diffusers' schedules in their own arithmetic, and
(in the Rust lab) the exact path KL of a chain. Arrays are numpy float64, batch first (n, D).
"""

from ._covlab import Mixture, Schedule, posterior

__all__ = ["Mixture", "Schedule", "posterior"]
