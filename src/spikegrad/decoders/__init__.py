"""Linear decoders that brain-computer-interface (BCI) studies compare against, and scores.

* :class:`WienerFilter`: ridge regression of velocity on a causal history of binned counts.
* :class:`KalmanDecoder`: the Kalman filter of Wu et al. (2006), a linear-Gaussian state
  model of velocity (optionally position too) fitted by least squares.
* :func:`r2_score`, :func:`correlation`: per-dimension scores of decoded against true
  kinematics.
* :class:`RSNNDecoder`: a recurrent spiking network decoder (train it offline by BPTT on
  :class:`RandomWindows`, or online by e-prop), and :func:`spiking_costs`.

All take time-major 2-D tensors: counts ``[T, N]`` (bins, channels) and kinematics
``[T, D]``, as in :class:`spikegrad.data.ReachingData`; they compute in float64 on the host.
"""

from .kalman import KalmanDecoder, fit_linear_gaussian, kalman_gains
from .metrics import Score, correlation, r2_score
from .rsnn import RandomWindows, RSNNDecoder, spiking_costs
from .wiener import WienerFilter, history_features

__all__ = ["WienerFilter", "history_features", "KalmanDecoder", "fit_linear_gaussian",
           "kalman_gains", "Score", "r2_score", "correlation", "RSNNDecoder", "RandomWindows",
           "spiking_costs"]
