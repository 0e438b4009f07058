"""Convolutions with few input channels: the compiled loops of
:mod:`spikegrad.kernels.direct_conv` where they apply (None elsewhere: the caller runs torch's)."""

from ..kernels.direct_conv import direct_conv2d

__all__ = ["direct_conv2d"]
