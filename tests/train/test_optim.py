import math

import pytest
import torch

from spikegrad.train import make_optimizer
from spikegrad.train.optim import OPTIMIZERS


def _params():
    return [torch.nn.Parameter(torch.zeros(3))]


@pytest.mark.parametrize(
    "name, cls",
    [
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
        ("sgd", torch.optim.SGD),
        ("rmsprop", torch.optim.RMSprop),
    ],
)
def test_builds_each_optimizer_with_lr_and_weight_decay(name, cls):
    opt = make_optimizer(name, _params(), lr=0.01, weight_decay=0.1)
    assert type(opt) is cls
    assert opt.param_groups[0]["lr"] == 0.01
    assert opt.param_groups[0]["weight_decay"] == 0.1


def test_name_is_case_insensitive_and_module_means_its_parameters():
    model = torch.nn.Linear(2, 2)
    opt = make_optimizer("AdamW", model, lr=1e-3)
    assert isinstance(opt, torch.optim.AdamW)
    assert {id(p) for p in opt.param_groups[0]["params"]} == {id(p) for p in model.parameters()}


def test_sgd_momentum_and_kwargs_pass_through():
    assert make_optimizer("sgd", _params(), lr=0.1, momentum=0.9).param_groups[0]["momentum"] == 0.9
    assert make_optimizer("adam", _params(), lr=0.1, betas=(0.8, 0.9)).param_groups[0]["betas"] == (
        0.8,
        0.9,
    )


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        make_optimizer("lion", _params(), lr=0.1)
    for name in OPTIMIZERS:
        assert name in str(info.value)


@pytest.mark.parametrize("lr", [0.0, -1e-3, math.nan, math.inf, True, "0.1"])
def test_rejects_bad_lr(lr):
    with pytest.raises(ValueError, match="lr"):
        make_optimizer("adam", _params(), lr=lr)


@pytest.mark.parametrize("wd", [-0.1, math.nan, "0"])
def test_rejects_bad_weight_decay(wd):
    with pytest.raises(ValueError, match="weight_decay"):
        make_optimizer("adam", _params(), lr=0.1, weight_decay=wd)


def test_unknown_kwarg_names_the_optimizer():
    with pytest.raises(TypeError, match="'rmsprop'"):
        make_optimizer("rmsprop", _params(), lr=0.1, nesterov=True)


def test_non_string_name():
    with pytest.raises(TypeError, match="name"):
        make_optimizer(torch.optim.SGD, _params(), lr=0.1)
