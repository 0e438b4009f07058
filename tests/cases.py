"""Parameter grids for the default run and the full one: :func:`pairwise_params` keeps a
covering array of the product (every pair of values of every two factors appears in some case)
in the default run and marks the rest ``slow`` (``make test-all`` runs them). For the compiled
kernels, each option combination is a separate specialisation and costs a compile, so the full
product of every option set would dominate the suite's time; a bug that needs three factors at
once to show is still caught by ``make test-all``."""

from __future__ import annotations

import itertools
from typing import Callable, List, Optional, Sequence, Tuple

import pytest

__all__ = ["covering_array", "pairwise_params"]


def covering_array(*factors: Sequence) -> List[Tuple]:
    """A small subset of ``itertools.product(*factors)`` covering every pair of values of every
    two factors; greedy and deterministic (the first case covering the most new pairs)."""
    cases = list(itertools.product(*factors))
    need = {(i, a, j, b) for i, j in itertools.combinations(range(len(factors)), 2)
            for a in range(len(factors[i])) for b in range(len(factors[j]))}
    index = list(itertools.product(*(range(len(f)) for f in factors)))
    chosen: List[int] = []
    while need:
        def gain(k):
            idx = index[k]
            return sum((i, idx[i], j, idx[j]) in need
                       for i, j in itertools.combinations(range(len(factors)), 2))
        best = max((k for k in range(len(cases)) if k not in chosen), key=gain)
        chosen.append(best)
        idx = index[best]
        need -= {(i, idx[i], j, idx[j]) for i, j in itertools.combinations(range(len(factors)), 2)}
    return [cases[k] for k in sorted(chosen)]


def pairwise_params(*factors: Sequence, ids: Optional[Callable[..., str]] = None) -> List:
    """``pytest.param`` for every case of the product, those outside :func:`covering_array`
    marked ``slow``; tuple-valued factors are flattened, so that a factor can be a list of
    option tuples; values need not be hashable (dicts of options); ``ids(*values)`` names a
    case."""
    keep = set(covering_array(*(range(len(f)) for f in factors)))

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
