"""Online and local learning rules: e-prop and three-factor (SuperSpike / DECOLLE-style).

Both compute gradients forward in time, with memory independent of the sequence length, and
write them into the parameters' ``.grad`` so that any torch optimizer applies them (or, for
the three-factor rule, apply the rank-1 update in place).
"""

from .eprop import FEEDBACK, EProp, EPropState, cosine_similarity, reset_slope
from .eprop_stream import STREAM_BACKENDS, StreamingEProp, numba_unsupported
from .three_factor import (TRACES, Factors, LocalReadout, ThreeFactor, ThreeFactorState,
                           lif_trace_step, random_projection, target_error)
from .three_factor_fused import BACKENDS as THREE_FACTOR_BACKENDS
from .three_factor_fused import fused_unsupported

__all__ = ["FEEDBACK", "EProp", "EPropState", "cosine_similarity", "reset_slope",
           "StreamingEProp", "numba_unsupported", "STREAM_BACKENDS",
           "TRACES", "Factors", "LocalReadout", "ThreeFactor", "ThreeFactorState",
           "lif_trace_step", "random_projection", "target_error", "THREE_FACTOR_BACKENDS",
           "fused_unsupported"]
