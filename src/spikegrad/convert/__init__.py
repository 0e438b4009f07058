"""ANN -> SNN conversion: a trained ReLU (or QCFS) network becomes a spiking network of
integrate-and-fire neurons with normalised weights, the baseline that direct training with
surrogate gradients is compared against.

* :func:`convert`: the converted :class:`spikegrad.nn.Sequential` (:mod:`.conversion`);
* :func:`activation_scales`: the per-layer scales it normalises with (:mod:`.scales`);
* :func:`fold_batchnorm`: BatchNorm folded into the preceding weight layer (:mod:`.batchnorm`);
* :class:`QCFS`: the activation to train the ANN with for low-latency conversion (:mod:`.qcfs`);
* :class:`SpikingMaxPool1d` / :class:`SpikingMaxPool2d`: max pooling of spikes (:mod:`.maxpool`);
* :func:`repeat_input`: a static input as a constant current ``[T, B, ...]`` (:mod:`.inputs`).

Example:
    >>> import torch
    >>> from spikegrad.convert import convert, repeat_input
    >>> ann = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(),
    ...                           torch.nn.Linear(16, 3)).double()
    >>> x = torch.rand(64, 4, dtype=torch.float64)
    >>> snn = convert(ann, x, norm="max")
    >>> vs, _ = snn(repeat_input(x, 512))
    >>> bool(((vs[-1] / 512 - ann(x)).abs().max() < 0.05))
    True
"""

from .batchnorm import fold_batchnorm
from .conversion import convert
from .inputs import repeat_input
from .maxpool import GateState, SpikingMaxPool1d, SpikingMaxPool2d
from .qcfs import QCFS
from .scales import activation_scales

__all__ = ["convert", "QCFS", "fold_batchnorm", "SpikingMaxPool1d", "SpikingMaxPool2d",
           "GateState", "activation_scales", "repeat_input"]
