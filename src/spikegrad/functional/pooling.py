"""Pooling over non-overlapping windows of ``[N, C, H, W]`` feature maps: the compiled loops
of :mod:`spikegrad.kernels.pool` where they apply (None elsewhere: the caller runs torch's)."""

from ..kernels.pool import window_pool2d

__all__ = ["window_pool2d"]
