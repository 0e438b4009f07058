"""Gradient-masking checks (Athalye et al. 2018; Carlini et al. 2019, "On evaluating
adversarial robustness", section 4 checklist), reported with every robustness evaluation.

Spiking networks are notorious for gradient masking (Sharmin et al. 2020): spike counts are
piecewise constant, and an attack that follows the surrogate gradient may stall although
adversarial examples exist. Each check below runs a stronger or a gradient-free attack and
asks whether it finds what the white-box PGD missed:

* ``steps`` / ``restarts``: more PGD steps (the weaker PGD continued from the same random
  start with the same step) and more random restarts must not raise accuracy: accuracy that
  rises along a gradient-ascent path is the mark of a misleading gradient. PGD returns its
  last iterate, which near the decision boundary can step back across it, so on a sound
  model a few samples flip each way; the check is a paired one-sided sign test on the flips
  (samples the stronger attack no longer fools against samples it newly fools) and fails
  when the net gain in accuracy is significant at level ``alpha``;
* ``large_eps``: with eps = 1 the attacker may replace the input entirely, so accuracy must
  fall to chance;
* ``transfer``: a black-box transfer attack from a twin must not beat white-box PGD;
* ``spsa``: a finite-difference attack (no surrogate) must not beat white-box PGD by much.

Each check is a dict of its numbers and ``"pass"`` (``None`` where it could not run).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ._common import (check_clamp, check_count, check_eps, check_inputs, check_labels,
                      eval_mode, predict)
from .attacks import accuracy, pgd
from .spsa import spsa
from .transfer import transfer

__all__ = ["masking_report"]


def _pair(value, name: str) -> Tuple[int, int]:
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise ValueError(f"{name} must be a pair (weaker, stronger) of ints, got {value!r}")
    weak, strong = (check_count(v, name, "a pair (weaker, stronger)") for v in value)
    if not weak < strong:
        raise ValueError(f"{name} must be a pair (weaker, stronger) with weaker < stronger, "
                         f"got {value!r}")
    return weak, strong


def _not_above(stronger: float, weaker: float, tolerance: float) -> bool:
    return stronger <= weaker + tolerance + 1e-12  # 1e-12: fractions of whole samples


def _sign_test(correct_weak: Tensor, correct_strong: Tensor, alpha: float) -> dict:
    """One-sided exact sign test (McNemar) that the stronger attack leaves more samples
    correct than the weaker one: under "no masking" a sample that flips is as likely to flip
    either way, so ``gained ~ Binomial(gained + lost, 1/2)``."""
    gained = int((correct_strong & ~correct_weak).sum())
    lost = int((correct_weak & ~correct_strong).sum())
    n = gained + lost
    p_value = sum(math.comb(n, k) for k in range(gained, n + 1)) / 2 ** n
    n_all = len(correct_weak)  # exact fractions of whole samples, as accuracy() gives
    return {"accuracy": [int(correct_weak.sum()) / n_all, int(correct_strong.sum()) / n_all],
            "gained": gained, "lost": lost, "p_value": p_value, "alpha": alpha,
            "pass": p_value >= alpha}


def _rng_state(generator: Optional[torch.Generator]) -> Tensor:
    return torch.get_rng_state() if generator is None else generator.get_state()


def _set_rng_state(generator: Optional[torch.Generator], state: Tensor) -> None:
    if generator is None:
        torch.set_rng_state(state)
    else:
        generator.set_state(state)


def _steps_and_restarts(model, x, y, eps, steps, restarts, alpha, pgd_kw
                        ) -> Tuple[dict, dict, Tensor]:
    """The steps and restarts checks: PGD with (steps[0], restarts[0]), (steps[1],
    restarts[0]) and (steps[1], restarts[1]); also returns the strongest run's adversarial
    inputs.

    All three take the weaker run's step (``2.5 eps / steps[0]`` unless ``step_size`` is
    given), and the first two start from the same random points: the longer run is the
    shorter one continued, so the steps check compares one ascent path at two lengths instead
    of two paths from different random starts. The restarts draw fresh starts."""
    kw = dict(pgd_kw)
    step_size = kw.pop("step_size", None)
    step_size = 2.5 * eps / steps[0] if step_size is None else step_size
    generator = kw.pop("generator", None)

    def attack(n_steps: int, n_restarts: int) -> Tuple[Tensor, Tensor]:
        adv = pgd(model, x, y, eps, steps=n_steps, restarts=n_restarts, random_start=True,
                  step_size=step_size, generator=generator, **kw)
        return predict(model, adv).argmax(1) == y, adv

    start = _rng_state(generator)
    c_weak, _ = attack(steps[0], restarts[0])
    _set_rng_state(generator, start)  # the same random starts for the longer run
    c_strong, _ = attack(steps[1], restarts[0])
    c_restarts, adv = attack(steps[1], restarts[1])
    step_check = {"steps": list(steps), "step_size": step_size,
                  **_sign_test(c_weak, c_strong, alpha)}
    restart_check = {"restarts": list(restarts), "steps": steps[1], "step_size": step_size,
                     **_sign_test(c_strong, c_restarts, alpha)}
    return step_check, restart_check, adv


def _large_eps(model, x, y, clamp, steps: int, chance: float, margin: float,
               pgd_kw) -> dict:
    # the whole valid range: the attacker may replace the input entirely
    eps = 1.0 if clamp is None else clamp[1] - clamp[0]
    adv = pgd(model, x, y, eps, steps=steps, random_start=True, **pgd_kw)
    acc = accuracy(model, adv, y)
    return {"eps": eps, "steps": steps, "accuracy": acc, "chance": chance, "margin": margin,
            "pass": acc <= chance + margin + 1e-12}


def _transfer(model, source_model, x, y, eps, white_box: float, steps: int, tol: float,
              pgd_kw) -> dict:
    if source_model is None:
        return {"pass": None, "reason": "no source_model given (pass an ANN twin trained on "
                                        "the same data)"}
    result = transfer(source_model, model, x, y, eps, attack="pgd", steps=steps, **pgd_kw)
    return {"white_box": white_box, "transfer": result.target_accuracy,
            "source_accuracy": result.source_accuracy, "tolerance": tol,
            "pass": _not_above(white_box, result.target_accuracy, tol)}


def _spsa(model, x, y, eps, adv_pgd, subset: int, tolerance: float, spsa_kw) -> dict:
    k = min(subset, x.shape[0])
    xs, ys = x[:k], y[:k]
    white_box = accuracy(model, adv_pgd[:k], ys)
    adv = spsa(model, xs, ys, eps, **spsa_kw)
    acc = accuracy(model, adv, ys)
    tol = tolerance + 1.0 / k
    # masking shows as SPSA (no surrogate) finding far more adversarial examples than PGD
    return {"n": k, "pgd": white_box, "spsa": acc, "tolerance": tol,
            "pass": acc >= white_box - tol - 1e-12}


def _own_pgd_options(pgd_kw: dict) -> dict:
    for key in ("steps", "restarts", "random_start", "eps", "generator"):
        if key in pgd_kw:
            raise ValueError(f"masking_report sets {key} itself; remove {key}= from the "
                             "arguments passed on to pgd")
    return pgd_kw


def masking_report(model: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, eps: float, *,
                   steps: Sequence[int] = (10, 50), restarts: Sequence[int] = (1, 5),
                   source_model: Optional[Callable[[Tensor], Tensor]] = None,
                   spsa_subset: int = 32, spsa_kw: Optional[Dict[str, Any]] = None,
                   tolerance: int = 1, alpha: float = 0.01, chance_margin: float = 0.1,
                   spsa_tolerance: float = 0.05, generator: Optional[torch.Generator] = None,
                   **pgd_kw) -> Dict[str, Any]:
    """Run every gradient-masking check on ``model`` at budget ``eps``.

    Args:
        model: classifier ``x [B, ...] -> logits [B, C]`` (e.g. an :class:`SNNClassifier`).
        x, y: clean inputs ``[B, ...]`` in [0, 1] and labels ``[B]``.
        eps: L-inf (or ``norm="l2"``) budget in input units.
        steps: PGD steps (weaker, stronger), e.g. (10, 50); both runs start from the same
            random points and take the weaker run's step (``2.5 eps / steps[0]``, or
            ``step_size`` from ``pgd_kw``), so the stronger is the weaker continued.
        restarts: restarts (weaker, stronger) at the stronger step count and the same step,
            e.g. (1, 5).
        source_model: a twin for the transfer check (None: that check is skipped).
        spsa_subset: the first ``spsa_subset`` samples are attacked by SPSA.
        spsa_kw: arguments of :func:`spikegrad.robust.spsa` (``steps``, ``samples``, ``lr``,
            ``perturbation``); the report's ``generator`` unless given.
        tolerance: slack of the transfer check, in samples.
        alpha: significance level of the steps and restarts checks' sign tests (a check
            fails when the stronger attack's net gain in correct samples has a one-sided
            p-value below ``alpha``).
        chance_margin: accuracy allowed above chance (``1 / C``) at eps = 1.
        spsa_tolerance: accuracy SPSA may find below PGD (fraction, plus one sample).
        generator: ``torch.Generator`` for the random starts and SPSA directions.
        **pgd_kw: passed to every :func:`spikegrad.robust.pgd` (``norm``, ``eot``, ...).

    Returns:
        ``{"n", "eps", "clean_accuracy", "chance", "steps", "restarts", "large_eps",
        "transfer", "spsa", "passed"}``; each check is a dict of its accuracies, its tolerance
        and ``"pass"``; ``"passed"`` is True when no check failed (a skipped check has
        ``"pass": None``). The white-box accuracy is that of the strongest PGD.
    """
    eps = check_eps(eps)
    clamp = check_clamp(pgd_kw.get("clamp", (0, 1)))
    x, y = check_inputs(x, clamp), check_labels(y, x.shape[0])
    steps, restarts = _pair(steps, "steps"), _pair(restarts, "restarts")
    spsa_subset = check_count(spsa_subset, "spsa_subset", "samples attacked by SPSA")
    tol = check_count(tolerance, "tolerance", "in samples", minimum=0) / x.shape[0]
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ValueError(f"alpha must be a significance level in (0, 1), e.g. 0.01; "
                         f"got {alpha!r}")
    chance_margin = check_eps(chance_margin, "chance_margin")
    spsa_tolerance = check_eps(spsa_tolerance, "spsa_tolerance")
    pgd_kw = {**_own_pgd_options(pgd_kw), "generator": generator}
    spsa_kw = {"generator": generator, "clamp": clamp, **(spsa_kw or {})}
    with eval_mode(model):
        chance = 1.0 / predict(model, x[:1]).shape[1]
        step_check, restart_check, adv = _steps_and_restarts(model, x, y, eps, steps,
                                                             restarts, alpha, pgd_kw)
        white_box = restart_check["accuracy"][1]
        report = {"n": x.shape[0], "eps": eps, "clean_accuracy": accuracy(model, x, y),
                  "chance": chance, "steps": step_check, "restarts": restart_check,
                  "large_eps": _large_eps(model, x, y, clamp, steps[0], chance, chance_margin,
                                          pgd_kw),
                  "transfer": _transfer(model, source_model, x, y, eps, white_box, steps[1],
                                        tol, pgd_kw),
                  "spsa": _spsa(model, x, y, eps, adv, spsa_subset, spsa_tolerance, spsa_kw)}
    checks = ("steps", "restarts", "large_eps", "transfer", "spsa")
    report["passed"] = all(report[c]["pass"] is not False for c in checks)
    return report
