"""Thin modules over the functional core. All sequences are time-major ``[T, B, ...]``."""

from .base import StatefulModule
from .layers import Dropout, Flatten, Linear, TimeDistributed
from .dendrite import DendriticLIF
from .neurons import ALIF, IF, LI, LIF
from .recurrent import Recurrent
from .norm import PerStepBatchNorm, ThresholdBatchNorm
# the conv and pooling layers with their arguments checked (subclasses of those in .layers)
from .conv import (AvgPool1d, AvgPool2d, Conv1d, Conv2d, ConvBlock, MaxPool1d, MaxPool2d,
                   SumPool1d, SumPool2d, conv_output_size, dense_macs, fan_out, spiking_conv,
                   synaptic_ops)
from .sequential import Sequential

__all__ = ["StatefulModule", "AvgPool1d", "AvgPool2d", "Conv1d", "Conv2d", "Dropout", "Flatten",
           "Linear", "MaxPool1d", "MaxPool2d", "TimeDistributed", "IF", "LI", "LIF", "ALIF",
           "DendriticLIF", "Recurrent", "Sequential"]
__all__ += ["SumPool1d", "SumPool2d", "PerStepBatchNorm", "ThresholdBatchNorm", "ConvBlock",
            "conv_output_size", "dense_macs", "fan_out", "spiking_conv", "synaptic_ops"]
from . import init  # sg.nn.init: fluctuation-driven and data-driven weight initialisation
