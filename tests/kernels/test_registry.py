"""The backend registry: what auto picks, and what an explicit backend that cannot run a call
says (never a silent fallback)."""

import pytest
import torch

from spikegrad.kernels import registry
from spikegrad.kernels.guards import DtypeError
from spikegrad.kernels.registry import Call

NUMBA = registry.numba_available()
CPU = torch.rand(4, 2, 3)


@pytest.mark.parametrize("backend", ["reference", "auto", "torch", "numba", "triton"])
def test_reference_is_always_the_reference_loop_and_auto_a_fused_one_for_leaky(backend):
    call = Call("leaky", CPU)
    if backend == "reference":
        assert registry.choose(backend, call) == "reference"
    elif backend == "auto":
        assert registry.choose(backend, call) == ("numba" if NUMBA else "torch")
    elif backend == "triton":
        if registry.REGISTRY["triton"].supports(call) is None:
            pytest.skip("Triton runs CPU tensors here (its interpreter is on)")
        with pytest.raises((ValueError, ImportError), match="backend='triton' cannot run"):
            registry.choose(backend, call)
    elif backend == "numba" and not NUMBA:
        with pytest.raises(ImportError, match="needs numba"):
            registry.choose(backend, call)
    else:
        assert registry.choose(backend, call) == backend


def test_half_types_go_to_the_torch_loop_and_an_explicit_numba_names_it():
    call = Call("leaky", CPU.half())
    assert registry.choose("auto", call) == "torch"
    if NUMBA:
        with pytest.raises(DtypeError, match=r"float32 or float64.*backend='torch'"):
            registry.choose("numba", call)


def test_alif_with_trained_constants_runs_the_reference_loop_under_auto_only():
    call = Call("alif", CPU, trained=("threshold",))
    assert registry.choose("auto", call) == "reference"
    if NUMBA:
        assert registry.choose("auto", Call("alif", CPU)) == "numba"
        with pytest.raises(ValueError, match=r"trained neuron constants \(threshold\)"):
            registry.choose("numba", call)


@pytest.mark.parametrize("model, backend, match", [
    ("alif", "torch", "ALIF has no fused path of that kind"),
    ("step", "torch", "recurrent step function has no fused kernel"),
])
def test_models_without_a_kernel_of_that_kind_raise_before_any_input(model, backend, match):
    with pytest.raises(ValueError, match=match):
        registry.check_model(backend, model)
    with pytest.raises(ValueError, match=match):
        registry.choose(backend, Call(model, CPU))
    assert registry.choose("auto", Call("step", CPU)) == "reference"


def test_dendrites_run_fused_stages_wherever_the_leaky_kernels_run():
    assert registry.choose("auto", Call("dendrite", CPU)) == ("numba" if NUMBA else "torch")
    assert registry.choose("torch", Call("dendrite", CPU)) == "torch"


def test_an_unknown_backend_name_is_refused():
    with pytest.raises(ValueError, match="backend must be one of 'auto', 'reference'"):
        registry.choose("cuda", Call("leaky", CPU))


def test_fusable_never_raises_and_says_none_where_the_pair_runs_unfused():
    w = torch.rand(3, 5)
    xs = torch.rand(4, 2, 5)
    ok = Call("projected_lif", xs, weight=w)
    for backend in ("torch", "triton", "reference", "nonsense"):
        assert registry.fusable(backend, ok) is None
    assert registry.fusable("auto", ok) == ("numba" if NUMBA else None)
    assert registry.fusable("numba", Call("projected_lif", xs, weight=w.double())) is None
    assert registry.fusable("auto", ok._replace(trained=("v0",))) is None
