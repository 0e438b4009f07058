"""The classification data sets and input encodings that several apps share (the
classification app's, and the vision app's analog ones), so that each app trains on the same
splits and scaling without importing another app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from .. import data as sgdata

__all__ = ["Data", "load_data", "make_encoder", "stack_dataset"]


@dataclass
class Data:
    """Train/validation/test sets with the input size (or sample shape) and class count."""

    train: TensorDataset
    val: Optional[TensorDataset]
    test: TensorDataset
    n_in: int
    n_classes: int


def load_data(c) -> Data:
    """The classification data set ``c.dataset`` (``digits``, ``mnist1d``, ``randman`` or
    ``shd``) as the apps train on it: the same splits and scaling for every app. Reads the
    config fields ``dataset``, ``seed``, ``encoder``, ``max_train`` and, for Randman and SHD,
    ``n_steps``, ``dt_ms``, ``shd_path``, ``shd_test_path``."""
    if c.dataset in ("digits", "mnist1d"):
        s = (sgdata.load_digits_split(seed=c.seed) if c.dataset == "digits"
             else sgdata.load_mnist1d())
        xtr, xte = s.x_train, s.x_test
        if c.dataset == "mnist1d" and c.encoder != "current":
            # rate/latency codes need values in [0, 1]: min-max scale with training statistics
            lo, hi = xtr.min(), xtr.max()
            xtr, xte = (xtr - lo) / (hi - lo), ((xte - lo) / (hi - lo)).clamp(0, 1)
        train, val, test = TensorDataset(xtr, s.y_train), None, TensorDataset(xte, s.y_test)
        n_in, n_classes = xtr.shape[1], int(s.y_train.max()) + 1
    elif c.dataset == "randman":
        rm = sgdata.make_randman(n_steps=c.n_steps, seed=1)
        x = sgdata.randman_raster(rm)  # [N, T, U]
        tr, va, te = sgdata.split_in_order(len(x), (0.8, 0.1, 0.1))
        train, val, test = (TensorDataset(x[i], rm.labels[i]) for i in (tr, va, te))
        n_in, n_classes = x.shape[2], int(rm.labels.max()) + 1
    else:
        train_set = sgdata.SHDDataset(c.shd_path, n_steps=c.n_steps,
                                      max_time_s=c.n_steps * c.dt_ms / 1000)
        test_set = (sgdata.SHDDataset(c.shd_test_path, n_steps=c.n_steps,
                                      max_time_s=c.n_steps * c.dt_ms / 1000)
                    if c.shd_test_path else None)
        train, val = stack_dataset(train_set), None
        test = stack_dataset(test_set) if test_set else None
        if test is None:  # no test file given: hold out the last 20% of the training file
            n = len(train)
            cut = int(0.8 * n)
            train, test = (TensorDataset(*(t[:cut] for t in train.tensors)),
                           TensorDataset(*(t[cut:] for t in train.tensors)))
        n_in, n_classes = c.n_steps and train.tensors[0].shape[2], 20
    if c.max_train:
        train = TensorDataset(*(t[: c.max_train] for t in train.tensors))
    return Data(train, val, test, n_in, n_classes)


def stack_dataset(ds) -> TensorDataset:
    """A map-style data set of ``(x, label)`` as one TensorDataset."""
    xs, ys = zip(*(ds[i] for i in range(len(ds))))
    return TensorDataset(torch.stack(xs), torch.tensor(ys))


def make_encoder(c) -> Callable[[Tensor, Optional[torch.Generator]], Tensor]:
    """``encode(x [B, ...], generator) -> xs [T, B, ...]`` for ``c.encoder`` (``spikes``,
    ``rate``, ``latency`` or ``current``) over ``c.n_steps`` steps."""
    if c.encoder == "spikes":
        return lambda x, g=None: x.transpose(0, 1)  # [B, T, F] -> [T, B, F]
    if c.encoder == "rate":
        return lambda x, g=None: sgdata.rate(x, c.n_steps, generator=g)
    if c.encoder == "latency":
        return lambda x, g=None: sgdata.latency(x, c.n_steps)
    return lambda x, g=None: x.unsqueeze(0).expand(c.n_steps, *x.shape)
