"""Thin modules over the functional core. All sequences are time-major ``[T, B, ...]``."""

from .base import StatefulModule
from .layers import (AvgPool1d, AvgPool2d, Conv1d, Conv2d, Dropout, Flatten, Linear, MaxPool1d,
                     MaxPool2d, TimeDistributed)
from .neurons import IF, LI, LIF
from .recurrent import Recurrent
from .sequential import Sequential

__all__ = ["StatefulModule", "AvgPool1d", "AvgPool2d", "Conv1d", "Conv2d", "Dropout", "Flatten",
           "Linear", "MaxPool1d", "MaxPool2d", "TimeDistributed", "IF", "LI", "LIF",
           "Recurrent", "Sequential"]
