"""Analog crossbar hardware: device update models, PCM inference noise, DAC/ADC, and on-chip
update schemes, after IBM aihwkit's documented equations (Rasch et al. 2021).

* :mod:`.devices`: pulsed device models (constant step, soft bounds, linear step, power step)
  with up/down asymmetry, device-to-device and cycle-to-cycle variation, finite states;
* :mod:`.pulse`: :func:`pulse`, the one function through which every update changes a device;
* :mod:`.updates`: naive rounding, stochastic bit streams, mixed precision;
* :mod:`.pcm`: programming noise, drift and 1/f read noise of PCM (Nandakumar et al. 2019);
* :mod:`.converters`: DAC/ADC quantisation;
* :mod:`.crossbar`: :class:`CrossbarLinear`, the array as a time-folded layer.
"""

from .converters import quantize
from .crossbar import CrossbarLinear
from .devices import ConstantStep, DeviceParams, LinearStep, PowStep, PulsedDevice, SoftBounds
from .pcm import PCMNoise
from .pulse import pulse
from .updates import (UPDATE_SCHEMES, mixed_precision_pulses, naive_pulses,
                      pulse_probabilities, stochastic_moments, stochastic_pulses)

__all__ = ["CrossbarLinear", "ConstantStep", "DeviceParams", "LinearStep", "PowStep",
           "PulsedDevice", "SoftBounds", "PCMNoise", "pulse", "quantize", "UPDATE_SCHEMES",
           "mixed_precision_pulses", "naive_pulses", "pulse_probabilities",
           "stochastic_moments", "stochastic_pulses"]
