"""Update schemes: turn a desired rank-1 update into pulse counts per cross-point.

The desired update of a step is the (batch-summed) outer product of the three-factor rule,
``dW = -lr * sum_b d_b x_b^T`` with ``d = e * phi(u)`` per output row and ``x`` per input column
(:meth:`spikegrad.learning.Factors.outer` is ``sum_b d_b x_b^T``). A scheme returns integer
counts ``(n_up, n_down)`` ``[out, in]`` for :func:`spikegrad.hardware.pulse.pulse`; ``dw_min``
is the controller's nominal pulse size (``device.granularity``), in weight units.

* :func:`naive_pulses`: round each step's ``dW`` to whole pulses. Updates smaller than half a
  pulse are lost, every time (the known failure of low-precision devices).
* :func:`stochastic_pulses`: aihwkit's stochastic-compressed pulsed update (Gokmen & Vlasov,
  "Acceleration of deep neural network training with resistive cross-point devices", Front.
  Neurosci. 2016): the update is ``lr x d`` in expectation, see :func:`stochastic_moments`.
* :func:`mixed_precision_pulses`: a digital accumulator ``chi`` (Nandakumar et al., "Mixed-
  precision deep learning based on computational memory", Front. Neurosci. 2020 / arXiv 2018;
  Demirag et al., ISCAS 2021) writes whole pulses and keeps the remainder.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .._validate import check_int, check_real, check_tensor

__all__ = ["UPDATE_SCHEMES", "naive_pulses", "mixed_precision_pulses", "pulse_probabilities",
           "stochastic_pulses", "stochastic_moments"]

UPDATE_SCHEMES = ("naive", "stochastic", "mixed_precision")


def _split(n: Tensor) -> Tuple[Tensor, Tensor]:
    n = n.long()
    return n.clamp(min=0), (-n).clamp(min=0)


def naive_pulses(dw: Tensor, dw_min: float) -> Tuple[Tensor, Tensor]:
    """``n = round(dw / dw_min)`` pulses per device (ties to even): ``(n_up, n_down)``."""
    check_tensor(dw, "dw")
    check_real(dw_min, "dw_min", low=0.0, low_open=True)
    return _split(torch.round(dw / dw_min))


def mixed_precision_pulses(chi: Tensor, dw_min: float) -> Tuple[Tensor, Tensor, Tensor]:
    """Whole pulses out of the digital accumulator ``chi`` (already holding this step's
    desired update): ``n = sign(chi) floor(|chi| / dw_min)`` (non-zero only where
    ``|chi| >= dw_min``) and the residual ``chi - n dw_min``.

    Returns ``(n_up, n_down, residual)``. ``n dw_min + residual == chi`` holds exactly in
    floating point: ``n dw_min`` and ``chi`` are within a factor 2 of each other wherever
    ``n != 0``, so the subtraction is exact (Sterbenz's lemma), and ``residual == chi`` where
    ``n == 0``.
    """
    check_tensor(chi, "chi")
    check_real(dw_min, "dw_min", low=0.0, low_open=True)
    n = torch.sign(chi) * torch.floor(chi.abs() / dw_min)
    written = n * dw_min
    # floor(|chi|/dw_min) rounded up at a tie can write more than chi holds: one pulse less
    over = written.abs() > chi.abs()
    n = torch.where(over, n - torch.sign(chi), n)
    residual = chi - n * dw_min
    n_up, n_down = _split(n)
    return n_up, n_down, residual


def _check_factors(x: Tensor, d: Tensor) -> None:
    check_tensor(x, "x")
    check_tensor(d, "d")
    if x.dim() != 2 or d.dim() != 2 or x.shape[0] != d.shape[0]:
        raise ValueError(f"x must be [B, in] and d [B, out] with the same batch B, got "
                         f"{list(x.shape)} and {list(d.shape)}; flatten time and batch with "
                         "x.reshape(-1, in)")


def pulse_probabilities(x: Tensor, d: Tensor, lr: float, dw_min: float, *, bl: int = 31,
                        update_management: bool = True, bl_management: bool = True
                        ) -> Tuple[Tensor, Tensor, Tensor]:
    """Per-sample bit-stream probabilities of the stochastic pulsed update.

    With ``C_b = lr / (dw_min BL_b)`` the row (input) and column (error) probabilities are
    ``p_bj = min(1, A_b |x_bj|)`` and ``q_bi = min(1, B_b |d_bi|)`` with ``A_b B_b = C_b``:

    * ``update_management`` (aihwkit's default): ``A_b = sqrt(C_b m_d / m_x)``,
      ``B_b = sqrt(C_b m_x / m_d)`` (``m_x = max|x_b|``, ``m_d = max|d_b|``), which balances the
      two streams' largest probabilities; otherwise ``A_b = B_b = sqrt(C_b)``.
    * ``bl_management`` (aihwkit's ``update_bl_management``): the stream length is
      ``BL_b = min(bl, max(1, ceil(lr m_x m_d / dw_min)))``, the fewest bits that keep all
      probabilities <= 1; otherwise ``BL_b = bl``.

    When ``lr m_x m_d / dw_min > bl`` a probability exceeds 1 and is clipped: the update is then
    smaller than ``lr x d`` (raise ``bl`` or lower ``lr``).

    Returns ``(p [B, in], q [B, out], BL [B] long)``.
    """
    _check_factors(x, d)
    check_real(lr, "lr", low=0.0, low_open=True)
    check_real(dw_min, "dw_min", low=0.0, low_open=True)
    check_int(bl, "bl", minimum=1, hint="the bit-stream length BL")
    m_x, m_d = x.abs().amax(dim=1), d.abs().amax(dim=1)                  # [B]
    if bl_management:
        need = torch.ceil(lr * m_x * m_d / dw_min)
        length = need.clamp(1, bl).long()
    else:
        length = torch.full_like(m_x, bl).long()
    c = lr / (dw_min * length.to(x.dtype))
    active = (m_x > 0) & (m_d > 0)
    if update_management:
        a = torch.sqrt(c * m_d / torch.where(active, m_x, 1.0))
        b = torch.sqrt(c * m_x / torch.where(active, m_d, 1.0))
    else:
        a = b = torch.sqrt(c)
    a, b = torch.where(active, a, 0.0), torch.where(active, b, 0.0)
    p = (a[:, None] * x.abs()).clamp(max=1.0)
    q = (b[:, None] * d.abs()).clamp(max=1.0)
    return p, q, length


def stochastic_pulses(x: Tensor, d: Tensor, lr: float, dw_min: float, *, bl: int = 31,
                      update_management: bool = True, bl_management: bool = True,
                      generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
    """Pulse counts of the stochastic-compressed update for ``dW = -lr sum_b d_b x_b^T``.

    Each sample ``b`` drives every input row ``j`` with a stream of ``BL_b`` random bits that
    are 1 with probability ``p_bj`` and every output column ``i`` with bits of probability
    ``q_bi`` (:func:`pulse_probabilities`); each coincidence of a row and a column bit fires
    one pulse at ``ij`` in the direction ``-sign(d_bi x_bj)``. The count of one sample at ``ij``
    is ``Binomial(BL_b, p_bj q_bi)``; samples are independent.

    Args:
        x: ``[B, in]`` presynaptic factors; d: ``[B, out]`` errors (``e * phi(u)``).
        lr, dw_min, bl, update_management, bl_management: see :func:`pulse_probabilities`.
        generator: for the bit streams.

    Returns:
        ``(n_up, n_down)``, long ``[out, in]``, summed over the batch.
    """
    p, q, length = pulse_probabilities(x, d, lr, dw_min, bl=bl,
                                       update_management=update_management,
                                       bl_management=bl_management)
    n_bits = int(length.max()) if length.numel() else 0
    B = x.shape[0]
    live = torch.arange(n_bits)[None, :] < length[:, None]               # [B, L]

    def streams(prob: Tensor, factor: Tensor):
        u = torch.rand((B, n_bits, prob.shape[1]), generator=generator, dtype=torch.float64)
        bits = (u < prob[:, None, :].double()) & live[:, :, None]        # [B, L, n]
        pos = (bits & (factor > 0)[:, None, :]).flatten(0, 1).double()  # [B*L, n]
        neg = (bits & (factor < 0)[:, None, :]).flatten(0, 1).double()
        return pos, neg

    x_pos, x_neg = streams(p, x)
    d_pos, d_neg = streams(q, d)
    # dW = -lr d x^T: up where d and x have opposite signs (sums of 0/1 are exact in float64)
    n_up = d_neg.t() @ x_pos + d_pos.t() @ x_neg                          # [out, in]
    n_down = d_pos.t() @ x_pos + d_neg.t() @ x_neg
    return n_up.round().long(), n_down.round().long()


def stochastic_moments(x: Tensor, d: Tensor, lr: float, dw_min: float, *, bl: int = 31,
                       update_management: bool = True, bl_management: bool = True
                       ) -> Tuple[Tensor, Tensor]:
    """Mean and variance ``[out, in]`` of the net update ``dw_min (n_up - n_down)`` of
    :func:`stochastic_pulses` on a constant-step device without noise, away from its bounds::

        mean = -dw_min sum_b sign(d_bi x_bj) BL_b p_bj q_bi      (= -lr sum_b d_bi x_bj when
                                                                  no probability is clipped)
        var  =  dw_min^2 sum_b BL_b p_bj q_bi (1 - p_bj q_bi)
    """
    p, q, length = pulse_probabilities(x, d, lr, dw_min, bl=bl,
                                       update_management=update_management,
                                       bl_management=bl_management)
    rate = q[:, :, None] * p[:, None, :]                                  # [B, out, in]
    sign = torch.sign(d)[:, :, None] * torch.sign(x)[:, None, :]
    n = length.to(x.dtype)[:, None, None]
    mean = -dw_min * (sign * n * rate).sum(0)
    var = dw_min ** 2 * (n * rate * (1 - rate)).sum(0)
    return mean, var
