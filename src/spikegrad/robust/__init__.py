"""Adversarial robustness and information bottlenecks for SNNs trained through surrogates.

* :class:`SNNClassifier`: an SNN as a module ``x [B, ...] -> logits [B, C]`` (encode, run,
  read out), so that ANN attack libraries such as torchattacks apply.
* Attacks whose gradient is BPTT through the surrogate: :func:`fgsm`, :func:`pgd` (L-inf and
  L2, random start, restarts, EOT for stochastic encoders), :func:`bpda` for a
  non-differentiable step, the gradient-free :func:`spsa` and :func:`transfer` from a twin;
  :func:`accuracy` and :func:`robust_accuracy`.
* :func:`masking_report`: the gradient-masking checks that must accompany every number.
* Variational information bottleneck: :class:`GaussianHead`, :class:`VIBClassifier`,
  :func:`vib_loss`, closed-form Gaussian KLs and priors.
* Trainer objectives: :func:`standard`, :func:`pgd_at`, :func:`trades`, :func:`vib`,
  :func:`robust_ib`.
"""

from ._common import per_sample_loss
from .attacks import accuracy, fgsm, input_gradient, pgd, robust_accuracy
from .bpda import BPDA, bpda
from .kl import (GaussianPrior, MixturePrior, Prior, gaussian_log_prob, kl_gaussians,
                 kl_standard_normal, reparameterize)
from .masking import masking_report
from .objectives import ObjectiveResult, pgd_at, robust_ib, standard, trades, vib
from .spsa import spsa, spsa_gradient
from .transfer import TransferResult, transfer
from .vib import GaussianHead, VIBClassifier, VIBOutput, vib_loss
from .wrapper import SNNClassifier, current_encoder, rate_encoder

__all__ = ["SNNClassifier", "current_encoder", "rate_encoder", "fgsm", "pgd", "input_gradient",
           "per_sample_loss", "bpda", "BPDA", "spsa", "spsa_gradient", "transfer",
           "TransferResult", "accuracy", "robust_accuracy", "masking_report", "GaussianHead",
           "VIBClassifier", "VIBOutput", "vib_loss", "reparameterize", "kl_standard_normal",
           "kl_gaussians", "gaussian_log_prob", "Prior", "GaussianPrior", "MixturePrior",
           "ObjectiveResult", "standard", "pgd_at", "trades", "vib", "robust_ib"]
