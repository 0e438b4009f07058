"""The covering arrays that split parameter grids between the default and the full run cover
every pair of values, and the rest of the product is kept, marked slow."""

import itertools

import pytest

from cases import covering_array, pairwise_params


@pytest.mark.parametrize("factors", [
    (["a", "b", "c"], [True, False], [False, True], [0, 1]),
    ([(2, False), (0, True), (3, True)], ["x", "y", "z", "u", "v"], [False, True]),
    ([1, 2], [3]),
])
def test_every_pair_is_covered_by_fewer_cases_than_the_product(factors):
    cases = covering_array(*factors)
    for i, j in itertools.combinations(range(len(factors)), 2):
        assert {(c[i], c[j]) for c in cases} == set(itertools.product(factors[i], factors[j]))
    full = list(itertools.product(*factors))
    assert set(cases) <= set(full) and len(set(cases)) == len(cases)
    if len(factors) > 2:
        assert len(cases) < len(full)


@pytest.mark.parametrize("factors", [
    (["a", "b", "c"], [True, False], [False, True], [0, 1]),
    ([(2, False), (0, True), (3, True)], ["x", "y", "z", "u", "v"], [False, True]),
])
def test_strength_one_covers_every_value_in_as_many_cases_as_the_largest_factor(factors):
    cases = covering_array(*factors, strength=1)
    for i, f in enumerate(factors):
        assert {c[i] for c in cases} == set(f)
    assert len(cases) == max(len(f) for f in factors)


def test_the_environment_chooses_the_strength_of_the_default_run(monkeypatch):
    factors = (["a", "b", "c"], [True, False], [False, True], [0, 1])
    monkeypatch.setenv("SPIKEGRAD_COVERING", "1")
    assert sum(not p.marks for p in pairwise_params(*factors)) == 3
    monkeypatch.setenv("SPIKEGRAD_COVERING", "3")
    with pytest.raises(ValueError, match="SPIKEGRAD_COVERING"):
        pairwise_params(*factors)


def test_params_keep_the_whole_product_with_the_rest_marked_slow(monkeypatch):
    monkeypatch.delenv("SPIKEGRAD_COVERING", raising=False)
    factors = (["a", "b", "c"], [True, False], [(1, 2), (3, 4)])
    params = pairwise_params(*factors)
    assert len(params) == 12
    fast = [p.values for p in params if not p.marks]
    assert ("a", True, 1, 2) in fast or ("a", True, 3, 4) in fast
    assert all(len(p.values) == 4 for p in params)
    assert {m.name for p in params for m in p.marks} == {"slow"}
    assert len(fast) == len(covering_array(*factors))
