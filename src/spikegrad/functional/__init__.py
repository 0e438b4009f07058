"""Pure neuron dynamics: ``<model>_step``, ``<model>_seq``, Params/State NamedTuples."""

from .leaky import LIParams, LIState, integrate, li_seq, li_step, lowpass
from .lif import BACKENDS, RESET_MODES, LIFParams, LIFState, fire, lif_seq, lif_step, lif_trace, reset
from .readout import first_spike_time, membrane, spike_count
from .recurrent import RecurrentParams, RecurrentState, recurrent_seq, recurrent_step
from .scan import scan, scan_trace
from .state import detach_state, map_state, stack_states

__all__ = [
    "LIParams", "LIState", "integrate", "li_seq", "li_step", "lowpass",
    "BACKENDS", "RESET_MODES", "LIFParams", "LIFState", "fire", "lif_seq", "lif_step",
    "lif_trace", "reset", "first_spike_time", "membrane", "spike_count",
    "RecurrentParams", "RecurrentState", "recurrent_seq", "recurrent_step",
    "scan", "scan_trace", "detach_state", "map_state", "stack_states",
]
