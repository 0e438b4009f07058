"""Triton kernels for the feed-forward leaky sequences of :mod:`spikegrad.kernels.leaky` (GPU).

The same two element-wise recursions as the numba loops, one neuron per lane: a program owns
a block of neurons ``[BLOCK]`` of the flattened row ``M = B * prod(features)``, keeps their
states and constants in registers and walks time (forward in order, the adjoint backward),
reading one input and writing one membrane, spike (and synaptic current) per neuron-step. A
step's row is contiguous, so every access is coalesced; nothing but the saved membrane ever
reaches memory between the forward and the backward.

Bit-identical forward states need the reference's rounding: each product and sum rounded
on its own, as the reference's separate torch ops round them. Triton fuses ``a * v + x``
into one FMA by default; the kernels are launched with ``enable_fp_fusion=False``.

Surrogates: the built-in ones are computed in the backward loop (:func:`_phi`, the formulas
of :mod:`spikegrad.surrogate`; ``beta`` is read from a tensor of the data's float type, not
passed as a Python float, which Triton would round to float32). A user's surrogate is
evaluated by its torch function over the whole sequence first and read by the loop.

Without a GPU, ``TRITON_INTERPRET=1`` (set before this module is first imported) runs the
same kernels in Triton's interpreter on CPU tensors: the tests use it to check parity
with the reference loop on machines without CUDA (slow; for testing only).
"""

from __future__ import annotations

import functools
import os
from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from . import guards
from .spec import RESET_IDS, SURROGATE_IDS, time_rows

# read when the kernels were decorated (at import), as Triton does
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"
DTYPES = (torch.float32, torch.float64)


@triton.jit
def _phi(x, beta, KIND: tl.constexpr):
    """The surrogate derivative ``KIND`` (ids of ``spec.SURROGATE_IDS``) at ``x``."""
    if KIND == 1:    # fast sigmoid
        d = 1.0 + beta * tl.abs(x)
        r = 1.0 / (d * d)
    elif KIND == 2:  # sigmoid
        s = 1.0 / (1.0 + tl.exp(-(beta * x)))
        r = beta * s * (1.0 - s)
    elif KIND == 3:  # atan
        y = (1.5707963267948966 * beta) * x
        r = (beta / 2.0) / (1.0 + y * y)
    elif KIND == 4:  # triangle
        r = beta * tl.maximum(1.0 - beta * tl.abs(x), 0.0)
    elif KIND == 5:  # gaussian
        bx = beta * x
        r = (beta * 0.3989422804014327) * tl.exp(-0.5 * (bx * bx))
    elif KIND == 6:  # exponential
        r = 0.5 * beta * tl.exp(-(beta * tl.abs(x)))
    else:            # straight through (boxcar); the branches in x's type, as beta * x is
        # (a bare scalar in tl.where would come out in float32 for float64 data)
        r = beta * tl.where(tl.abs(beta * x) < 0.5, 1.0 + 0.0 * x, 0.0 * x)
    return r


@triton.jit
def _forward_kernel(xs, v, i, a, g, a_s, th, vr, ys, u_out, i_out, T, M,
                    SPIKING: tl.constexpr, RESET: tl.constexpr, HAS_SYN: tl.constexpr,
                    SCALE: tl.constexpr, STORE_U: tl.constexpr, BLOCK: tl.constexpr):
    """``xs, ys, u_out, i_out [T, M]``; states ``v, i [M]`` in (initial) and out (final);
    constants ``a, g, a_s, th, vr [M]`` (``g``: the input scale ``1 - a`` or 1)."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    v_m = tl.load(v + offs, mask=mask, other=0.0)
    a_m = tl.load(a + offs, mask=mask, other=0.0)
    if HAS_SYN:
        i_m = tl.load(i + offs, mask=mask, other=0.0)
        as_m = tl.load(a_s + offs, mask=mask, other=0.0)
    if SCALE:
        g_m = tl.load(g + offs, mask=mask, other=0.0)
    if SPIKING:
        th_m = tl.load(th + offs, mask=mask, other=0.0)
        if RESET == 2:
            vr_m = tl.load(vr + offs, mask=mask, other=0.0)
    x_p = xs + offs
    u_p = u_out + offs
    y_p = ys + offs
    i_p = i_out + offs
    for _ in range(T):
        x = tl.load(x_p, mask=mask, other=0.0)
        if HAS_SYN:
            i_m = as_m * i_m + x
            tl.store(i_p, i_m, mask=mask)
            x = i_m
        if SCALE:
            x = g_m * x
        u = a_m * v_m + x
        if STORE_U:
            tl.store(u_p, u, mask=mask)
        if SPIKING:
            z = tl.where(u - th_m > 0, 1.0, 0.0).to(u.dtype)
            tl.store(y_p, z, mask=mask)
            if RESET == 1:
                v_m = u - z * th_m
            elif RESET == 2:
                v_m = u - z * (u - vr_m)
            else:
                v_m = u
        else:
            v_m = u
        x_p += M
        u_p += M
        y_p += M
        i_p += M
    tl.store(v + offs, v_m, mask=mask)
    if HAS_SYN:
        tl.store(i + offs, i_m, mask=mask)


@triton.jit
def _backward_kernel(gys, gy_step, u_all, th, vr, a, g, a_s, gv, gi, beta_p, phi_ext, gu_out,
                     gi_out, T, M, SPIKING: tl.constexpr, RESET: tl.constexpr,
                     DETACH: tl.constexpr, HAS_SYN: tl.constexpr, KIND: tl.constexpr,
                     BLOCK: tl.constexpr):
    """The adjoint of :func:`_forward_kernel`, time reversed (see :mod:`.leaky`)::

        gu_t = phi_t gy_t + A_t gv_t,   gv_{t-1} = a gu_t,
        gi_t = g gu_t + a_s gi_{t+1}

    ``gys [T or 1, M]`` (``gy_step``: M, or 0 for one row used by every step), ``u_all``,
    ``phi_ext`` (a user surrogate's values; KIND 0), ``gu_out``, ``gi_out [T, M]``; ``gv``,
    ``gi [M]``: the final states' adjoints in, the initial states' out."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    gv_m = tl.load(gv + offs, mask=mask, other=0.0)
    a_m = tl.load(a + offs, mask=mask, other=0.0)
    if HAS_SYN:
        gi_m = tl.load(gi + offs, mask=mask, other=0.0)
        as_m = tl.load(a_s + offs, mask=mask, other=0.0)
        g_m = tl.load(g + offs, mask=mask, other=0.0)
    if SPIKING:
        th_m = tl.load(th + offs, mask=mask, other=0.0)
        if RESET == 2:
            vr_m = tl.load(vr + offs, mask=mask, other=0.0)
        beta = tl.load(beta_p)
    last = (T - 1).to(tl.int64) * M
    u_p = u_all + last + offs
    gu_p = gu_out + last + offs
    gi_p = gi_out + last + offs
    ph_p = phi_ext + last + offs
    gy_p = gys + (T - 1).to(tl.int64) * gy_step + offs
    for _ in range(T):
        gy = tl.load(gy_p, mask=mask, other=0.0)
        if SPIKING:
            u = tl.load(u_p, mask=mask, other=0.0)
            x = u - th_m
            if KIND == 0:
                phi = tl.load(ph_p, mask=mask, other=0.0)
            else:
                phi = _phi(x, beta, KIND)
            if RESET == 2:
                A = tl.where(x > 0, 0.0, 1.0).to(u.dtype)  # to_value: dv/du = 1 - z
            else:
                A = 1.0
            if not DETACH:
                # the reset's path dv_t/dz_t = c
                if RESET == 1:
                    A = A + (-th_m) * phi
                elif RESET == 2:
                    A = A + (-(u - vr_m)) * phi
            gu = gy * phi + gv_m * A
        else:
            gu = gy + gv_m
        tl.store(gu_p, gu, mask=mask)
        gv_m = a_m * gu
        if HAS_SYN:
            gi_t = g_m * gu + gi_m
            tl.store(gi_p, gi_t, mask=mask)
            gi_m = as_m * gi_t
        u_p -= M
        gu_p -= M
        gi_p -= M
        ph_p -= M
        gy_p -= gy_step
    tl.store(gv + offs, gv_m, mask=mask)
    if HAS_SYN:
        tl.store(gi + offs, gi_m, mask=mask)


@functools.lru_cache(maxsize=None)
def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _launch(M: int, device: torch.device):
    """``(grid, BLOCK, num_warps)``: the widest block that still gives every SM two programs
    (a short row of neurons is otherwise a few programs on a 100+-SM GPU); at least one warp
    of lanes per program."""
    if device.type != "cuda":  # the interpreter: few large programs (each costs Python time)
        block = 1024
    else:
        block = 1024
        while block > 32 and triton.cdiv(M, block) < 2 * _sm_count(device):
            block //= 2
    return (triton.cdiv(M, block),), block, max(1, min(8, block // 128))


def _param_row(c, shape, dtype, device) -> Tensor:
    """A neuron constant (float, 0-dim or per-neuron tensor) broadcast to ``shape`` and
    flattened to ``[M]``, cast to the data's type first (as the reference casts it)."""
    if not isinstance(c, Tensor):
        c = torch.tensor(c, dtype=torch.float64)
    return c.detach().to(device=device, dtype=dtype).expand(shape).contiguous().reshape(-1)


def _state_row(s: Tensor, like: Tensor) -> Tensor:
    return s.detach().to(like.dtype).reshape(-1).clone()


def _check(where: str, seq: Tensor, *states) -> None:
    """The kernels read and write raw device memory by the row ``M`` of ``seq``: every state
    must be exactly one step of it, on its device (a host pointer in a CUDA kernel is not an
    error there), in a type the kernels compile for."""
    if seq.dtype not in DTYPES:
        raise guards.DtypeError(f"{where}: the Triton kernels compute in float32 or float64, "
                                f"got {seq.dtype}; use backend='torch'")
    step = seq.shape[1:]
    for name, t in states:
        if t is None:
            continue
        guards.shape_is(t, step, name, where)
        if t.device != seq.device:
            raise ValueError(f"{where}: {name} is on {t.device}, the sequence on {seq.device}")


def forward_scan(spec, xs: Tensor, v0, i0, a_mem, a_syn, theta, v_reset, store_u: bool = True):
    """``(ys, u_all, i_all, v_T, i_T)`` for ``xs [T, B, *F]``, like the torch loop;
    ``store_u=False`` (spiking, no gradient wanted): ``u_all`` is None."""
    _check("triton forward_scan", xs, ("v0", v0), ("i0", i0 if spec.has_syn else None))
    T, shape = xs.shape[0], xs.shape
    x2 = xs.detach().contiguous().reshape(T, -1)
    M = x2.shape[1]
    row = x2[0].reshape(shape[1:])
    store_u = store_u or not spec.spiking
    u_all = torch.empty_like(x2) if store_u else None
    ys = torch.empty_like(x2) if spec.spiking else u_all
    i_all = torch.empty_like(x2) if spec.has_syn else None
    par = functools.partial(_param_row, shape=row.shape, dtype=xs.dtype, device=xs.device)
    v = _state_row(v0, row)
    i = _state_row(i0, row) if spec.has_syn else v
    g = (1.0 - a_mem) if spec.scale_input else 1.0
    grid, block, warps = _launch(M, xs.device)
    _forward_kernel[grid](
        x2, v, i, par(a_mem), par(g), par(a_syn) if spec.has_syn else v,
        par(theta) if spec.spiking else v, par(v_reset) if spec.spiking else v,
        ys, u_all if store_u else ys, i_all if spec.has_syn else ys, T, M,
        SPIKING=spec.spiking, RESET=RESET_IDS[spec.reset], HAS_SYN=spec.has_syn,
        SCALE=bool(spec.scale_input), STORE_U=store_u, BLOCK=block, num_warps=warps,
        enable_fp_fusion=False)
    return (ys.reshape(shape), u_all.reshape(shape) if store_u else None,
            i_all.reshape(shape) if spec.has_syn else None, v.reshape(shape[1:]),
            i.reshape(shape[1:]) if spec.has_syn else None)


def backward_scan(spec, g_ys: Tensor, u_all: Tensor, theta, v_reset, a_mem, a_syn,
                  gv_T: Tensor, gi_T: Optional[Tensor]):
    """``(gu_all, gi_all)``: the adjoint recursion of :func:`forward_scan`."""
    _check("triton backward_scan", u_all, ("gv_T", gv_T),
           ("gi_T", gi_T if spec.has_syn else None))
    if not guards.fits(tuple(g_ys.shape), tuple(u_all.shape)):
        raise ValueError(f"triton backward_scan: the output gradient has shape "
                         f"{list(g_ys.shape)}, which does not broadcast to {list(u_all.shape)}")
    T, shape = u_all.shape[0], u_all.shape
    u2 = u_all.reshape(T, -1)
    M = u2.shape[1]
    row = u2[0].reshape(shape[1:])
    gys = time_rows(g_ys.to(u_all.dtype).expand(shape).reshape(T, -1))
    kind, phi_ext = 0, u2
    if spec.spiking:
        kind = SURROGATE_IDS.get(spec.surrogate.derivative, 0)
        if kind == 0:  # a user's surrogate: evaluate its torch function over all steps
            phi_ext = spec.surrogate.grad(u_all - theta)
            guards.surrogate_output(phi_ext, u_all.shape, spec.surrogate.name)
            phi_ext = phi_ext.to(u_all.dtype).reshape(T, -1).contiguous()
    gu_all = torch.empty_like(u2)
    gi_all = torch.empty_like(u2) if spec.has_syn else gu_all
    par = functools.partial(_param_row, shape=row.shape, dtype=u_all.dtype,
                            device=u_all.device)
    gv = _state_row(gv_T, row)
    gi = (_state_row(gi_T, row) if gi_T is not None else torch.zeros_like(gv)) \
        if spec.has_syn else gv
    g = (1.0 - a_mem) if spec.scale_input else 1.0
    beta = torch.tensor([spec.surrogate.beta if spec.spiking else 0.0], dtype=u_all.dtype,
                        device=u_all.device)
    grid, block, warps = _launch(M, u_all.device)
    _backward_kernel[grid](
        gys, M if gys.shape[0] > 1 else 0, u2, par(theta) if spec.spiking else gv,
        par(v_reset) if spec.spiking else gv, par(a_mem),
        par(g) if spec.has_syn else gv, par(a_syn) if spec.has_syn else gv, gv, gi, beta,
        phi_ext, gu_all, gi_all, T, M, SPIKING=spec.spiking, RESET=RESET_IDS[spec.reset],
        DETACH=bool(spec.detach_reset), HAS_SYN=spec.has_syn, KIND=kind, BLOCK=block,
        num_warps=warps, enable_fp_fusion=False)
    return gu_all.reshape(shape), (gi_all.reshape(shape) if spec.has_syn else None)
