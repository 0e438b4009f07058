"""Offline data sets, generators and spike encoders.

Everything here depends on torch and numpy only at import time; loaders that need
scikit-learn, mnist1d or h5py import them when called (``pip install 'spikegrad[apps]'``).
Inputs are returned sample-major (``[N, ...]``); encoders and
:func:`time_major_collate` produce the time-major ``[T, B, ...]`` layout.
"""

from .augment import random_roll
from .collate import time_major_collate
from .cue import cue_accumulation, delayed_xor
from .digits import load_digits_split
from .encoders import delta, latency, latency_times, poisson, population, rate
from .mnist1d import load_mnist1d
from .mnist_files import load_mnist_files, read_idx
from .nmnist import (NMNISTDataset, events_to_frames, make_events, read_nmnist_events,
                     write_nmnist_events)
from .patterns import noisy_signal_task, pattern_generation_task
from .randman import RandmanData, make_randman, randman_raster
from .shd import SHDDataset
from .splits import Split, split_in_order
from .tonic_adapter import TonicFrames, from_tonic, pad_time_collate
from .yinyang import encode_yinyang, load_yinyang_splits, make_yinyang

__all__ = [
    "from_tonic",
    "TonicFrames",
    "pad_time_collate",
    "random_roll",
    "rate",
    "poisson",
    "latency",
    "latency_times",
    "delta",
    "population",
    "make_randman",
    "randman_raster",
    "split_in_order",
    "RandmanData",
    "load_digits_split",
    "load_mnist1d",
    "SHDDataset",
    "time_major_collate",
    "Split",
    "load_mnist_files",
    "read_idx",
    "NMNISTDataset",
    "events_to_frames",
    "make_events",
    "read_nmnist_events",
    "write_nmnist_events",
    "pattern_generation_task",
    "noisy_signal_task",
    "make_yinyang",
    "encode_yinyang",
    "load_yinyang_splits",
    "cue_accumulation",
    "delayed_xor",
]

# the BCI data: a simulated motor-cortex population and readers of real reaching recordings
from .cortex import CortexTruth, Disruption, ReachingData, simulate_cortex  # noqa: E402
from .reaching import bin_spike_times, load_nlb_mc_maze, load_odoherty  # noqa: E402

__all__ += ["ReachingData", "CortexTruth", "Disruption", "simulate_cortex", "load_odoherty",
            "load_nlb_mc_maze", "bin_spike_times"]
