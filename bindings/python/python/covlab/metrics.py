"""Sample metrics against exact truth: the lab's unbiased MMD^2 (`mmd`) and the sample check
against exact draws of a mixture (`check_samples`)."""

from ._covlab import check_samples, mmd

__all__ = ["mmd", "check_samples"]
