"""Synaptic projections on ``[T, B, in]``: the dense GEMM or, for sparse binary spikes, the
event-driven product (:mod:`spikegrad.kernels.event_linear` chooses and runs them)."""

from ..kernels.event_linear import BACKENDS as LINEAR_BACKENDS
from ..kernels.event_linear import Plan, event_linear, plan_event_linear

__all__ = ["LINEAR_BACKENDS", "Plan", "event_linear", "plan_event_linear"]
