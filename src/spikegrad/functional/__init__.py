"""Pure neuron dynamics: ``<model>_step``, ``<model>_seq``, Params/State NamedTuples."""

from .adaptation import ALIFParams, ALIFState, adaptive_threshold, alif_seq, alif_step, alif_trace
from .conv import direct_conv2d
from .dendrite import (DendriteParams, DendriteState, dendrite_currents, dendrite_seq,
                       dendrite_step, dendrite_trace)
from .leaky import LIParams, LIState, integrate, li_seq, li_step, lowpass
from .linear import LINEAR_BACKENDS, event_linear, plan_event_linear
from .lif import BACKENDS, RESET_MODES, LIFParams, LIFState, fire, lif_seq, lif_step, lif_trace, reset
from .pooling import window_pool2d
from .projected import projected_lif_seq, projected_recurrent_lif_seq
from .readout import first_spike_time, membrane, spike_count
from .refractory import RefractoryParams
from .recurrent import RecurrentParams, RecurrentState, recurrent_seq, recurrent_step
from .scan import scan, scan_trace
from .state import detach_state, map_state, stack_states
from .truncation import cut_every, run_in_chunks, truncate_gradients

__all__ = [
    "LIParams", "LIState", "integrate", "li_seq", "li_step", "lowpass",
    "BACKENDS", "RESET_MODES", "LIFParams", "LIFState", "fire", "lif_seq", "lif_step",
    "lif_trace", "reset", "first_spike_time", "membrane", "spike_count",
    "RecurrentParams", "RecurrentState", "recurrent_seq", "recurrent_step",
    "scan", "scan_trace", "detach_state", "map_state", "stack_states",
    "ALIFParams", "ALIFState", "adaptive_threshold", "alif_seq", "alif_step", "alif_trace",
    "RefractoryParams", "DendriteParams", "DendriteState", "dendrite_currents", "dendrite_seq",
    "dendrite_step", "dendrite_trace", "LINEAR_BACKENDS", "event_linear", "plan_event_linear",
    "projected_lif_seq", "projected_recurrent_lif_seq",
    "truncate_gradients", "cut_every", "run_in_chunks", "window_pool2d", "direct_conv2d",
]
