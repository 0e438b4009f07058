"""The own FGSM and PGD give the same adversarial examples as torchattacks on the same SNN."""

import pytest
import torch

from spikegrad.robust import fgsm, pgd, robust_accuracy

from robust_models import as_images, blobs, classifier, trained

torchattacks = pytest.importorskip("torchattacks")


@pytest.mark.parametrize("readout", ["max_membrane", "count"])
def test_pgd_linf_without_random_start_equals_torchattacks(readout):
    model = classifier(readout=readout).eval()
    x, y = blobs(16)
    ours = pgd(model, x, y, 0.1, steps=10, step_size=0.02, random_start=False)
    theirs = torchattacks.PGD(model, eps=0.1, alpha=0.02, steps=10, random_start=False)(x, y)
    # the same operations in the same order: equal to the last bit (a sign that flipped on
    # a rounding difference would move an element by 2 * step_size)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("readout", ["max_membrane", "count"])
def test_fgsm_equals_torchattacks(readout):
    model = classifier(readout=readout).eval()
    x, y = blobs(16)
    assert torch.equal(fgsm(model, x, y, 0.1), torchattacks.FGSM(model, eps=0.1)(x, y))


def test_pgd_l2_without_random_start_equals_torchattacks_on_images():
    # torchattacks' PGDL2 reshapes per-sample norms to [B, 1, 1, 1]: image-shaped inputs
    model = classifier(image=True).eval()
    x, y = blobs(8)
    x = as_images(x)
    ours = pgd(model, x, y, 0.5, steps=5, step_size=0.1, norm="l2", random_start=False)
    theirs = torchattacks.PGDL2(model, eps=0.5, alpha=0.1, steps=5, random_start=False)(x, y)
    # norms are summed in the same order by the same kernels: a few roundings at most
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-6)


def test_torchattacks_apgd_runs_on_the_snn_wrapper_and_respects_the_ball():
    model = trained(image=True)  # APGD, like PGDL2, takes image-shaped inputs only
    x, y = blobs(12, seed=5)
    x = as_images(x)
    atk = torchattacks.APGD(model, norm="Linf", eps=0.3, steps=5, n_restarts=1, seed=0)
    acc = robust_accuracy(model, x, y, lambda m, x, y: atk(x, y))
    adv = atk(x, y)
    assert (adv - x).abs().max() <= 0.3 + 1e-6 and ((adv >= 0) & (adv <= 1)).all()
    assert 0.0 <= acc <= 1.0
