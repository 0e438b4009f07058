"""Arm A's two-part token proxy: the expected oracle score of a string from a validity
probability and an SA regressor fitted on valid molecules only, its gradient, and the fit
separating the two on a toy language whose validity and SA are known."""

import pytest
import torch
from torch import nn

pytest.importorskip("rdkit", reason="needs the molecules extra")
pytest.importorskip("torch_geometric", reason="needs the molecules extra")

from spikegrad.apps import molecules as app  # noqa: E402
from spikegrad.apps.molecules import arms  # noqa: E402
from spikegrad.apps.molecules.models import (Probability, TokenGRUProxy,  # noqa: E402
                                             ValidityWeightedProxy)


class _Fixed(nn.Module):
    """``onehot [B, L, V] -> [B]``: the count of token ``k`` times ``w`` plus ``b``."""

    def __init__(self, k: int, w: float, b: float):
        super().__init__()
        self.k, self.w, self.b = k, nn.Parameter(torch.tensor(w)), b

    def forward(self, x):
        return self.w * x[..., self.k].sum(1) + self.b


def test_the_split_proxy_is_the_expected_oracle_score_and_its_gradient():
    validity = Probability(_Fixed(3, 1.0, 0.0))     # p = sigmoid(count of token 3)
    sa = _Fixed(4, 0.5, 1.0)                        # SA = 1 + count(token 4) / 2
    model = ValidityWeightedProxy(validity, sa, invalid_sa=10.0)
    x = torch.zeros(2, 5, 6)
    x[0, :2, 3] = 1; x[0, 2:, 4] = 1                # p = sigmoid(2), SA = 2.5
    x[1, :, 4] = 1                                  # p = 1/2, SA = 3.5
    x.requires_grad_(True)
    out = model(x)
    p = torch.sigmoid(torch.tensor([2.0, 0.0]))
    want = p * torch.tensor([2.5, 3.5]) + (1 - p) * 10
    assert torch.allclose(out, want, atol=1e-6)
    out.sum().backward()
    # d out / d x[token 3] = p (1 - p) (SA - 10): making the string likelier to parse lowers
    # the score by how far its SA is below the invalid charge
    assert torch.allclose(x.grad[:, 0, 3], p * (1 - p) * (torch.tensor([2.5, 3.5]) - 10),
                          atol=1e-6)
    assert torch.allclose(x.grad[:, 0, 4], p * 0.5, atol=1e-6)
    assert arms.token_sa_net(model) is sa


def test_the_split_fit_learns_validity_and_ranks_valid_strings_where_one_regressor_does_not():
    # toy language over 6 tokens (0 <pad>, 1 <bos>, 2 <eos>, 3..5): a string containing
    # token 5 "does not parse" (SA 10); otherwise SA = 1 + (count of token 3) / 2
    g = torch.Generator().manual_seed(0)
    n, length = 1200, 10
    body = torch.randint(3, 6, (n, length), generator=g)
    body = torch.where(torch.rand(n, length, generator=g) < 0.75, body.clamp(3, 4), body)
    seqs = torch.cat([torch.ones(n, 1, dtype=torch.long), body,
                      torch.full((n, 1), 2, dtype=torch.long)], 1)
    valid = (body != 5).all(1)
    sa = torch.where(valid, 1 + (body == 3).sum(1).float() / 2, torch.tensor(10.0))
    assert 0.2 < valid.float().mean() < 0.8           # both classes well represented
    kw = dict(token_hidden=16, token_epochs=25, token_lr=3e-3, token_arch="gru")
    split, m_split = arms.fit_token_proxy(seqs, sa, 6, app.Config(token_split=True, **kw), 0)
    single, m_single = arms.fit_token_proxy(seqs, sa, 6, app.Config(token_split=False, **kw), 0)
    assert isinstance(split, ValidityWeightedProxy) and isinstance(single, TokenGRUProxy)
    assert m_split["validity_val_accuracy"] >= 0.95
    assert m_split["val_r2_valid"] >= 0.9
    # the single regressor spends its fit on the jump to 10 and ranks valid strings worse
    assert m_split["val_r2_valid"] > m_single["val_r2_valid"]
    with torch.no_grad():
        pred = split(arms.onehot(seqs, 6))
    # the expected score follows the oracle's on both kinds of string
    assert (pred[~valid] > 8).float().mean() >= 0.95
    assert (pred[valid] - sa[valid]).abs().mean() < 0.5


def test_a_validity_weight_charges_extra_sa_for_not_parsing_and_steepens_its_gradient():
    validity = Probability(_Fixed(3, 1.0, 0.0))
    model = ValidityWeightedProxy(validity, _Fixed(4, 0.5, 1.0), invalid_sa=10.0)
    x = torch.zeros(1, 5, 6)
    x[0, :2, 3] = 1; x[0, 2:, 4] = 1                # p = sigmoid(2), SA = 2.5
    x.requires_grad_(True)
    p = torch.sigmoid(torch.tensor(2.0))
    out = model(x, invalid_extra=4.0)
    assert torch.allclose(out, p * 2.5 + (1 - p) * 14.0, atol=1e-6)
    out.sum().backward()
    assert torch.allclose(x.grad[0, 0, 3], p * (1 - p) * (2.5 - 14.0), atol=1e-6)
    assert torch.allclose(model(x.detach(), invalid_extra=0.0), model(x.detach()))
