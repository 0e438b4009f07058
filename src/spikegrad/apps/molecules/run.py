"""De novo molecule design for synthetic accessibility (SA): a non-differentiable oracle
crossed either by a learned differentiable proxy or by a policy gradient.

The SA score (Ertl & Schuffenhauer 2009; RDKit's ``Contrib/SA_Score``, 1 easy .. 10 hard) is
a sum of fragment look-ups and ring, stereo and size penalties: it has no gradient. Two ways
around it fine-tune the same pretrained SMILES generator, as a surrogate gradient crosses a
spike's step.

Methods, in the order they run:

1. **Proxies compared**: a GIN with edge features (GINE; ``gin_layers`` convolutions of width
   ``gin_hidden``, sum and mean readout, PyTorch Geometric) on the RDKit heavy-atom graph,
   and an MLP on ``log(1 + Morgan counts)`` (radius 2, 2048 bits), both fitted by
   :func:`spikegrad.proxy.fit_proxy` (AdamW, MSE) to the true SA of ``proxy_set`` (RDKit's
   NCI ``first_5K.smi``, 4991 molecules, by default) on the same random split
   (``val_fraction`` held out); held-out R² and calibration slope.
2. **Prior**: a SMILES character GRU (``gen_layers`` x ``gen_hidden``) trained by maximum
   likelihood on the first ``pretrain_smiles`` MOSES training SMILES of at most ``max_len``
   tokens (``gen_epochs`` epochs, Adam ``gen_lr`` with a cosine decay, batches of 128).
   With ``tokens=selfies`` it (and arm A's token proxy) writes SELFIES tokens instead of
   SMILES characters: every token sequence decodes to a molecule, so validity is no longer
   something to learn (the metrics are those of the decoded SMILES).
   Cached in the run folder as ``prior.pt``: a later run in the same folder with the same
   data and generator keys loads it. Its per-token NLL on the token proxy's MOSES SMILES
   (never trained on) is ``prior_heldout_nll``. With ``spiking_epochs > 0`` a **spiking
   generator** is pretrained the same way on the same SMILES: ``Linear -> recurrent LIF
   (spiking_hidden neurons, no autapses, one step per token) -> Linear`` on the spikes,
   trained through the surrogate gradient, and evaluated like the prior
   (``spiking_prior_*``); the arms fine-tune the GRU.
3. **Arm A's proxy**: the GIN takes a parsed graph, which a generator cannot differentiate,
   so arm A uses a **token proxy** on one-hot tokens (``token_arch``: a bidirectional GRU
   over the whole string, or a 1-D CNN with a 9-token window), fitted to the true SA of the
   ``token_train`` MOSES SMILES after those of the prior and of ``token_samples`` samples of
   the prior (those that do not parse labelled ``invalid_sa``, so the proxy has seen the
   strings arm A proposes, invalid ones included), and of ``easy_labels`` small aromatics
   drawn at random from :mod:`.aromatics` (benzene with 0-3 small substituents, two phenyls
   joined by a linker; those the vocabulary can write), where SA reaches its floor of 1 far
   below the prior's molecules, so that the proxy has labels beyond the prior's region.
   With ``token_split`` (the default) it
   is two such networks: a validity classifier fitted to every string (the Brier score, the
   MSE of its probability ``p`` against parses / does not parse) and an SA regressor fitted
   to the valid molecules only, so that the jump to ``invalid_sa`` does not swamp the
   ranking of valid molecules; arm A follows their expected oracle score ``p * SA + (1 - p)
   * invalid_sa`` (``a_validity_weight`` adds SA units to that charge for arm A's objective).
   Its labels are arm A's oracle calls, on an oracle of its own (neither arm
   looks up a molecule the other paid for).
4. **Arm A, proxy gradient**: an agent starts as a copy of the prior and draws ``a_batch``
   sequences per update by straight-through Gumbel-softmax
   (:func:`spikegrad.proxy.gumbel_softmax_st`: the one-hot token forward, fed back into the
   GRU; the softmax at temperature ``a_tau`` backward), minimising the token proxy's SA of
   the one-hot sequences plus ``a_kl`` times the per-token KL(agent || prior) along them
   (Adam ``a_lr``, ``a_steps`` updates). The gradient of the proxy reaches every token
   choice (and with ``a_through_recurrence`` flows back through the fed-back tokens).
   **Active learning**: every ``a_relabel_every`` updates the oracle labels ``a_relabel``
   fresh samples of the agent (more calls of arm A) and the proxy trains
   ``a_relabel_epochs`` more epochs on all its labels, so that it follows the agent off the
   prior's distribution; its R² on those samples before it saw them is
   ``arm_a_fresh_r2_*``.
5. **Arm B, policy gradient**: REINVENT (Olivecrona et al. 2017,
   :func:`spikegrad.proxy.reinvent_loss`): an agent from the same prior draws ``b_batch``
   sequences per update, the true oracle scores each (a call is a distinct valid molecule;
   repeats are looked up, a SMILES that does not parse is charged ``invalid_sa`` without a
   call; a molecule sampled more than ``b_memory`` times scores 0 from then on, REINVENT's
   identical-molecule filter against collapse), and the agent's log-likelihood is pulled
   towards ``log P_prior(x) + b_sigma * s(x)`` with ``s = clip((b_sa_zero - SA) /
   (b_sa_zero - 1), 0, 1)``, the reward -SA mapped onto REINVENT's score range [0, 1] (0
   for a SMILES that does not parse; ``b_steps`` updates). **Experience replay**: each
   update adds ``b_replay`` molecules drawn from the ``b_replay_memory`` best distinct ones
   scored so far, with their scores (no new calls); with ``b_replay_forget`` a molecule the
   identical-molecule filter zeroes also leaves the replay memory.
6. **Evaluation**: the prior, and each agent every ``eval_every`` updates, draw
   ``eval_samples`` SMILES (the same seed each time). Validity (RDKit parses), uniqueness
   (distinct canonical among the valid), novelty (distinct valid not in the prior's
   training SMILES), internal diversity (1 - mean Tanimoto of Morgan bit fingerprints over
   all pairs), true SA of all valid samples and mean true SA of the ``top_k`` best valid
   unique ones, the token proxy's SA of the valid samples and its gap to the true SA
   (reward hacking shows as a growing negative gap). Evaluation scores are not counted as
   oracle calls.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Dict, List

import torch

from ...data import molecules as chem
from ...train import seed_everything
from ...train.progress import Progress
from ..config import to_json
from ..report import Result, RunDir
from . import arms, aromatics
from .config import Config, validate
from .models import SmilesGRU, SmilesModel, require_pyg
from .report import figures, tables

__all__ = ["run", "PRIOR_KEYS", "ARM_KEYS"]

#: the configuration keys the cached prior depends on
PRIOR_KEYS = ("seed", "tokens", "pretrain_smiles", "max_len", "gen_hidden", "gen_layers", "gen_epochs",
              "gen_lr")
#: the per-arm metrics of metrics.json (``arm_a_<key>``, ``arm_b_<key>``, ``prior_<key>``)
ARM_KEYS = ("validity", "uniqueness", "novelty", "diversity", "sa_mean", "topk_sa",
            "proxy_sa_mean", "gap")


def _load_smiles(c: Config):
    """The prior's SMILES (<= max_len tokens), the token proxy's, and the vocabulary."""
    want = c.pretrain_smiles + c.token_train
    kind = chem.SelfiesVocab if c.tokens == "selfies" else chem.SmilesVocab
    pool = [s for s in chem.load_moses_smiles(limit=int(want * 1.05) + 100)
            if len(kind.tokens(s)) <= c.max_len]
    if len(pool) < want:
        raise ValueError(f"only {len(pool)} MOSES SMILES have <= max_len={c.max_len} tokens; "
                         f"lower pretrain_smiles + token_train ({want}) or raise max_len")
    prior_set, token_set = pool[:c.pretrain_smiles], pool[c.pretrain_smiles:want]
    return prior_set, token_set, kind.build(prior_set + token_set)


def _writable(smiles: List[str], vocab, max_len: int) -> List[str]:
    """The ``smiles`` the generators can write: every token (SMILES characters, or the
    SELFIES tokens of a SelfiesVocab) in ``vocab``, at most ``max_len`` of them."""
    keep = []
    for s in smiles:
        try:
            toks = type(vocab).tokens(s)
        except ValueError:          # SELFIES cannot encode it
            continue
        if len(toks) <= max_len and all(t in vocab.stoi for t in toks):
            keep.append(s)
    return keep


def _prior(c: Config, rd: RunDir, ids: torch.Tensor, vocab, progress) -> SmilesGRU:
    """Pretrain, or load ``prior.pt`` from the run folder if the same keys made it."""
    path = rd.path / "prior.pt"
    key = {k: getattr(c, k) for k in PRIOR_KEYS} | {"vocab": vocab.itos}
    if path.exists():
        saved = torch.load(path, weights_only=False)
        if saved.get("key") == key:
            model = SmilesGRU(len(vocab), c.gen_hidden, c.gen_layers)
            model.load_state_dict(saved["state"])
            progress.update(c.gen_epochs, "prior loaded from prior.pt")
            return model.eval()
    model = arms.pretrain(ids, len(vocab), c, c.seed,
                          lambda r: progress.update(1, f"pretrain nll {r['train_nll']:.3f}"))
    tmp = path.with_suffix(".tmp")
    torch.save({"key": key, "state": model.state_dict()}, tmp)
    tmp.replace(path)
    return model


def run(cfg: Config, out_dir: Path, resume: bool = False) -> Result:
    c = validate(cfg)
    chem.require_rdkit()
    require_pyg()
    rd = RunDir(out_dir)
    rd.write_config(c)
    seed_everything(c.seed)
    start = time.perf_counter()
    # units of roughly comparable time: a proxy fit, a pretraining epoch, an evaluation
    # (with the agent updates before it)
    evals = 1 + len(range(0, c.a_steps, c.eval_every)) + len(range(0, c.b_steps, c.eval_every)) + 2
    progress = Progress(3 + c.gen_epochs + c.spiking_epochs + evals, "molecules",
                        enabled=c.progress)
    metrics: Dict[str, float] = {}
    history: List[dict] = []
    oracle = arms.Oracle(c.invalid_sa)

    # 1. GIN vs fingerprint MLP on held-out molecules
    proxy_smiles = (chem.load_nci_smiles(limit=c.proxy_limit or None) if c.proxy_set == "nci"
                    else chem.load_moses_smiles(limit=c.proxy_limit))
    proxy_sa = oracle.score(proxy_smiles)
    fits = {}
    for name, fit in (("gin", arms.fit_gin), ("mlp", arms.fit_mlp)):
        t0 = time.perf_counter()
        fits[name] = fit(proxy_smiles, proxy_sa, c, c.seed)
        metrics[f"{name}_val_r2"] = fits[name].val_r2
        metrics[f"{name}_train_r2"] = fits[name].train_r2
        metrics[f"{name}_calibration_slope"] = fits[name].calibration.slope
        metrics[f"{name}_seconds"] = time.perf_counter() - t0
        progress.update(1, f"{name} proxy held-out R2 {fits[name].val_r2:.3f}")
    metrics["proxy_molecules"] = len(proxy_smiles)

    # 2. the prior
    prior_set, token_set, vocab = _load_smiles(c)
    t0 = time.perf_counter()
    prior = _prior(c, rd, vocab.encode(prior_set, c.max_len), vocab, progress)
    metrics["pretrain_seconds"] = time.perf_counter() - t0
    reference = set(prior_set)   # MOSES SMILES are canonical already
    held_out = vocab.encode(token_set, c.max_len)   # SMILES no prior trained on
    with torch.no_grad():
        metrics["prior_heldout_nll"] = prior.nll(held_out).item()
    spiking = None
    if c.spiking_epochs:
        t0 = time.perf_counter()
        spiking = arms.pretrain(vocab.encode(prior_set, c.max_len), len(vocab), c, c.seed,
                                lambda r: progress.update(1, f"spiking pretrain nll "
                                                             f"{r['train_nll']:.3f}"),
                                spiking=True).eval()
        metrics["spiking_pretrain_seconds"] = time.perf_counter() - t0
        with torch.no_grad():
            metrics["spiking_prior_heldout_nll"] = spiking.nll(held_out).item()

    # 3. arm A's token proxy: its labels are arm A's oracle calls (an oracle of its own, so
    # that neither arm looks up a molecule the other paid for)
    t0 = time.perf_counter()
    oracle_a = arms.Oracle(c.invalid_sa)
    token_ids, token_sa = vocab.encode(token_set, c.max_len), oracle_a(token_set)
    if c.token_samples:
        with torch.no_grad():
            drawn, _, _ = prior.sample(c.token_samples, c.max_len,
                                       torch.Generator().manual_seed(c.seed + 5))
        token_ids = torch.cat([token_ids, drawn])
        token_sa = torch.cat([token_sa, oracle_a(arms.decode(drawn, vocab))])
    if c.easy_labels:
        easy = _writable(aromatics.easy_molecules(c.easy_labels, c.seed + 11), vocab, c.max_len)
        token_ids = torch.cat([token_ids, vocab.encode(easy, c.max_len)])
        token_sa = torch.cat([token_sa, oracle_a(easy)])
        metrics["token_easy_labels"] = len(easy)
    token_proxy, token_fit = arms.fit_token_proxy(token_ids, token_sa, len(vocab), c, c.seed)
    metrics["token_oracle_calls"] = oracle_a.calls
    metrics.update({f"token_{k}": v for k, v in token_fit.items()},
                   token_seconds=time.perf_counter() - t0)
    progress.update(1, f"token proxy held-out R2 (valid) {token_fit['val_r2_valid']:.3f}")

    # 4.-6. both arms from the same prior, evaluated on the same sample seed
    def evaluate(model):
        return arms.evaluate(model, vocab, c, oracle, token_proxy, reference, c.seed + 7)

    results = {"prior": evaluate(prior)}
    if spiking is not None:
        for key, value in evaluate(spiking).items():
            if key in ARM_KEYS:
                metrics[f"spiking_prior_{key}"] = value
    progress.update(1, f"prior top-{c.top_k} SA {results['prior']['topk_sa']:.3f}")

    def recorder(arm: str, calls):
        def on_eval(step: int, agent: SmilesModel) -> None:
            agent.eval()
            r = evaluate(agent)
            agent.train()
            results[arm] = r
            history.append({"arm": arm, "step": step, "oracle_calls": calls(),
                            **{k: r[k] for k in ARM_KEYS}})
            progress.update(1, f"{arm} step {step} top-{c.top_k} SA {r['topk_sa']:.3f} "
                               f"valid {r['validity']:.2f}")
        return on_eval

    t0 = time.perf_counter()
    active = arms.ActiveTokenProxy(token_proxy, token_ids, token_sa, vocab, oracle_a, c)
    arms.arm_a(prior, active if c.a_relabel_every else token_proxy, c, c.seed + 1,
               recorder("arm_a", lambda: oracle_a.calls))
    metrics["arm_a_seconds"] = time.perf_counter() - t0
    metrics["arm_a_oracle_calls"] = oracle_a.calls
    # the best top-k among every molecule the arm's oracle scored (for arm A: its proxy's
    # labels, MOSES molecules included): what the arm found, sampled again or not
    metrics["arm_a_found_topk_sa"] = oracle_a.best_mean(c.top_k)
    if active.log:
        # how well the proxy ranked the agent's fresh samples just before it was refitted
        # on them: its quality where the agent actually is (the last refit, and the mean)
        r2s = [r["fresh_r2_valid"] for r in active.log if not math.isnan(r["fresh_r2_valid"])]
        if r2s:
            metrics.update(arm_a_fresh_r2_last=r2s[-1], arm_a_fresh_r2_mean=sum(r2s) / len(r2s))
    t0 = time.perf_counter()
    oracle_b = arms.Oracle(c.invalid_sa)
    arms.arm_b(prior, vocab, oracle_b, c, c.seed + 2,
               recorder("arm_b", lambda: oracle_b.calls))
    metrics["arm_b_seconds"] = time.perf_counter() - t0
    metrics["arm_b_oracle_calls"] = oracle_b.calls
    metrics["arm_b_found_topk_sa"] = oracle_b.best_mean(c.top_k)

    for name, r in results.items():
        for key in ARM_KEYS:
            metrics[f"{name}_{key}"] = r[key]
    for arm in ("arm_a", "arm_b"):
        metrics[f"{arm}_topk_sa_drop"] = results["prior"]["topk_sa"] - results[arm]["topk_sa"]
    metrics["wall_seconds"] = time.perf_counter() - start
    rd.write_metrics({k: v for k, v in metrics.items()
                      if not (isinstance(v, float) and math.isnan(v))})
    (rd.path / "top.json").write_text(json.dumps(
        {name: r["top"] for name, r in results.items()}, indent=1) + "\n")
    names = figures(c, results, history, fits, rd)
    rd.write_report("De novo design for synthetic accessibility: proxy gradient vs policy "
                    "gradient", __doc__, c, metrics, tables(c, metrics, history), names)
    progress.close()
    return Result(metrics, history, rd.path)
