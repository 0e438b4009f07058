"""Memory a run will need, estimated from its config before anything is allocated.

A config such as ``hidden=100000000`` or ``n_steps=100000000`` must not get as far as
asking torch for 25 GB or 1.6 TB (which ends in a traceback, or in the machine swapping):
the CLI compares this estimate with the machine's memory first. The estimate counts the
largest tensors only, each from the sizes in the config:

- weights, their gradients and two Adam moments: 4 copies of every parameter;
- what training keeps for the backward pass: about ``_SAVED`` float32 tensors of
  ``[T, B, N]`` per spiking layer of ``N`` neurons (input current, membrane, surrogate
  derivative, spikes, their gradients);
- the data sets held in memory, and the encoded evaluation batch.

It is meant to be right within a small factor, which is what telling a run that fits from
one that needs a thousand times the memory takes; it is not a measurement (see
``spikegrad.train.memory.allocator_peak_mb`` for that).
"""

from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional, Tuple

__all__ = ["estimate", "machine_memory", "check", "MemoryBudgetError"]

_F32 = 4
_SAVED = 8
_ADAM_COPIES = 4

Terms = List[Tuple[str, float]]


class MemoryBudgetError(ValueError):
    """The estimated memory of a run exceeds the machine's."""


def _gb(nbytes: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9)):
        if nbytes >= size:
            return f"{nbytes / size:,.1f} {unit}"
    return f"{nbytes / 1e6:.1f} MB"


def _training(what: str, T: int, B: int, neurons: int) -> Tuple[str, float]:
    return (f"{what} kept for backward: {_SAVED} x T={T} x B={B} x {neurons} neurons",
            float(_SAVED) * T * B * neurons * _F32)


def _weights(what: str, n: float) -> Tuple[str, float]:
    return (f"{what}: {int(n)} parameters x {_ADAM_COPIES} (grads, Adam moments)",
            float(n) * _ADAM_COPIES * _F32)


def _classification(c) -> Terms:
    n_in = {"digits": 64, "mnist1d": 40, "randman": 20, "shd": 700}.get(c.dataset, 700)
    n_train = {"digits": 1347, "mnist1d": 4000, "randman": 8000, "shd": 8156}.get(c.dataset, 8156)
    n_train = min(n_train, c.max_train) if c.max_train else n_train
    H, L, T = c.hidden, c.layers, c.n_steps
    params = n_in * H + (L - 1) * H * H + (L * H * H if c.recurrent else 0) + H * 10
    terms = [_weights(f"weights ({n_in} -> {L} x hidden={H} -> 10)", params),
             _training(f"{L} hidden layer(s)", T, c.batch_size, H * L),
             (f"evaluation batch: T={T} x 500 x {H * L} neurons", float(T) * 500 * H * L * _F32)]
    if c.encoder == "spikes":
        terms.append((f"spike-train data: {n_train} x T={T} x {n_in}",
                      float(n_train) * T * n_in * _F32 * 1.25))
    return terms


def _regression(c) -> Terms:
    T, B, H = c.n_steps, c.batch_size, c.hidden
    return [_weights(f"weights ({c.n_inputs} -> hidden={H}, recurrent)",
                     c.n_inputs * H + H * H + H * c.n_outputs),
            _training("the recurrent layer", min(T, c.tbptt_k or T), B, H),
            (f"input spikes, train and test: 2 x T={T} x B={B} x n_inputs={c.n_inputs}",
             2.0 * T * B * c.n_inputs * _F32)]


def _vision(c) -> Terms:
    pixels = {"mnist1d": 40, "digits": 64, "mnist": 784, "nmnist": 2 * 34 * 34}.get(c.dataset, 784)
    n_train = {"mnist1d": 4000, "digits": 1347, "mnist": 60000}.get(c.dataset, 0)
    n_train = min(n_train, c.max_train) if c.max_train else n_train
    stride = c.stride ** (c.conv_layers - 1) if c.stride > 1 else 1
    conv = c.channels * pixels * c.conv_layers // max(stride, 1)
    params = c.channels * c.channels * c.kernel_size ** 2 * c.conv_layers
    params += c.channels * pixels * c.hidden // max(stride, 1) + c.hidden * 10
    return [_weights(f"weights (channels={c.channels}, hidden={c.hidden})", params),
            _training("conv and hidden layers", c.n_steps, c.batch_size, conv + c.hidden),
            (f"data: {n_train} x {pixels} pixels", float(n_train) * pixels * _F32)]


def _coding(c) -> Terms:
    n_in = c.randman_units if c.dataset == "randman" else 4 * c.rate_copies + 1
    n = max(c.n_train, c.randman_classes * c.randman_samples if c.dataset == "randman" else 0)
    return [_weights(f"weights ({n_in} -> hidden={c.hidden})", n_in * c.hidden + c.hidden * 10),
            _training("the hidden layer", c.n_steps, c.batch_size, c.hidden),
            (f"evaluation: T={c.n_steps} x {max(c.n_val, c.n_test)} samples x "
             f"(hidden={c.hidden} + {n_in} inputs)",
             float(c.n_steps) * max(c.n_val, c.n_test) * (c.hidden + n_in) * _F32 * 2),
            (f"data: {n} samples x T={c.n_steps} x {n_in}", float(n) * c.n_steps * n_in * _F32)]


def _constraints(c) -> Terms:
    n_in = 4 * c.rate_copies + 1
    return [_weights(f"weights ({n_in} -> hidden={c.hidden})", n_in * c.hidden),
            _training("yin-yang hidden layer", c.n_steps, 50, c.hidden),
            (f"yin-yang evaluation: T={c.n_steps} x n_eval={c.n_eval} x hidden={c.hidden}",
             float(c.n_steps) * c.n_eval * (c.hidden + n_in) * _F32 * 2),
            _training("randman hidden layer", c.rm_steps, c.rm_batch, c.rm_hidden),
            (f"randman data: rm_classes={c.rm_classes} x rm_samples={c.rm_samples} x "
             f"rm_steps={c.rm_steps} x 20 units",
             float(c.rm_classes) * c.rm_samples * c.rm_steps * 20 * _F32 * 2),
            (f"randman evaluation: rm_steps={c.rm_steps} x 500 x rm_hidden={c.rm_hidden}",
             float(c.rm_steps) * 500 * c.rm_hidden * _F32)]


def _biophysics(c) -> Terms:
    # cue accumulation: 7 cues of 150 ms plus the delay and a 150 ms recall, 40 channels
    T_cue = int((7 * 150 + c.cue_delay_ms + 150) / c.cue_dt_ms) + 1
    T_xor = 2 * 20 + c.xor_delay_steps + 20
    n_xor = c.xor_hidden * c.xor_branches
    return [_weights(f"cue weights (hidden={c.cue_hidden})", 40 * c.cue_hidden + c.cue_hidden ** 2),
            _training("cue hidden layer", T_cue, c.cue_batch, c.cue_hidden),
            (f"cue data: (cue_train={c.cue_train} + cue_test={c.cue_test}) x T={T_cue} x 40",
             float(c.cue_train + c.cue_test) * T_cue * 40 * _F32),
            _weights(f"xor weights (hidden={c.xor_hidden} x branches={c.xor_branches})",
                     n_xor * (2 + c.xor_hidden)),
            _training("xor dendrites", T_xor, c.xor_batch, n_xor * 3),
            (f"xor data: (xor_train={c.xor_train} + xor_test={c.xor_test}) x T={T_xor} x 2",
             float(c.xor_train + c.xor_test) * T_xor * 2 * _F32)]


def _bci(c) -> Terms:
    bins = c.duration_s * 1e3 / c.dt_ms
    N, H = c.n_channels, c.hidden
    window = c.window_s * 1e3 / c.dt_ms
    terms = [(f"simulated recording: {int(bins)} bins x {N} channels (a few copies)",
              4.0 * bins * N * _F32),
             _training("the recurrent layer (BPTT windows)", int(window), c.batch_size, H)]
    longest = max([float(m) for m in c.bptt_memory_minutes.replace(" ", "").split(",") if m]
                  or [0.0])
    if longest and c.data == "simulation" and c.memory_minutes.strip():
        T = int(longest * 60e3 / c.dt_ms)
        terms.append(_training(f"BPTT memory probe over {longest:g} min", T, 1, H))
        terms.append((f"its input: T={T} x {N} channels", float(T) * N * _F32))
    return terms


_ESTIMATORS: Dict[str, Callable] = {
    "classification": _classification, "regression": _regression, "vision": _vision,
    "coding": _coding, "constraints": _constraints, "biophysics": _biophysics,
    "bci": _bci,
}


def estimate(app_name: str, cfg) -> Optional[Terms]:
    """``[(what, bytes), ...]`` for a *resolved* config of ``app_name`` (``None``: no
    estimator for this app)."""
    fn = _ESTIMATORS.get(app_name)
    if fn is None:
        return None
    try:
        return fn(cfg)
    except (AttributeError, TypeError):  # a config whose keys changed: no estimate, no error
        return None


def machine_memory() -> Optional[int]:
    """Physical memory in bytes (``None`` where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check(app_name: str, cfg) -> Optional[float]:
    """Raise :class:`MemoryBudgetError` if the estimate exceeds the machine's memory; return
    the estimate in bytes (``None`` if there is none)."""
    terms = estimate(app_name, cfg)
    if not terms:
        return None
    total = sum(b for _, b in terms)
    have = machine_memory()
    if have is not None and total > have:
        what, largest = max(terms, key=lambda t: t[1])
        raise MemoryBudgetError(
            f"this run would need about {_gb(total)} of memory, but this machine has "
            f"{_gb(have)}; the largest part is {what} = {_gb(largest)}. Make those sizes "
            "smaller (--set ...), or pass --no-memory-check if you know better")
    return total
