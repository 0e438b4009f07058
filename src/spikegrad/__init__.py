"""spikegrad: spiking neural networks trained with surrogate gradients."""

from . import functional, losses, nn, surrogate
from .functional import readout
from .surrogate import spike

__version__ = "0.1.0"
__all__ = ["spike", "surrogate", "functional", "nn", "losses", "readout", "__version__"]
