"""Robust training objectives for :class:`spikegrad.train.Trainer`: min-max problems whose
inner maximisation is PGD through the surrogate gradient.

Each factory returns ``objective(model, inputs, targets, state) -> ObjectiveResult``.
``ObjectiveResult`` has the fields of :class:`spikegrad.train.ObjectiveOutput` (loss, state,
metrics) in the same order; ``robust`` sits below ``train`` in the layers of the package and
cannot import it, so wrap it where the two meet (an app):
``lambda m, x, y, s: sg.train.ObjectiveOutput(*objective(m, x, y, s))``.

``model`` maps inputs ``[B, ...]`` in [0, 1] to logits ``[B, C]`` (an :class:`SNNClassifier`
or a :class:`VIBClassifier`); the state is not used (each batch starts from the zero state)
and is returned as None. The inner maximisation runs in eval mode (dropout off, latent at its
mean), as in the reference implementations of TRADES, and the mode is restored for the outer
loss.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable, Mapping, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_choice, check_real
from ._common import NORMS, check_count, check_eps, eval_mode
from .attacks import pgd
from .kl import kl_gaussians
from .vib import VIBClassifier, vib_loss

__all__ = ["ObjectiveResult", "standard", "pgd_at", "trades", "vib", "robust_ib"]


class ObjectiveResult(NamedTuple):
    """``(loss, state, metrics)``, field for field :class:`spikegrad.train.ObjectiveOutput`."""

    loss: Tensor
    state: Any = None
    metrics: Mapping[str, float] = MappingProxyType({})  # read-only: a shared default


Objective = Callable[[nn.Module, Tensor, Tensor, Any], ObjectiveResult]


def _num(t: Tensor) -> float:
    return t.detach().item()  # a logged number, outside the graph


def _accuracy(logits: Tensor, y: Tensor) -> float:
    return int((logits.detach().argmax(1) == y).sum()) / len(y)


def _attack_args(eps, steps, step_size, norm) -> dict:
    """The inner PGD's arguments, checked when the objective is built (not at its first
    batch)."""
    if check_eps(eps) == 0:
        raise ValueError("eps must be > 0 for a robust objective (the training budget in "
                         "input units, e.g. 0.1); use standard() to train without an attack")
    steps = check_count(steps, "steps", "the PGD steps of the inner maximisation")
    if step_size is not None:
        check_eps(step_size, "step_size")
    return dict(steps=steps, step_size=step_size, norm=check_choice(norm, "norm", NORMS))


def standard() -> Objective:
    """Softmax cross-entropy on clean inputs. Metrics: ``ce``, ``acc``, ``n``."""

    def objective(model, inputs, targets, state=None) -> ObjectiveResult:
        logits = model(inputs)
        ce = F.cross_entropy(logits, targets)
        return ObjectiveResult(ce, None, {"ce": _num(ce), "acc": _accuracy(logits, targets),
                                          "n": float(len(targets))})

    return objective


def pgd_at(eps: float, *, steps: int = 10, step_size: Optional[float] = None,
           norm: str = "linf", generator: Optional[torch.Generator] = None) -> Objective:
    """PGD adversarial training (Madry et al. 2018): ``min_theta CE(f(x*), y)`` with
    ``x* = argmax_{|d| <= eps} CE(f(x + d), y)`` found by PGD from a random start.

    Metrics: ``ce_adv``, ``acc_adv`` (on ``x*``), ``n``.
    """
    kw = _attack_args(eps, steps, step_size, norm)

    def objective(model, inputs, targets, state=None) -> ObjectiveResult:
        with eval_mode(model):
            x_adv = pgd(model, inputs, targets, eps, random_start=True, generator=generator,
                        **kw)
        logits = model(x_adv)
        ce = F.cross_entropy(logits, targets)
        return ObjectiveResult(ce, None, {"ce_adv": _num(ce),
                                          "acc_adv": _accuracy(logits, targets),
                                          "n": float(len(targets))})

    return objective


def _kl_softmax(logits_adv: Tensor, p_clean: Tensor) -> Tensor:
    """``KL(p_clean || softmax(logits_adv))`` per sample, nats. ``[B, C] -> [B]``."""
    return F.kl_div(F.log_softmax(logits_adv, 1), p_clean, reduction="none").sum(1)


def trades(beta: float, eps: float = 0.1, *, steps: int = 10, step_size: Optional[float] = None,
           norm: str = "linf", generator: Optional[torch.Generator] = None) -> Objective:
    """TRADES (Zhang et al. 2019): ``CE(f(x), y) + beta * KL(f(x) || f(x'))`` with
    ``x' = argmax_{|x' - x| <= eps} KL(f(x) || f(x'))`` found by PGD on the KL (random start:
    at ``x' = x`` the KL has zero gradient). ``f`` is the softmax of the logits.

    Metrics: ``ce``, ``kl`` (nats, batch mean), ``acc`` (clean), ``n``.
    """
    check_real(beta, "beta", low=0.0, hint="the weight of the KL term, e.g. 6")
    kw = _attack_args(eps, steps, step_size, norm)

    def objective(model, inputs, targets, state=None) -> ObjectiveResult:
        with eval_mode(model):
            with torch.no_grad():
                p_clean = F.softmax(model(inputs), 1)
            x_adv = pgd(model, inputs, p_clean, eps, random_start=True, loss=_kl_softmax,
                        generator=generator, **kw)
        logits = model(inputs)
        ce = F.cross_entropy(logits, targets)
        # the gradient flows through both sides, as in Zhang et al.'s implementation
        kl = _kl_softmax(model(x_adv), F.softmax(logits, 1)).mean()
        return ObjectiveResult(ce + beta * kl, None, {
            "ce": _num(ce), "kl": _num(kl), "acc": _accuracy(logits, targets),
            "n": float(len(targets))})

    return objective


def _check_vib(model) -> VIBClassifier:
    if not isinstance(model, VIBClassifier):
        raise TypeError(f"this objective needs a spikegrad.robust.VIBClassifier (an encoder "
                        f"with a GaussianHead and a decoder), got {type(model).__name__}")
    return model


def vib(beta: float) -> Objective:
    """Variational information bottleneck: ``CE(p(y|z), y) + beta * KL(q(z|x) || r(z))``
    with ``z`` reparameterised and ``r`` the model's prior (Alemi et al. 2017). The model must
    be a :class:`VIBClassifier`.

    Metrics: ``ce``, ``kl`` (the estimate of I(X;Z) in nats, an upper bound), ``acc``, ``n``.
    """
    return robust_ib(beta, 0.0)


def robust_ib(beta: float, lam: float, eps: float = 0.1, *, steps: int = 10,
              step_size: Optional[float] = None, norm: str = "linf",
              generator: Optional[torch.Generator] = None) -> Objective:
    """Robust information bottleneck: the VIB loss plus ``lam`` times the largest movement of
    the code under a perturbation of the input,

        ``CE + beta * KL(q(z|x) || r(z)) + lam * max_{|d| <= eps} KL(q(z|x) || q(z|x + d))``,

    the inner maximum by PGD on the closed-form Gaussian KL through the surrogate (random
    start: at ``d = 0`` the KL and its gradient vanish). ``lam = 0`` is :func:`vib` (no
    attack is run). The model must be a :class:`VIBClassifier`.

    Metrics: ``ce``, ``kl`` (I(X;Z) upper bound, nats), ``kl_adv`` (nats), ``acc``, ``n``.
    """
    check_real(beta, "beta", low=0.0, hint="the weight of the KL to the prior, e.g. 1e-3")
    check_real(lam, "lam", low=0.0, hint="the weight of the adversarial KL, e.g. 1")
    kw = _attack_args(eps, steps, step_size, norm) if lam > 0 else {}

    def objective(model, inputs, targets, state=None) -> ObjectiveResult:
        out = _check_vib(model).forward_all(inputs)
        loss, parts = vib_loss(out.logits, targets, out.mu, out.log_var, beta,
                               prior=model.prior, z=out.z)
        metrics = {"ce": _num(parts["ce"]), "kl": _num(parts["kl"]),
                   "acc": _accuracy(out.logits, targets), "n": float(len(targets))}
        if lam > 0:
            kl_adv = _code_shift(model, inputs, out.mu, out.log_var, eps, generator, kw)
            loss = loss + lam * kl_adv
            metrics["kl_adv"] = _num(kl_adv)
        return ObjectiveResult(loss, None, metrics)

    return objective


def _code_shift(model: VIBClassifier, inputs: Tensor, mu: Tensor, log_var: Tensor, eps: float,
                generator, kw) -> Tensor:
    """``KL(q(z|x) || q(z|x'))`` (batch mean, nats) at the PGD-maximised ``x'``."""
    def shift(code, clean) -> Tensor:  # per-sample KL from the clean code to the attacked one
        return kl_gaussians(clean[0], clean[1], *code)

    with eval_mode(model):
        clean = (mu.detach(), log_var.detach())
        x_adv = pgd(model.encode, inputs, clean, eps, random_start=True, loss=shift,
                    generator=generator, **kw)
    mu_adv, log_var_adv = model.encode(x_adv)
    return kl_gaussians(mu, log_var, mu_adv, log_var_adv).mean()
