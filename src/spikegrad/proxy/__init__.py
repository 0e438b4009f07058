"""Ways around a non-differentiable step: learned proxies and gradient estimators.

* a differentiable proxy fitted to a black-box scorer (:func:`fit_proxy`, with held-out
  :func:`r2_score` and :func:`calibration`), whose input gradient stands in for the scorer's;
* estimators for discrete samples: straight-through Gumbel-softmax
  (:func:`gumbel_softmax_st`, the categorical twin of :func:`spikegrad.spike`), the
  score-function (REINFORCE) loss with its baselines, and REINVENT's augmented likelihood.

See docs/proxy.md for the formulas and when to use which.
"""

from .fit import ProxyFit, fit_proxy
from .gumbel import gumbel_noise, gumbel_softmax_st
from .metrics import Calibration, calibration, r2_score
from .reinforce import LearnedBaseline, MovingAverageBaseline, reinforce_loss
from .reinvent import reinvent_loss

__all__ = ["ProxyFit", "fit_proxy", "Calibration", "calibration", "r2_score",
           "gumbel_noise", "gumbel_softmax_st", "reinforce_loss", "MovingAverageBaseline",
           "LearnedBaseline", "reinvent_loss"]
