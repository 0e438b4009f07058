"""The molecules app's tables and figures: the proxies' held-out fit, each arm against the
prior, the training curves, true SA against oracle calls, proxy-vs-true scatters, SA
histograms and a grid of the best molecules."""

from __future__ import annotations

import math
from typing import Dict, List, Optional

from ..report import RunDir, Table
from .config import Config

__all__ = ["tables", "figures", "first_reaching"]

ARMS = (("prior", "prior"), ("arm_a", "A: proxy gradient (ST Gumbel)"),
        ("arm_b", "B: REINVENT on the oracle"))


def first_reaching(history: List[dict], arm: str, target: float) -> Optional[dict]:
    """The first evaluation of ``arm`` whose top-k mean SA is at most ``target``."""
    for r in history:
        if r["arm"] == arm and not math.isnan(r["topk_sa"]) and r["topk_sa"] <= target:
            return r
    return None


def tables(c: Config, metrics: Dict[str, float], history: List[dict]) -> List[Table]:
    m = metrics.get
    tok = f"token {c.token_arch.upper()}"
    acc = m("token_validity_val_accuracy", math.nan)
    proxies = Table(
        "SA proxies on held-out molecules", ["proxy", "input", "held-out R²", "train R²",
                                              "calibration slope", "seconds"],
        [["GIN (GINE)", "atom/bond graph", m("gin_val_r2"), m("gin_train_r2"),
          m("gin_calibration_slope"), m("gin_seconds")],
         ["MLP", "log(1 + Morgan counts)", m("mlp_val_r2"), m("mlp_train_r2"),
          m("mlp_calibration_slope"), m("mlp_seconds")],
         *([[f"{tok} SA part (arm A)", f"one-hot {c.tokens.upper()} tokens, valid only",
             m("token_val_r2_valid"), None, m("token_calibration_slope"),
             m("token_seconds")],
            *([[f"{tok} validity part", f"held-out accuracy {acc:.3f}", None, None, None,
                None]] if not math.isnan(acc) else [])] if c.token_split else
           [[f"{tok} (arm A)", f"one-hot {c.tokens.upper()} tokens", m("token_val_r2"), None,
             m("token_calibration_slope"), m("token_seconds")],
            [f"{tok}, valid held-out only", "", m("token_val_r2_valid"), None, None, None]]),
         [f"{tok} on arm A's fresh samples", "valid ones, mean over the refits",
          m("arm_a_fresh_r2_mean"), None, None, None]],
        f"GIN and MLP: the same split of {int(m('proxy_molecules', 0))} `{c.proxy_set}` "
        f"molecules, {c.val_fraction:.0%} held out. The {tok}: {c.token_train} MOSES "
        f"SMILES and {c.token_samples} prior samples (invalid ones at SA {c.invalid_sa:g}; "
        "its own split); only it can take a generator's relaxed tokens. "
        + ("Split: a validity classifier on every string and an SA regressor on the valid "
           "ones; arm A follows p * SA + (1 - p) * invalid SA. " if c.token_split else "")
        + "Fresh samples: "
        f"every {c.a_relabel_every} updates of arm A (0: never), {c.a_relabel} samples of the "
        "agent scored by the proxy before it is refitted on them: its quality where the "
        "agent is.")
    rows = []
    for key, name in ARMS:
        rows.append([name] + [m(f"{key}_{k}") for k in
                              ("validity", "uniqueness", "novelty", "diversity", "sa_mean",
                               "topk_sa", "topk_sa_drop", "proxy_sa_mean", "gap",
                               "oracle_calls")])
    # oracle efficiency: the calls each arm needed to first reach the weaker arm's final top-k
    bar = max(m("arm_a_topk_sa", math.nan), m("arm_b_topk_sa", math.nan))
    words = []
    if not math.isnan(bar):
        for arm in ("arm_a", "arm_b"):
            r = first_reaching(history, arm, bar)
            words.append(f"{arm} first reached a top-{c.top_k} SA of {bar:.3f} (the weaker arm's "
                         "final) " + (f"after {r['step']} updates and {r['oracle_calls']} "
                                      "oracle calls" if r else "never"))
    note = (f"{c.eval_samples} samples per row (same seed). SA: true score of the valid "
            f"samples; top-{c.top_k}: mean of the {c.top_k} best valid unique; drop: prior "
            f"minus arm. Proxy SA: the {tok}'s score of the valid samples; gap: proxy "
            f"minus true SA of the same samples (negative: the proxy thinks them easier than "
            f"they are). Oracle calls: distinct valid molecules scored, each arm with its own "
            f"oracle; arm A's are the token proxy's labels (MOSES molecules, prior samples and "
            f"small aromatics before training, and the agent's samples at each refit). "
            + "; ".join(words) + ".")
    arms = Table("Arms against the prior", ["generator", "validity", "uniqueness", "novelty",
                                            "int. diversity", "SA (valid)",
                                            f"top-{c.top_k} SA", "drop", "proxy SA", "gap",
                                            "oracle calls"], rows, note)
    curve = Table("Training curves", ["arm", "update", "oracle calls", "validity",
                                      "uniqueness", f"top-{c.top_k} SA", "SA (valid)",
                                      "proxy SA", "gap"],
                  [[r["arm"], r["step"], r["oracle_calls"], r["validity"], r["uniqueness"],
                    r["topk_sa"], r["sa_mean"], r["proxy_sa_mean"], r["gap"]]
                   for r in history])
    return [proxies, arms, curve]


def figures(c: Config, results: dict, history: List[dict], fits: dict, rd: RunDir) -> List[str]:
    from ... import viz
    plt = viz.pyplot()
    names = [_calls(c, results, history, rd, plt), _scatter(results, fits, rd, plt),
             _histograms(results, rd, plt)]
    if c.grid and any(results[k]["top"] for k in ("arm_a", "arm_b")):
        names.append(_grid(c, results, rd))
    return names


def _calls(c: Config, results, history, rd: RunDir, plt) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for arm, color, label in (("arm_a", "C0", "A: proxy gradient"),
                              ("arm_b", "C3", "B: REINVENT")):
        rows = [r for r in history if r["arm"] == arm]
        x = [r["oracle_calls"] for r in rows]
        steps = [r["step"] for r in rows]
        for key, style in (("topk_sa", "o-"), ("sa_mean", "s--")):
            y = [r[key] for r in rows]
            what = f"top-{c.top_k}" if key == "topk_sa" else "all valid"
            axes[0].plot(x, y, style, color=color, ms=4, label=f"{label}, {what}")
            axes[1].plot(steps, y, style, color=color, ms=4, label=f"{label}, {what}")
    for ax in axes:
        ax.axhline(results["prior"]["topk_sa"], color="k", lw=1, ls=":",
                   label=f"prior, top-{c.top_k}")
        ax.axhline(results["prior"]["sa_mean"], color="0.5", lw=1, ls=":",
                   label="prior, all valid")
        ax.set_ylabel("true SA (lower is easier)")
    axes[0].set_xlabel("oracle calls (A: the proxy's labels)")
    axes[1].set_xlabel("agent updates")
    axes[0].set_title("true SA against oracle calls")
    axes[1].set_title("true SA against updates")
    axes[1].legend(fontsize=7)
    return rd.save_figure(fig, "sa_vs_oracle_calls.png")


def _scatter(results, fits, rd: RunDir, plt) -> str:
    panels = [(f"GIN, held out (R² {fits['gin'].val_r2:.3f})", fits["gin"].val_target,
               fits["gin"].val_pred),
              (f"fingerprint MLP, held out (R² {fits['mlp'].val_r2:.3f})",
               fits["mlp"].val_target, fits["mlp"].val_pred),
              ("token proxy on arm A's final samples", results["arm_a"]["valid_sa"],
               results["arm_a"]["valid_proxy"])]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    for ax, (title, true, pred) in zip(axes, panels):
        true, pred = list(map(float, true)), list(map(float, pred))
        ax.scatter(true, pred, s=5, alpha=0.5)
        if true:
            lo, hi = min(true + pred), max(true + pred)
            ax.plot([lo, hi], [lo, hi], "k:", lw=1)
        ax.set_xlabel("true SA")
        ax.set_ylabel("proxy SA")
        ax.set_title(title, fontsize=9)
    return rd.save_figure(fig, "proxy_vs_true.png")


def _histograms(results, rd: RunDir, plt) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for (key, label), color in zip(ARMS, ("0.4", "C0", "C3")):
        sa = results[key]["valid_sa"]
        if sa:
            ax.hist(sa, bins=40, range=(1, 7), alpha=0.5, color=color,
                    label=f"{label} (mean {sum(sa) / len(sa):.2f})")
    ax.set_xlabel("true SA of the valid samples")
    ax.set_ylabel("samples")
    if any(results[key]["valid_sa"] for key, _ in ARMS):
        ax.legend(fontsize=7)
    return rd.save_figure(fig, "sa_histograms.png")


def _grid(c: Config, results, rd: RunDir) -> str:
    from rdkit import Chem
    from rdkit.Chem import Draw
    mols, legends = [], []
    for key, tag in (("arm_a", "A"), ("arm_b", "B")):
        for smi, sa in results[key]["top"][:c.grid]:
            mols.append(Chem.MolFromSmiles(smi))
            legends.append(f"{tag}: SA {sa:.2f}")
    img = Draw.MolsToGridImage(mols, molsPerRow=6, subImgSize=(200, 160), legends=legends)
    img.save(rd.path / "top_molecules.png")
    return "top_molecules.png"
