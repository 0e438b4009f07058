"""The robust app's tables and figures: the one robustness table, the gradient-masking checks
with pass/fail, the information plane, the issue's floors as this run meets them; robust
accuracy against eps, the information plane, and adversarial examples with their spike
rasters."""

from __future__ import annotations

from typing import Dict, List, Optional

import torch

from ... import robust
from ..report import RunDir, Table
from .config import Config, eps_list, label
from .evaluate import CHECKS, autoattack_name
from .network import snn_classifier

__all__ = ["tables", "figures", "floors", "TITLES"]

TITLES = {"standard": "standard", "pgd_at": "PGD-AT", "trades": "TRADES", "vib": "VIB",
          "robust_ib": "robust IB"}
ROBUST = ("pgd_at", "trades", "robust_ib")


def _mark(ok: Optional[bool]) -> str:
    return "skipped" if ok is None else ("PASS" if ok else "FAIL")


def _checks_passed(report: dict) -> str:
    run = [report[k]["pass"] for k in CHECKS if report[k]["pass"] is not None]
    return f"{sum(run)}/{len(run)} {_mark(all(run))}"


def _title(c: Config, name: str) -> str:
    extra = {"vib": f" (beta {c.vib_beta:g})",
             "robust_ib": f" (beta {c.rib_beta:g}, lambda {c.rib_lambda:g})",
             "trades": f" (beta {c.trades_beta:g})"}
    return TITLES[name] + extra.get(name, "")


def floors(c: Config, plan: List[str], results: Dict[str, dict]) -> List[list]:
    """The floors of issue 21 that this run's objectives can be held to: ``[floor, value,
    pass]`` rows."""
    rows = []
    ev = label(c.eval_eps)
    for name in plan:
        clean = results[name]["clean"]
        rows.append([f"{TITLES[name]}: clean >= 0.95", clean, _mark(clean >= 0.95)])
    for name in (n for n in ROBUST if n in plan):
        acc = results[name]["pgd"][ev]
        rows.append([f"{TITLES[name]}: PGD-{c.pgd_steps} at eps {c.eval_eps:g} >= 0.80", acc,
                     _mark(acc >= 0.80)])
    if {"robust_ib", "trades"} <= set(plan) and c.autoattack != "off":
        a, b = results["robust_ib"]["autoattack"], results["trades"]["autoattack"]
        rows.append(["robust IB >= TRADES under AutoAttack (difference)", a - b,
                     _mark(a >= b)])
    if {"vib", "standard"} <= set(plan):
        cost = results["standard"]["clean"] - results["vib"]["clean"]
        rows.append([f"VIB (beta {c.vib_beta:g}) costs <= 1 point clean (standard - VIB)",
                     cost, _mark(cost <= 0.01 + 1e-12)])
    for name in plan:
        rows.append([f"{TITLES[name]}: every masking check passes",
                     _checks_passed(results[name]["masking"]),
                     _mark(results[name]["masking"]["passed"])])
    return rows


def tables(c: Config, plan: List[str], results: Dict[str, dict],
           plane: Dict[float, Dict[str, float]], metrics: Dict[str, float]) -> List[Table]:
    epss = eps_list(c)
    ev = f"eps {c.eval_eps:g}"
    aa_n = c.autoattack_subset
    columns = (["objective", "clean"] + [f"PGD-{c.pgd_steps} eps {e:g}" for e in epss]
               + ([f"AutoAttack {ev}"] if c.autoattack != "off" else [])
               + [f"transfer {ev}", "I(X;Z) (nats)", "masking checks"])
    rows = []
    for name in plan:
        r = results[name]
        rows.append([_title(c, name), r["clean"]] + [r["pgd"][label(e)] for e in epss]
                    + ([r["autoattack"]] if c.autoattack != "off" else [])
                    + [r["transfer"], r["kl"], _checks_passed(r["masking"])])
    note = (f"Test accuracy (digits, {c.encoder} input, T = {c.n_steps}) clean and under L-inf "
            f"attacks with budget eps (inputs in [0, 1]). PGD: {c.pgd_steps} steps of "
            f"2.5 eps / {c.pgd_steps}, random start"
            + (f", gradients averaged over {c.eot} encoder samples (EOT)" if c.eot > 1 else "")
            + ". " + (f"{autoattack_name(c)} from torchattacks on the "
                      f"{'first ' + str(aa_n) if aa_n else 'whole'} test set"
                      + (" (not the full AutoAttack: FAB-T and Square are left out; "
                         "`--set autoattack=full` runs it)" if c.autoattack == "apgd" else "")
                      + ". " if c.autoattack != "off" else "")
            + f"Transfer: PGD-{c.pgd_steps} crafted on the ANN twin (clean "
            f"{metrics['ann_clean_accuracy']:.4f}, {metrics['ann_transfer_source_accuracy']:.4f}"
            f" on its own adversarial inputs) and scored on each SNN. I(X;Z): test-set mean of "
            f"KL(q(z|x) || r(z)), an upper bound, for the variational models.")
    out = [Table("Robustness", columns, rows, note), _masking_table(c, plan, results)]
    if plane:
        out.append(_plane_table(c, plan, results, plane))
    out.append(Table("Floors of issue 21 in this run", ["floor", "value", "result"],
                     floors(c, plan, results),
                     "The issue's floors are for the median of three seeds; this is one seed."))
    return out


def _flips(check: dict) -> str:
    a = check["accuracy"]
    return (f"{a[0]:.3f} -> {a[1]:.3f} (+{check['gained']}/-{check['lost']}, "
            f"p {check['p_value']:.2g}) {_mark(check['pass'])}")


def _masking_table(c: Config, plan: List[str], results: Dict[str, dict]) -> Table:
    rows = []
    for name in plan:
        m = results[name]["masking"]
        s, r, big, tr, sp = (m[k] for k in CHECKS)
        rows.append([
            TITLES[name],
            _flips(s), _flips(r),
            f"{big['accuracy']:.3f} {_mark(big['pass'])}",
            ("" if tr["pass"] is None else
             f"{tr['white_box']:.3f} vs {tr['transfer']:.3f} {_mark(tr['pass'])}"),
            f"{sp['pgd']:.3f} vs {sp['spsa']:.3f} {_mark(sp['pass'])}",
            _mark(m["passed"])])
    first = results[plan[0]]["masking"]
    step = first["steps"]["step_size"]
    note = (f"On the first {first['n']} test samples at eps {c.eval_eps:g}. More steps: "
            f"PGD-{c.pgd_steps} continued to {c.mask_steps} steps (same random start, same "
            f"step {step:.4g}) must not raise accuracy; more restarts: 1 -> {c.mask_restarts} "
            f"restarts of that PGD-{c.mask_steps}, the same. Both are paired sign tests: "
            f"+gained/-lost counts the samples the stronger attack no longer fools / newly "
            f"fools, and the check fails when the gain has a one-sided p-value below "
            f"{first['steps']['alpha']:g} (PGD's last iterate can step back across the "
            f"boundary, so a few flips each way are expected on a sound model); eps = 1: "
            f"PGD-{c.pgd_steps} may replace the input, accuracy must fall to at most chance "
            f"({first['chance']:.2f}) + 0.1; white-box vs transfer: the strongest PGD must be "
            f"at least as strong as PGD-{c.mask_steps} crafted on the ANN twin; PGD vs SPSA: "
            f"on the first {first['spsa']['n']}, the gradient-free SPSA ({c.spsa_steps} steps, "
            f"{c.spsa_samples} directions, half-width {c.spsa_perturbation:g}) must not find "
            f"more than 5 points (and one sample) below the surrogate-gradient PGD.")
    return Table("Gradient-masking checks", [
        "objective", f"more steps ({c.pgd_steps} -> {c.mask_steps})",
        f"more restarts (1 -> {c.mask_restarts})", "eps = 1", "white-box vs transfer",
        "PGD vs SPSA", "all"], rows, note)


def _plane_table(c: Config, plan, results, plane) -> Table:
    ev = label(c.eval_eps)
    rows = [[f"VIB beta {b:g}", p["kl_nats"], p["clean_accuracy"], p["pgd_accuracy"]]
            for b, p in sorted(plane.items())]
    if "robust_ib" in plan:
        r = results["robust_ib"]
        rows.append([_title(c, "robust_ib"), r["kl"], r["clean"], r["pgd"][ev]])
    return Table("Information plane", ["model", "I(X;Z) estimate (nats)", "clean accuracy",
                                       f"PGD-{c.pgd_steps} eps {c.eval_eps:g}"], rows,
                 f"One VIB network per beta, {c.ib_epochs} epochs; I(X;Z) is the test-set mean "
                 "of KL(q(z|x) || r(z)) (an upper bound).")


def figures(c: Config, models: Dict[str, torch.nn.Module], results: Dict[str, dict],
            plane: Dict[float, Dict[str, float]], data, rd: RunDir) -> List[str]:
    from ... import viz
    plt = viz.pyplot()
    names = [_accuracy_vs_eps(c, results, rd, plt)]
    if plane:
        names.append(_plane(c, results, plane, rd, plt))
    if c.examples:
        names.append(_examples(c, models, data, rd, plt))
    return names


def _accuracy_vs_eps(c: Config, results, rd: RunDir, plt) -> str:
    epss = [0.0] + eps_list(c)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in results.items():
        line, = ax.plot(epss, [r["clean"]] + [r["pgd"][label(e)] for e in epss[1:]],
                        marker="o", label=TITLES[name])
        if r["autoattack"] is not None:
            ax.plot([c.eval_eps], [r["autoattack"]], marker="x", ms=9, ls="",
                    color=line.get_color())
    ax.plot([], [], marker="x", ls="", color="gray", label="AutoAttack")
    ax.set_xlabel("L-inf budget eps (inputs in [0, 1])")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"robust accuracy against eps (PGD-{c.pgd_steps})")
    ax.legend(fontsize=8)
    return rd.save_figure(fig, "accuracy_vs_eps.png")


def _plane(c: Config, results, plane, rd: RunDir, plt) -> str:
    fig, ax = plt.subplots(figsize=(6, 4))
    betas = sorted(plane)
    kl = [plane[b]["kl_nats"] for b in betas]
    ax.plot(kl, [plane[b]["clean_accuracy"] for b in betas], marker="o", label="VIB, clean")
    ax.plot(kl, [plane[b]["pgd_accuracy"] for b in betas], marker="v",
            label=f"VIB, PGD eps {c.eval_eps:g}")
    for b, k in zip(betas, kl):
        ax.annotate(f"beta {b:g}", (k, plane[b]["clean_accuracy"]), fontsize=7,
                    textcoords="offset points", xytext=(3, 4))
    if "robust_ib" in results:
        r = results["robust_ib"]
        ax.plot([r["kl"]], [r["clean"]], marker="*", ms=12, ls="", label="robust IB, clean")
        ax.plot([r["kl"]], [r["pgd"][label(c.eval_eps)]], marker="*", ms=12, ls="",
                label=f"robust IB, PGD eps {c.eval_eps:g}")
    ax.set_xscale("log")
    ax.set_xlabel("I(X;Z) estimate: KL(q(z|x) || r(z)) (nats)")
    ax.set_ylabel("test accuracy")
    ax.set_title("information plane")
    ax.legend(fontsize=7)
    return rd.save_figure(fig, "information_plane.png")


@torch.no_grad()
def _hidden_spikes(model, x: torch.Tensor) -> torch.Tensor:
    """The hidden LIF layer's spikes ``[T, B, hidden]`` for images ``x``."""
    snn = snn_classifier(model)
    outs, _ = snn.snn.forward_all(snn.encode(x))
    return outs[2]


def _examples(c: Config, models, data, rd: RunDir, plt) -> str:
    """For the standard model and the most robust objective: test digits both classify
    correctly, their PGD adversarial versions at ``eval_eps`` and the hidden layer's spikes
    for both."""
    from ... import viz
    shown = [n for n in ("standard",) if n in models]
    shown += [n for n in ("robust_ib", "trades", "pgd_at") if n in models][:1]
    shown = shown or list(models)[:1]
    x, y = data.test.tensors
    with torch.no_grad():
        ok = torch.ones(len(y), dtype=torch.bool)
        for n in shown:
            snn_classifier(models[n]).generator = torch.Generator().manual_seed(c.seed + 3)
            ok &= models[n](x).argmax(1) == y
    idx = ok.nonzero()[:c.examples, 0]
    rows = len(idx) * len(shown)
    fig, axes = plt.subplots(max(rows, 1), 5, figsize=(15, 2.3 * max(rows, 1)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1, 1, 3, 3]})
    g = torch.Generator().manual_seed(c.seed + 13)
    row = 0
    for n in shown:
        model = models[n]
        snn_classifier(model).generator = torch.Generator().manual_seed(c.seed + 3)
        xi, yi = x[idx], y[idx]
        adv = robust.pgd(model, xi, yi, c.eval_eps, steps=c.pgd_steps, eot=c.eot, generator=g)
        with torch.no_grad():
            pred = model(adv).argmax(1)
        z_clean, z_adv = _hidden_spikes(model, xi), _hidden_spikes(model, adv)
        for k in range(len(idx)):
            ax = axes[row]
            ax[0].imshow(xi[k, 0].numpy(), cmap="gray_r", vmin=0, vmax=1)
            ax[0].set_title(f"{TITLES[n]}: clean, label {int(yi[k])}", fontsize=8)
            ax[1].imshow(adv[k, 0].numpy(), cmap="gray_r", vmin=0, vmax=1)
            ax[1].set_title(f"PGD eps {c.eval_eps:g}: predicted {int(pred[k])}", fontsize=8)
            ax[2].imshow((adv[k, 0] - xi[k, 0]).numpy(), cmap="RdBu", vmin=-c.eval_eps,
                         vmax=c.eval_eps)
            ax[2].set_title(f"perturbation (blue +{c.eval_eps:g}, red -{c.eval_eps:g})",
                            fontsize=7)
            for a in ax[:3]:
                a.set_xticks([])
                a.set_yticks([])
            viz.raster(z_clean[:, k], ax[3], dt_ms=c.dt_ms, title=f"hidden spikes, clean "
                       f"({int(z_clean[:, k].sum())})")
            viz.raster(z_adv[:, k], ax[4], dt_ms=c.dt_ms, title=f"hidden spikes, adversarial "
                       f"({int(z_adv[:, k].sum())})")
            row += 1
    return rd.save_figure(fig, "adversarial_examples.png", dpi=100)
