"""fit_proxy: a held-out fit of a smooth black box, reproducibility, argument checks."""

import pytest
import torch
from torch import nn

from spikegrad.proxy import ProxyFit, fit_proxy


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def smooth_scorer(x):
    """A black box of three inputs in [-1, 1]: smooth, non-linear, coupled."""
    return torch.sin(2.0 * x[:, 0]) + x[:, 1] ** 2 - 0.5 * x[:, 0] * x[:, 2]


def mlp(seed, out=1):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                         nn.Linear(32, out))


def data(n=600, seed=0):
    x = torch.rand(n, 3, generator=_gen(seed)) * 2 - 1
    return x, smooth_scorer(x)


def test_fits_a_smooth_black_box_on_held_out_data():
    x, y = data()
    fit = fit_proxy(mlp(0), x, y, epochs=40, lr=1e-2, batch_size=32, seed=1)
    assert isinstance(fit, ProxyFit)
    assert fit.val_r2 > 0.95 and fit.train_r2 > 0.95, (fit.train_r2, fit.val_r2)
    assert 0.9 < fit.calibration.slope < 1.1
    assert fit.val_pred.shape == fit.val_target.shape == (120,)
    assert torch.equal(fit.val_target, y[fit.val_index].double())
    split = torch.cat([fit.train_index, fit.val_index]).sort().values
    assert torch.equal(split, torch.arange(600))                     # disjoint, complete
    assert len(fit.train_loss) == len(fit.val_loss) == 40
    assert fit.val_loss[-1] < 0.1 * fit.val_loss[0]
    assert not fit.model.training


def test_same_seed_and_weights_give_the_same_fit():
    x, y = data(100)
    a = fit_proxy(mlp(3), x, y, epochs=3, seed=4)
    b = fit_proxy(mlp(3), x, y, epochs=3, seed=4)
    c = fit_proxy(mlp(3), x, y, epochs=3, seed=5)
    assert torch.equal(a.val_pred, b.val_pred) and a.train_loss == b.train_loss
    assert not torch.equal(a.val_index, c.val_index)


def test_flat_outputs_and_token_inputs_are_accepted():
    x, y = data(60)
    flat = nn.Sequential(mlp(0), nn.Flatten(0))                       # [B] predictions
    assert fit_proxy(flat, x, y, epochs=1, bins=4).calibration.bin_count.sum() == 12
    tokens = torch.randint(0, 10, (60, 5), generator=_gen(6))        # [N, L] token ids
    embed = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(1), nn.Linear(20, 1))
    fit = fit_proxy(embed, tokens, tokens.float().mean(1), epochs=1)
    assert fit.calibration.bin_count.tolist() == [2, 2] + [1] * 8    # 12 held out, 10 bins
    few = fit_proxy(embed, tokens[:20], tokens[:20].float().mean(1), epochs=1)
    assert few.calibration.bin_count.tolist() == [1] * 4             # bins cut to N_val = 4


@pytest.mark.parametrize("kwargs, name", [
    (dict(val_fraction=0.0), "val_fraction"),
    (dict(val_fraction=1.0), "val_fraction"),
    (dict(val_fraction=0.01), "val_fraction"),                        # rounds to 0 held out
    (dict(epochs=0), "epochs"),
    (dict(lr=-1e-3), "lr"),
    (dict(batch_size=0), "batch_size"),
    (dict(weight_decay=-0.1), "weight_decay"),
    (dict(seed=-1), "seed"),
    (dict(bins=0), "bins"),
])
def test_bad_options_raise_value_error_naming_them(kwargs, name):
    x, y = data(40)
    with pytest.raises(ValueError, match=name):
        fit_proxy(mlp(0), x, y, **kwargs)


def test_bad_data_raise_value_error_naming_it():
    x, y = data(40)
    with pytest.raises(ValueError, match="scores"):
        fit_proxy(mlp(0), x, y[:30])
    with pytest.raises(ValueError, match="scores"):
        fit_proxy(mlp(0), x, y.long())
    with pytest.raises(ValueError, match="scores"):
        fit_proxy(mlp(0), x, torch.where(y > 0, float("nan"), y))
    with pytest.raises(ValueError, match="scores are all equal"):
        fit_proxy(mlp(0), x, torch.ones(40))
    with pytest.raises(ValueError, match="inputs"):
        fit_proxy(mlp(0), x.tolist(), y)
    with pytest.raises(ValueError, match="model"):
        fit_proxy(mlp(0, out=2), x, y, epochs=1)                      # [B, 2] predictions
    with pytest.raises(TypeError, match="model"):
        fit_proxy(nn.Identity(), x, y)
