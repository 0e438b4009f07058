"""The robust app's evaluation of one trained model: clean accuracy, PGD at every budget,
AutoAttack through torchattacks, the transfer attack from the ANN twin and the
gradient-masking checks; the encoder draws and random starts come from generators seeded
from the run's seed, so an evaluation repeats exactly."""

from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor

from ... import robust
from .config import Config, eps_list, label
from .network import code_kl, snn_classifier

__all__ = ["CHECKS", "evaluate", "autoattack", "autoattack_name", "transfer_examples"]

#: the gradient-masking checks of :func:`spikegrad.robust.masking_report`, in report order
CHECKS = ("steps", "restarts", "large_eps", "transfer", "spsa")


def _seeded(model: torch.nn.Module, seed: int) -> torch.Generator:
    """Give the model's encoder a fresh generator seeded with ``seed`` (a stochastic
    encoder's draws then repeat); returns a second generator, for the attacks."""
    snn_classifier(model).generator = torch.Generator().manual_seed(seed)
    return torch.Generator().manual_seed(seed + 1)


def autoattack_name(c: Config) -> str:
    """How the report labels the AutoAttack column."""
    if c.autoattack == "full":
        return "AutoAttack (standard: APGD-CE, APGD-T, FAB-T, Square)"
    return (f"AutoAttack, reduced: APGD-CE + APGD-T ({c.autoattack_steps} steps, 1 restart"
            + (f", EOT {c.eot}" if c.eot > 1 else "") + ")")


def autoattack(c: Config, model: torch.nn.Module, x: Tensor, y: Tensor, n_classes: int
               ) -> Tensor:
    """Adversarial inputs from torchattacks on ``model`` (eval mode) at ``c.eval_eps``: its
    ``AutoAttack`` (``autoattack=full``), or its ``APGD`` with cross-entropy followed, on the
    inputs that survive, by ``APGDT`` (targeted DLR loss, every other class as a target).
    The global torch RNG (CPU and CUDA) is left as it was: torchattacks reseeds it."""
    import torchattacks

    seed = c.seed + 7
    if c.autoattack == "full":
        atk = torchattacks.AutoAttack(model, norm="Linf", eps=c.eval_eps, version="standard",
                                      n_classes=n_classes, seed=seed)
    else:
        common = dict(norm="Linf", eps=c.eval_eps, steps=c.autoattack_steps, n_restarts=1,
                      seed=seed, eot_iter=c.eot)
        atk = torchattacks.MultiAttack([
            torchattacks.APGD(model, loss="ce", **common),
            torchattacks.APGDT(model, n_classes=n_classes, **common)])
    # APGD, APGD-T, FAB and Square call torch.manual_seed(seed) on the global RNG, so what
    # runs after the attack would draw other numbers than without it (and than a resumed
    # run that skips the cached evaluation)
    with torch.random.fork_rng():
        return atk(x, y)


def transfer_examples(c: Config, ann: torch.nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """PGD (``pgd_steps``, random start) at ``c.eval_eps`` crafted on the ANN twin: the
    transfer attack's inputs, the same for every objective."""
    g = torch.Generator().manual_seed(c.seed + 5)
    return robust.pgd(ann.eval(), x, y, c.eval_eps, steps=c.pgd_steps, generator=g)


def evaluate(c: Config, model: torch.nn.Module, ann: torch.nn.Module, x: Tensor, y: Tensor,
             x_transfer: Tensor, n_classes: int) -> Dict[str, object]:
    """Every number of one model's row, and its masking report.

    Returns ``{"clean", "pgd": {eps label: accuracy}, "autoattack" (or None), "transfer",
    "kl" (VIB models; else None), "masking": masking_report(...)}``.
    """
    model.eval()
    g = _seeded(model, c.seed + 3)
    out: Dict[str, object] = {"clean": robust.accuracy(model, x, y)}
    out["pgd"] = {label(eps): robust.robust_accuracy(model, x, y, "pgd", eps=eps,
                                                     steps=c.pgd_steps, eot=c.eot, generator=g)
                  for eps in eps_list(c)}
    out["transfer"] = robust.accuracy(model, x_transfer, y)
    out["kl"] = code_kl(model, x) if isinstance(model, robust.VIBClassifier) else None
    out["autoattack"] = None
    if c.autoattack != "off":
        n = c.autoattack_subset or len(x)
        _seeded(model, c.seed + 3)
        adv = autoattack(c, model, x[:n], y[:n], n_classes)
        out["autoattack"] = robust.accuracy(model, adv, y[:n])
    _seeded(model, c.seed + 3)
    n = min(c.mask_subset, len(x))
    out["masking"] = robust.masking_report(
        model, x[:n], y[:n], c.eval_eps, steps=(c.pgd_steps, c.mask_steps),
        restarts=(1, c.mask_restarts), source_model=ann, spsa_subset=c.spsa_subset,
        spsa_kw=dict(steps=c.spsa_steps, samples=c.spsa_samples,
                     perturbation=c.spsa_perturbation),
        generator=torch.Generator().manual_seed(c.seed + 11), eot=c.eot)
    return out


def flat(name: str, result: Dict[str, object], c: Config) -> Dict[str, float]:
    """One model's evaluation as ``metrics.json`` keys ``<name>_...``."""
    m: Dict[str, float] = {f"{name}_clean_accuracy": result["clean"],
                           f"{name}_transfer_accuracy": result["transfer"]}
    for eps, acc in result["pgd"].items():
        m[f"{name}_pgd_eps{eps}_accuracy"] = acc
    if result["autoattack"] is not None:
        m[f"{name}_autoattack_accuracy"] = result["autoattack"]
    if result["kl"] is not None:
        m[f"{name}_kl_nats"] = result["kl"]
    report = result["masking"]
    for check in CHECKS:
        ok: Optional[bool] = report[check]["pass"]
        if ok is not None:
            m[f"{name}_masking_{check}_pass"] = float(ok)
    m[f"{name}_masking_passed"] = float(report["passed"])
    m[f"{name}_masking_large_eps_accuracy"] = report["large_eps"]["accuracy"]
    m[f"{name}_masking_spsa_accuracy"] = report["spsa"]["spsa"]
    return m
