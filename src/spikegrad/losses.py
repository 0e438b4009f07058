"""Readout losses and activity regularisers. Inputs are time-major ``[T, B, ...]``.

Count cross-entropy (the classification seed): logits ``s * c_k`` with spike counts
``c_k = sum_t z[t, k]``; the gradient reaching every spike of output ``k`` is the same,
``s (p_k - y_k) / B``: the error is spread evenly over the spikes of the sequence, and reaches
the membrane through the surrogate, ``dL/dv_t = s (p_k - y_k) / B * phi(v_t - theta)``
(plus the leak's carry from later steps). ``tests/test_losses.py`` checks both.

Coding losses (the loss decides the code the network learns):

* **rate** -- :func:`membrane_rate_loss` ``L = 1/2 sum_t (v_t - y)^2`` on a readout membrane,
  and its spike-rate form :func:`spike_rate_loss`: an error signal at *every* step.
* **temporal** -- :func:`first_spike_nll` (escape noise, one target step per neuron: no
  gradient after it) and :func:`ttfs_cross_entropy` (the earliest output neuron wins; a
  soft-min over relaxed first-spike times, no gradient after each neuron's first spike).

Constraint terms (biological constraints enter as terms of the loss): L1/L2 on spike counts
(:func:`spike_count_l1`, :func:`spike_count_l2`), target-rate bands (:func:`rate_band`),
L1/L2 on membranes above threshold / below a floor / all (:func:`membrane_penalty`), each
per neuron or per layer, combined with a weight per layer by :class:`Term` and
:func:`regularization`.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, NamedTuple, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from ._validate import check_choice, check_real, check_sequence, check_tensor
from .functional.leaky import lowpass
from .functional.readout import membrane

__all__ = ["count_cross_entropy", "membrane_cross_entropy", "mse", "filtered_mse", "nmse",
           "spike_count_l1", "spike_count_l2", "rate_band", "membrane_rate_loss",
           "spike_rate_loss", "first_spike_nll", "soft_first_spike_time", "ttfs_cross_entropy",
           "membrane_penalty", "Term", "regularization", "regularization_terms"]

PER = ("neuron", "layer")


def _check_labels(y, B: int, n_classes: int) -> Tensor:
    check_tensor(y, "y", floating=False)
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}")
    if y.shape != (B,):
        raise ValueError(f"y must have shape [B] = [{B}], got {list(y.shape)}")
    if B and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"y: class labels must lie in [0, {n_classes - 1}], got range "
                         f"[{int(y.min())}, {int(y.max())}]")
    return y.long()


def count_cross_entropy(zs: Tensor, y: Tensor, scale: float = 1.0) -> Tensor:
    """Softmax cross-entropy over output spike counts.

    Args:
        zs: output spikes ``[T, B, C]``.
        y: labels ``[B]``.
        scale: count-to-logit factor ``s`` (logits ``s * counts``).

    Returns:
        Mean loss over the batch (scalar).
    """
    check_sequence(zs, "zs")
    if zs.dim() != 3:
        raise ValueError(f"zs must have shape [T, B, C], got {list(zs.shape)}")
    check_real(scale, "scale", low=0.0, low_open=True,
               hint="the count-to-logit factor; 0 or less would make the loss constant or "
                    "reward the wrong class")
    y = _check_labels(y, zs.shape[1], zs.shape[2])
    return F.cross_entropy(scale * zs.sum(0), y)


def membrane_cross_entropy(vs: Tensor, y: Tensor, reduce: str = "max") -> Tensor:
    """Cross-entropy on a readout membrane reduced over time (``max``, ``mean``, ``last``,
    ``sum``). ``vs [T, B, C]``, ``y [B]``; mean over the batch."""
    check_sequence(vs, "vs")
    if vs.dim() != 3:
        raise ValueError(f"vs must have shape [T, B, C], got {list(vs.shape)}")
    y = _check_labels(y, vs.shape[1], vs.shape[2])
    return F.cross_entropy(membrane(vs, reduce), y)


def _check_pair(out: Tensor, target: Tensor) -> None:
    check_sequence(out, "output")
    check_tensor(target, "target")
    if out.shape != target.shape:
        raise ValueError(f"output {list(out.shape)} and target {list(target.shape)} must have "
                         "the same shape [T, B, ...]")


def mse(out: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over all steps, samples and channels."""
    _check_pair(out, target)
    return F.mse_loss(out, target)


def nmse(out: Tensor, target: Tensor) -> Tensor:
    """Normalised MSE ``mean((out - target)^2) / var(target)``: 1.0 for predicting the mean."""
    _check_pair(out, target)
    return F.mse_loss(out, target) / target.var(unbiased=False).clamp_min(1e-12)


def filtered_mse(zs: Tensor, target: Tensor, decay: Union[float, Tensor],
                 gain: float = 1.0) -> Tensor:
    """MSE between ``gain * lowpass(zs)`` (exponential filter, ``y_t = decay y_{t-1} + z_t``)
    and ``target``, both ``[T, B, ...]``. ``decay`` in [0, 1], ``gain`` finite."""
    check_real(gain, "gain")
    return mse(gain * lowpass(check_sequence(zs, "zs"), decay), target)


def _counts(zs: Tensor, per: str) -> Tensor:
    check_sequence(zs, "zs")
    check_choice(per, "per", PER)
    counts = zs.sum(0).flatten(1)  # [B, N]
    return counts if per == "neuron" else counts.mean(1, keepdim=True)


def spike_count_l1(zs: Tensor, per: str = "neuron") -> Tensor:
    """Mean over batch and neurons of the spike count (L1; counts are >= 0).

    ``per="layer"`` uses the layer's mean count per neuron instead of each neuron's."""
    return _counts(zs, per).mean()


def spike_count_l2(zs: Tensor, per: str = "neuron") -> Tensor:
    """Mean over batch (and neurons) of the squared spike count."""
    return _counts(zs, per).pow(2).mean()


def rate_band(zs: Tensor, low: Optional[float] = None, high: Optional[float] = None,
              per: str = "neuron", power: int = 2) -> Tensor:
    """Penalty for spike counts outside ``[low, high]`` (spikes per neuron per sequence).

    ``relu(low - c)^power + relu(c - high)^power`` averaged over batch (and neurons), with
    ``c`` each neuron's count (``per="neuron"``) or the layer's mean count (``per="layer"``).
    Zenke & Vogels (2021) use a per-neuron lower bound with a per-layer upper bound: sum two
    calls.
    """
    if low is None and high is None:
        raise ValueError("rate_band: give low, high, or both (spikes per neuron per sequence)")
    for name, bound in (("low", low), ("high", high)):
        if bound is not None:
            check_real(bound, f"rate_band: {name}", low=0.0,
                       hint="spikes per neuron per sequence")
    if low is not None and high is not None and low > high:
        raise ValueError(f"rate_band: low ({low}) must not exceed high ({high})")
    if power not in (1, 2):
        raise ValueError(f"rate_band: power must be 1 or 2, got {power!r}")
    c = _counts(zs, per)
    pen = torch.zeros_like(c)
    if low is not None:
        pen = pen + F.relu(low - c).pow(power)
    if high is not None:
        pen = pen + F.relu(c - high).pow(power)
    return pen.mean()


# --- coding losses: rate ---------------------------------------------------------------------

def _check_target(out: Tensor, target: Tensor, name: str) -> Tensor:
    """``target`` either per step ``[T, B, ...]`` (like ``out``) or constant ``[B, ...]``."""
    check_tensor(target, name)
    if target.shape == out.shape:
        return target
    if target.shape == out.shape[1:]:
        return target.unsqueeze(0)
    raise ValueError(f"{name} must have shape {list(out.shape)} (per step) or "
                     f"{list(out.shape[1:])} (constant over time), got {list(target.shape)}")


def membrane_rate_loss(vs: Tensor, target: Tensor) -> Tensor:
    """Rate loss on a membrane: ``L = 1/2 sum_t sum_k (v_t,k - y_k)^2``, mean over the batch.

    The error signal is dense: ``dL/dv_t = (v_t - y) / B`` at every step ``t``.

    Args:
        vs: membrane ``[T, B, C]`` (e.g. an LI readout).
        target: ``y``, ``[B, C]`` (held over time) or ``[T, B, C]``; for classification a
            scaled one-hot, e.g. ``on * one_hot(y) + off * (1 - one_hot(y))``.

    Returns:
        Scalar.
    """
    check_sequence(vs, "vs")
    y = _check_target(vs, target, "target")
    return 0.5 * (vs - y).pow(2).sum() / vs.shape[1]


def spike_rate_loss(zs: Tensor, target: Tensor) -> Tensor:
    """Spike-rate form of the rate loss: ``L = 1/2 sum_k (r_k - y_k)^2``, mean over the batch,
    with ``r_k = (1/T) sum_t z_t,k`` the firing rate in spikes per step.

    Every spike gets the same error, ``dL/dz_t = (r - y) / (T B)`` (dense in time).

    Args:
        zs: spikes ``[T, B, C]``.
        target: rates in spikes per step, ``[B, C]``.
    """
    check_sequence(zs, "zs")
    check_tensor(target, "target")
    if target.shape != zs.shape[1:]:
        raise ValueError(f"target must have shape [B, ...] = {list(zs.shape[1:])} (spikes per "
                         f"step for each sample and neuron), got {list(target.shape)}")
    return 0.5 * (zs.mean(0) - target).pow(2).sum() / zs.shape[1]


# --- coding losses: temporal -----------------------------------------------------------------

def _check_steps(t: Tensor, shape, T: int, name: str) -> Tensor:
    check_tensor(t, name, floating=False)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer steps, got dtype {t.dtype}; use {name}.long()")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {list(shape)} (one step per sample and "
                         f"neuron), got {list(t.shape)}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) > T):
        raise ValueError(f"{name} must lie in [0, T] = [0, {T}] (T: no spike in the window), "
                         f"got range [{int(t.min())}, {int(t.max())}]")
    return t.long()


def first_spike_nll(vs: Tensor, t_target: Tensor, threshold: Union[float, Tensor] = 1.0,
                    beta_esc: float = 5.0) -> Tensor:
    """Negative log-likelihood that each neuron's first spike falls at step ``t_f``.

    Escape noise turns the membrane into a spike probability per step,
    ``p_t = sigmoid(beta_esc (v_t - theta))``, and

        ``L_fts = -[ sum_{t < t_f} log(1 - p_t) + log p_{t_f} ]``

    summed over neurons, mean over the batch. ``t_f = T`` asks for no spike in the window
    (only the sum). Steps after ``t_f`` do not enter the likelihood, so ``dL/dv_t = 0`` for
    every ``t > t_f``, exactly; before it ``dL/dv_t = beta_esc p_t / B`` (push down), at it
    ``-beta_esc (1 - p_t) / B`` (push up). Computed with ``softplus`` (``-log(1 - p) =
    softplus(a)``, ``-log p = softplus(-a)``, ``a = beta_esc (v - theta)``), stable for any v.

    Args:
        vs: membrane ``[T, B, ...]`` that the escape noise reads (e.g. a non-resetting LI).
        t_target: integer steps ``[B, ...]`` in ``[0, T]``.
        threshold: ``theta`` (float or tensor broadcasting against ``[B, ...]``).
        beta_esc: escape-noise slope (> 0), per unit of membrane.

    Returns:
        Scalar.
    """
    check_sequence(vs, "vs")
    T = vs.shape[0]
    t_f = _check_steps(t_target, vs.shape[1:], T, "t_target")
    check_real(beta_esc, "beta_esc", low=0.0, low_open=True, hint="the escape-noise slope")
    check_real(threshold, "threshold")
    a = beta_esc * (vs - threshold)
    steps = torch.arange(T, device=vs.device).view(T, *([1] * (vs.dim() - 1)))
    before = (steps < t_f).to(vs.dtype)
    at = (steps == t_f).to(vs.dtype)
    # masks multiply finite terms: the gradient after t_f is an exact zero, not a small number
    return (before * F.softplus(a) + at * F.softplus(-a)).sum() / vs.shape[1]


def soft_first_spike_time(zs: Tensor) -> Tensor:
    """First-spike step of each neuron, differentiable through the spikes' surrogate.

    ``t_first = sum_{s=0}^{T-1} S_s`` with the survival ``S_s = prod_{t <= s} (1 - z_t)``: the
    number of steps before the first spike, ``T`` for a silent neuron. On binary spikes this is
    exactly :func:`spikegrad.readout.first_spike_time`. The relaxation is the product's
    multilinear extension, whose gradient is a counterfactual count of steps:

    * ``t < t_first``: ``dt_first/dz_t = -(t_first - t)`` (a spike here would come that much
      earlier; for a silent neuron ``-(T - t)``);
    * ``t = t_first``: ``-(t_2 - t_first)``, with ``t_2`` the second spike (or ``T``): removing
      the first spike makes the second one first;
    * ``t > t_first``: exactly ``0`` (every term holds the factor ``1 - z_{t_first} = 0``).

    Through the surrogate, ``dz_t/dv_t = phi(v_t - theta)``, so no error reaches a neuron's
    membrane after its first spike.

    Shapes: ``zs [T, B, ...] -> [B, ...]``.
    """
    check_sequence(zs, "zs")
    survival = torch.cumprod(1.0 - zs, dim=0)  # [T, B, ...]
    return survival.sum(0)


def ttfs_cross_entropy(zs: Tensor, y: Tensor, tau: float = 2.0) -> Tensor:
    """Time-to-first-spike classification: the earliest output neuron wins.

    Soft-min over the relaxed first-spike times (:func:`soft_first_spike_time`): logits
    ``-t_k / tau`` and softmax cross-entropy, ``L = -log( exp(-t_y/tau) / sum_k exp(-t_k/tau) )``,
    mean over the batch. ``tau`` (steps, > 0) is the soft-min temperature: smaller is closer
    to a hard ``argmin``. The loss pushes the label's first spike earlier and the others later;
    silent neurons sit at ``t = T``. As in Goeltz et al. (2021), but with spike times on the
    step grid (relaxed through the surrogate, not by an exact-time formula).

    Args:
        zs: output spikes ``[T, B, C]`` (with surrogate gradients).
        y: labels ``[B]``.
        tau: temperature in steps.
    """
    check_sequence(zs, "zs")
    if zs.dim() != 3:
        raise ValueError(f"zs must have shape [T, B, C], got {list(zs.shape)}")
    check_real(tau, "tau", low=0.0, low_open=True, hint="the soft-min temperature in steps")
    y = _check_labels(y, zs.shape[1], zs.shape[2])
    return F.cross_entropy(-soft_first_spike_time(zs) / tau, y)


# --- constraint terms ------------------------------------------------------------------------

REGIONS = ("above", "below", "all")


def membrane_penalty(vs: Tensor, region: str = "all", level: Union[float, Tensor] = 0.0,
                     power: int = 2, per: str = "neuron") -> Tensor:
    """L1 (``power=1``) or L2 (``power=2``) penalty on membrane potentials.

    ``region="above"``: ``relu(v - level)^p`` (e.g. ``level = theta``: the excursion above
    threshold); ``"below"``: ``relu(level - v)^p`` (a floor: no deep hyperpolarisation);
    ``"all"``: ``|v - level|^p``. Averaged over steps, samples and neurons. ``per="layer"``
    first averages the membrane over the layer's neurons (a population constraint).

    Args:
        vs: membrane ``[T, B, ...]``.
        region: ``"above"``, ``"below"`` or ``"all"``.
        level: threshold, floor or centre (float or per-neuron tensor).
        power: 1 or 2.
        per: ``"neuron"`` or ``"layer"``.
    """
    check_sequence(vs, "vs")
    check_choice(region, "region", REGIONS)
    check_choice(per, "per", PER)
    if power not in (1, 2):
        raise ValueError(f"membrane_penalty: power must be 1 (L1) or 2 (L2), got {power!r}")
    check_real(level, "level")
    d = vs - level
    if per == "layer":
        d = d.flatten(2).mean(2)  # [T, B]
    if region == "above":
        d = F.relu(d)
    elif region == "below":
        d = F.relu(-d)
    else:
        d = d.abs()
    return d.pow(power).mean()


class Term(NamedTuple):
    """One weighted constraint on one layer's output.

    Attributes:
        layer: index into the list of layer outputs (e.g. ``Sequential.forward_all``), or any
            key of a dict of recorded tensors (``{"hidden_v": vs}``).
        penalty: ``penalty(tensor) -> scalar``, e.g.
            ``functools.partial(losses.rate_band, low=0.01)``.
        weight: its weight (>= 0).
        name: label for :func:`regularization_terms` (default ``"<layer>:<penalty>"``).

    Example:
        >>> import functools, torch
        >>> terms = [Term(1, spike_count_l2, 1e-3),
        ...          Term(1, functools.partial(rate_band, high=4.0, per="layer"), 1e-2)]
        >>> outs = [None, torch.ones(5, 2, 3)]  # layer 1 fires 5 spikes per neuron
        >>> round(float(regularization(outs, terms)), 4)  # 1e-3 * 25 + 1e-2 * 1
        0.035
    """

    layer: Union[int, str]
    penalty: Callable[[Tensor], Tensor]
    weight: float = 1.0
    name: str = ""

    def label(self) -> str:
        if self.name:
            return self.name
        fn = getattr(self.penalty, "func", self.penalty)  # functools.partial
        return f"{self.layer}:{getattr(fn, '__name__', type(fn).__name__)}"


def regularization_terms(outs, terms: Sequence[Term]) -> Dict[str, Tensor]:
    """Each term's weighted value, by label (for logging)."""
    if isinstance(terms, Term) or not all(isinstance(t, Term) for t in terms):
        raise TypeError("terms must be a sequence of spikegrad.losses.Term(layer, penalty, "
                        "weight); wrap a single term in a list")
    out: Dict[str, Tensor] = {}
    for t in terms:
        if not callable(t.penalty):
            raise TypeError(f"Term {t.layer!r}: penalty must be callable, got "
                            f"{type(t.penalty).__name__}")
        if isinstance(t.weight, bool) or not isinstance(t.weight, (int, float)) \
                or not math.isfinite(t.weight) or t.weight < 0:
            raise ValueError(f"Term {t.label()}: weight must be a finite number >= 0, "
                             f"got {t.weight!r}")
        try:
            x = outs[t.layer]
        except (IndexError, KeyError):
            have = list(outs) if isinstance(outs, dict) else f"0..{len(outs) - 1}"
            raise ValueError(f"Term {t.label()}: no layer output {t.layer!r} (there are "
                             f"{len(outs)}: {have})") from None
        key, k = t.label(), 1
        while key in out:  # same label twice: keep both
            k += 1
            key = f"{t.label()}#{k}"
        out[key] = t.weight * t.penalty(x)
    return out


def regularization(outs, terms: Sequence[Term]) -> Tensor:
    """``sum_j weight_j * penalty_j(outs[layer_j])``: the constraint part of the loss.

    ``outs``: list (or dict) of recorded layer outputs; ``terms``: a sequence of :class:`Term`.
    Returns a scalar (0 for no terms).
    """
    vals = list(regularization_terms(outs, terms).values())
    if not vals:
        return torch.zeros(())
    return torch.stack(vals).sum()
