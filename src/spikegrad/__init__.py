"""spikegrad: spiking neural networks trained with surrogate gradients."""

from .kernels.allocator import tune_allocator as _tune_allocator

_tune_allocator()  # large step buffers reused from the heap, not mapped afresh each step

from . import (convert, data, decoders, functional, hardware, interop, learning, losses, nn,
               proxy, robust, surrogate, train, viz)
from .functional import readout
from .surrogate import spike

__version__ = "0.1.0"
__all__ = ["spike", "surrogate", "functional", "nn", "losses", "readout", "data", "train",
           "learning", "convert", "interop", "hardware", "proxy", "robust", "decoders",
           "viz", "__version__"]
