"""Parameter grids for the default run and the full one: :func:`pairwise_params` keeps a
covering array of the product (every pair of values of every two factors appears in some case)
in the default run and marks the rest ``slow`` (``make test-all`` runs them). For the compiled
kernels, each option combination is a separate specialisation and costs a compile, so the full
product of every option set would dominate the suite's time; a bug that needs three factors at
once to show is still caught by ``make test-all``.

``SPIKEGRAD_COVERING=1`` (the portable leg of ``make test``, which recompiles every kernel for
a generic target with bounds checks) keeps only a strength-1 array: every value of every
factor appears in some case. A portability or indexing bug shows in any option set that
reaches the code, and the native leg has already run the pairwise array."""

from __future__ import annotations

import itertools
import os
from typing import Callable, List, Optional, Sequence, Tuple

import pytest

__all__ = ["covering_array", "pairwise_params"]


def _strength() -> int:
    value = os.environ.get("SPIKEGRAD_COVERING", "2")
    if value not in ("1", "2"):
        raise ValueError(f"SPIKEGRAD_COVERING must be 1 (every value) or 2 (every pair); "
                         f"got {value!r}")
    return int(value)


def covering_array(*factors: Sequence, strength: int = 2) -> List[Tuple]:
    """A small subset of ``itertools.product(*factors)`` covering every pair of values of every
    two factors (``strength=1``: every value of every factor); greedy and deterministic (the
    first case covering the most new pairs)."""
    if strength not in (1, 2):
        raise ValueError(f"strength must be 1 or 2; got {strength!r}")
    cases = list(itertools.product(*factors))
    n = len(factors)
    groups = (list(itertools.combinations(range(n), 2)) if strength == 2 and n > 1
              else [(i,) for i in range(n)])
    need = {tuple((i, idx[i]) for i in g) for g in groups
            for idx in itertools.product(*(range(len(f)) for f in factors))}
    index = list(itertools.product(*(range(len(f)) for f in factors)))
    chosen: List[int] = []
    while need:
        def gain(k):
            idx = index[k]
            return sum(tuple((i, idx[i]) for i in g) in need for g in groups)
        best = max((k for k in range(len(cases)) if k not in chosen), key=gain)
        chosen.append(best)
        idx = index[best]
        need -= {tuple((i, idx[i]) for i in g) for g in groups}
    return [cases[k] for k in sorted(chosen)]


def pairwise_params(*factors: Sequence, ids: Optional[Callable[..., str]] = None) -> List:
    """``pytest.param`` for every case of the product, those outside :func:`covering_array`
    marked ``slow``; tuple-valued factors are flattened, so that a factor can be a list of
    option tuples; values need not be hashable (dicts of options); ``ids(*values)`` names a
    case."""
    keep = set(covering_array(*(range(len(f)) for f in factors), strength=_strength()))

    def flat(case):
        out = []
        for v in case:
            out.extend(v if isinstance(v, tuple) else (v,))
        return out
    params = []
    for idx in itertools.product(*(range(len(f)) for f in factors)):
        values = flat(f[i] for f, i in zip(factors, idx))
        marks = () if idx in keep else (pytest.mark.slow,)
        params.append(pytest.param(*values, marks=marks,
                                   id=None if ids is None else ids(*values)))
    return params
