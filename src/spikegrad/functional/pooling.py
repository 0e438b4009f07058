"""Pooling over non-overlapping windows of ``[N, C, H, W]`` feature maps: the compiled loops
of :mod:`spikegrad.kernels.pool` where they apply (None elsewhere: the caller runs torch's),
and the test of whether a window is one of those (``k x k``, stride ``k``, no padding)."""

from ..kernels.pool import square_window, window_pool2d

__all__ = ["square_window", "window_pool2d"]
