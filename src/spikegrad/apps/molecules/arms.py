"""The molecules app's steps: proxy fits, generator pretraining, the two fine-tuning arms and
the evaluation of a generator's samples."""

from __future__ import annotations

import copy
import math
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ... import proxy
from ...data import molecules as chem
from .models import (FingerprintMLP, GINProxy, IndexedGraphs, Probability, SmilesGRU,
                     SmilesModel, SpikingSmilesModel, TokenGRUProxy, TokenProxy,
                     ValidityWeightedProxy)

__all__ = ["Oracle", "fit_gin", "fit_mlp", "fit_token_proxy", "build_token_proxy",
           "train_token_proxy", "token_sa_net", "pretrain", "evaluate",
           "arm_a", "arm_b", "onehot", "sa_score_to_reward",
           "ActiveTokenProxy", "ReplayMemory"]


class Oracle:
    """The true SA score with a call counter. A call is one distinct valid molecule scored:
    a SMILES that does not parse never reaches the scorer (it is charged ``invalid_sa``), and
    a molecule scored before is looked up (by canonical SMILES), not scored again."""

    def __init__(self, invalid_sa: float = 10.0):
        self.invalid_sa, self.calls = invalid_sa, 0
        self.cache: Dict[str, float] = {}

    def __call__(self, smiles: Sequence[str]) -> Tensor:
        out = []
        for s in smiles:
            can = chem.canonical(s)
            if can is None:
                out.append(self.invalid_sa)
                continue
            if can not in self.cache:
                self.cache[can] = chem.sa_score(can)
                self.calls += 1
            out.append(self.cache[can])
        return torch.tensor(out, dtype=torch.float32)

    def best_mean(self, k: int) -> float:
        """Mean SA of the ``k`` best distinct molecules scored so far (NaN below ``k``): the
        best top-``k`` this oracle's user could have known of."""
        best = sorted(self.cache.values())[:k]
        return sum(best) / k if len(best) >= k else math.nan

    def score(self, smiles: Sequence[str]) -> Tensor:
        """Scores without counting (evaluation, never seen by a learner)."""
        return torch.tensor([self.invalid_sa if s is None else s
                             for s in chem.sa_scores(smiles)], dtype=torch.float32)


def fit_gin(smiles: Sequence[str], sa: Tensor, c, seed: int):
    """The GIN proxy fitted to ``sa`` with a held-out ``val_fraction`` (split from ``seed``)."""
    torch.manual_seed(seed)
    model = IndexedGraphs(GINProxy(c.gin_hidden, c.gin_layers), [chem.mol_graph(s) for s in smiles])
    return proxy.fit_proxy(model, torch.arange(len(smiles)), sa, val_fraction=c.val_fraction,
                           epochs=c.gin_epochs, lr=c.gin_lr, batch_size=64, seed=seed,
                           weight_decay=1e-4)


def fit_mlp(smiles: Sequence[str], sa: Tensor, c, seed: int):
    """The fingerprint MLP baseline on the same split as :func:`fit_gin` (same ``seed``)."""
    torch.manual_seed(seed)
    return proxy.fit_proxy(FingerprintMLP(2048, c.mlp_hidden), chem.morgan_counts(smiles), sa,
                           val_fraction=c.val_fraction, epochs=c.mlp_epochs, lr=c.mlp_lr,
                           batch_size=64, seed=seed, weight_decay=c.mlp_weight_decay)


def onehot(seqs: Tensor, vocab_size: int) -> Tensor:
    """``seqs [B, L]`` with ``<bos>`` first -> the token proxy's input ``[B, L - 1, V]``."""
    return F.one_hot(seqs[:, 1:], vocab_size).float()


def token_sa_net(model: nn.Module) -> nn.Module:
    """The part of a token proxy that scores valid molecules: the SA regressor of a
    :class:`ValidityWeightedProxy`, or the single network itself."""
    return model.sa if isinstance(model, ValidityWeightedProxy) else model


def build_token_proxy(vocab_size: int, c, seed: int) -> nn.Module:
    """Arm A's token proxy, untrained: with ``token_split`` a :class:`ValidityWeightedProxy`
    of two ``token_arch`` networks (validity, SA; with SELFIES tokens the SA one alone),
    else one network for every string."""
    torch.manual_seed(seed)
    net = TokenGRUProxy if c.token_arch == "gru" else TokenProxy
    if c.token_split:
        # SELFIES strings decode to a molecule whatever the tokens: nothing to classify
        validity = (None if c.tokens == "selfies" else
                    Probability(net(vocab_size, c.token_hidden)))
        return ValidityWeightedProxy(validity, net(vocab_size, c.token_hidden), c.invalid_sa)
    return net(vocab_size, c.token_hidden)


def train_token_proxy(model: nn.Module, seqs: Tensor, sa: Tensor, vocab_size: int, c,
                      epochs: int, seed: int) -> Dict[str, float]:
    """Train ``model`` (from :func:`build_token_proxy`, in place) ``epochs`` epochs on the
    oracle's ``sa [N]`` of ``seqs [N, L]`` (``invalid_sa`` for a string that does not
    parse), each part on its own held-out ``val_fraction`` split; returns its held-out
    metrics: ``val_r2_valid`` and ``calibration_slope`` (SA of valid molecules), and
    ``val_r2`` (every string, single network) or ``validity_val_accuracy`` and
    ``validity_val_brier`` (the validity part)."""
    x = onehot(seqs, vocab_size)
    opts = dict(val_fraction=c.val_fraction, epochs=epochs, lr=c.token_lr, batch_size=64,
                seed=seed, weight_decay=1e-4)
    valid = sa != c.invalid_sa
    if isinstance(model, ValidityWeightedProxy):
        # the MSE of a probability against 0/1 outcomes is the Brier score, a proper scoring
        # rule: its minimiser is the true probability that the string parses
        sfit = proxy.fit_proxy(model.sa, x[valid], sa[valid], **opts)
        out = {"val_r2_valid": sfit.val_r2, "calibration_slope": sfit.calibration.slope}
        if model.validity is not None:
            vfit = proxy.fit_proxy(model.validity, x, valid.float(), **opts)
            hit = (vfit.val_pred > 0.5) == (vfit.val_target > 0.5)
            out.update(validity_val_accuracy=hit.double().mean().item(),
                       validity_val_brier=F.mse_loss(vfit.val_pred, vfit.val_target).item())
        model.eval()
        return out
    fit = proxy.fit_proxy(model, x, sa, **opts)
    # R² over every held-out string is dominated by the invalid ones (all at invalid_sa);
    # the R² on the valid ones says how well it ranks molecules
    ok = fit.val_target != c.invalid_sa
    return {"val_r2": fit.val_r2, "calibration_slope": fit.calibration.slope,
            "val_r2_valid": proxy.r2_score(fit.val_pred[ok], fit.val_target[ok])
            if int(ok.sum()) >= 2 else math.nan}


def fit_token_proxy(seqs: Tensor, sa: Tensor, vocab_size: int, c,
                    seed: int) -> Tuple[nn.Module, Dict[str, float]]:
    """Arm A's differentiable proxy fitted ``token_epochs`` epochs to the oracle's ``sa`` of
    ``seqs``: ``(model in eval mode, held-out metrics of :func:`train_token_proxy`)``."""
    model = build_token_proxy(vocab_size, c, seed)
    metrics = train_token_proxy(model, seqs, sa, vocab_size, c, c.token_epochs, seed)
    return model.eval(), metrics


def pretrain(ids: Tensor, vocab_size: int, c, seed: int,
             tick: Optional[Callable[[dict], None]] = None, spiking: bool = False
             ) -> SmilesModel:
    """Maximum likelihood on ``ids [N, L]`` (Adam with a cosine decay to 0 over all steps,
    batches of 128, gradients clipped at norm 1): the GRU prior, or (``spiking``) the
    recurrent LIF model for ``spiking_epochs``."""
    torch.manual_seed(seed)
    if spiking:
        model = SpikingSmilesModel(vocab_size, c.spiking_hidden, backend=c.spiking_backend)
        epochs = c.spiking_epochs
    else:
        model, epochs = SmilesGRU(vocab_size, c.gen_hidden, c.gen_layers), c.gen_epochs
    opt = torch.optim.Adam(model.parameters(), c.gen_lr)
    steps = epochs * math.ceil(len(ids) / 128)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        total, count = 0.0, 0
        for idx in torch.randperm(len(ids), generator=g).split(128):
            batch = ids[idx]
            batch = batch[:, :int((batch != chem.SmilesVocab.PAD).sum(1).max())]   # trim padding
            loss = model.nll(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total, count = total + loss.item() * len(idx), count + len(idx)
        if tick is not None:
            tick({"epoch": epoch + 1, "train_nll": total / count})
    return model.eval()



def decode(seqs: Tensor, vocab: chem.SmilesVocab) -> List[str]:
    """``seqs [B, L]`` (``<bos>`` first) -> SMILES strings (not checked)."""
    return [vocab.decode(s[1:]) for s in seqs]


@torch.no_grad()
def evaluate(model: SmilesGRU, vocab, c, oracle: Oracle, token_proxy, reference: set,
             seed: int) -> Dict[str, object]:
    """Metrics of ``eval_samples`` samples (seeded): validity, uniqueness, novelty against
    ``reference`` (canonical SMILES), internal diversity, true SA of all valid samples and of
    the ``top_k`` best valid unique ones, and the token proxy's SA of the valid samples
    (the proxy-vs-true gap; of a :class:`ValidityWeightedProxy`, its SA part). Oracle
    scores here are not counted as calls."""
    seqs, _, _ = model.sample(c.eval_samples, c.max_len, torch.Generator().manual_seed(seed))
    smiles = decode(seqs, vocab)
    canon = [chem.canonical(s) for s in smiles]
    valid = [i for i, s in enumerate(canon) if s is not None]
    out = {"validity": len(valid) / len(smiles)}
    if not valid:
        return dict(out, uniqueness=math.nan, novelty=math.nan, diversity=math.nan,
                    sa_mean=math.nan, topk_sa=math.nan, proxy_sa_mean=math.nan, gap=math.nan,
                    valid_sa=[], valid_proxy=[], top=[])
    true = oracle.score([canon[i] for i in valid])
    pred = (token_sa_net(token_proxy)(onehot(seqs[valid], len(vocab)))
            if token_proxy is not None else true)
    best: Dict[str, float] = {}
    for i, sa in zip(valid, true.tolist()):
        best[canon[i]] = sa
    top = sorted(best.items(), key=lambda kv: kv[1])[:c.top_k]
    out.update(
        uniqueness=len(best) / len(valid),
        novelty=len(set(best) - reference) / len(best),
        diversity=chem.internal_diversity(list(best)),
        sa_mean=true.mean().item(),
        topk_sa=sum(v for _, v in top) / len(top) if len(top) >= c.top_k else math.nan,
        proxy_sa_mean=pred.mean().item(),
        gap=(pred - true).mean().item(),
        valid_sa=true.tolist(), valid_proxy=pred.tolist(), top=top)
    return out


def _kl_to_prior(agent: SmilesGRU, prior: SmilesGRU, seqs: Tensor) -> Tensor:
    """Per-sequence ``sum_t KL(agent(.|x_<t) || prior(.|x_<t))`` along ``seqs [B, L]``."""
    ids = seqs.T                                          # [L, B]
    mask = (ids[1:] != agent.pad).float()                 # [L-1, B]
    logq = agent(ids[:-1]).log_softmax(-1)                # [L-1, B, V]
    with torch.no_grad():
        logp = prior(ids[:-1]).log_softmax(-1)
    # masked tokens (<pad>, <bos>) have q = p = 0: their terms are 0, not inf - inf
    kl = (logq.exp() * (logq - logp).masked_fill(torch.isinf(logq), 0.0)).sum(-1)  # [L-1, B]
    return (kl * mask).sum(0)


class ActiveTokenProxy:
    """Arm A's token proxy with the oracle-labelled sequences it was fitted to, refitted on
    the agent's own samples as the agent drifts (active learning: each label of a distinct
    valid new molecule is one call of ``oracle``, arm A's own).

    Args:
        model: the fitted token proxy (from :func:`fit_token_proxy`).
        seqs: ``[N, max_len + 2]`` the token ids it was fitted to (``<bos>`` first).
        sa: ``[N]`` their oracle SA (``invalid_sa`` for a SMILES that does not parse).
        vocab, oracle, c: the vocabulary, arm A's :class:`Oracle`, the app config.
    """

    def __init__(self, model: nn.Module, seqs: Tensor, sa: Tensor, vocab, oracle: Oracle, c):
        self.model, self.seqs, self.sa = model, seqs, sa
        self.vocab, self.oracle, self.c = vocab, oracle, c
        #: per refit: the proxy's R² on the agent's fresh valid samples before it saw them
        #: (how well it ranks where the agent now is), and the samples' validity
        self.log: List[dict] = []

    @torch.no_grad()
    def _draw(self, agent: SmilesModel, generator: torch.Generator) -> Tensor:
        agent.eval()
        seqs, _, _ = agent.sample(self.c.a_relabel, self.c.max_len, generator)
        agent.train()
        return seqs

    def refit(self, agent: SmilesModel, step: int, generator: torch.Generator) -> None:
        """Label ``a_relabel`` fresh samples of ``agent`` with the oracle, then train the
        proxy ``a_relabel_epochs`` more epochs on all its labelled sequences."""
        c = self.c
        seqs = self._draw(agent, generator)
        sa = self.oracle(decode(seqs, self.vocab))
        valid = sa != c.invalid_sa
        with torch.no_grad():
            pred = token_sa_net(self.model)(onehot(seqs, len(self.vocab)))
        r2 = (proxy.r2_score(pred[valid], sa[valid])
              if int(valid.sum()) >= 2 and float(sa[valid].var()) > 0 else math.nan)
        self.seqs, self.sa = torch.cat([self.seqs, seqs]), torch.cat([self.sa, sa])
        for p in self.model.parameters():
            p.requires_grad_(True)
        train_token_proxy(self.model.train(), self.seqs, self.sa, len(self.vocab), c,
                          c.a_relabel_epochs, c.seed + step)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.eval()
        self.log.append({"step": step, "fresh_r2_valid": r2,
                         "fresh_validity": float(valid.float().mean()),
                         "oracle_calls": self.oracle.calls})


def arm_a(prior: SmilesGRU, token_proxy, c, seed: int,
          on_eval: Callable[[int, SmilesGRU], None]) -> SmilesGRU:
    """Proxy gradient: minimise ``E[proxy_SA(x)] + a_kl * KL(agent || prior)`` (a two-part
    proxy charging ``a_validity_weight`` more SA units for not parsing) over samples
    ``x`` drawn by straight-through Gumbel-softmax (one-hot forward, relaxed backward at
    ``a_tau``), the proxy's gradient flowing into every token choice (and, with
    ``a_through_recurrence``, through the recurrence). ``token_proxy``: a
    :class:`TokenProxy`, or an :class:`ActiveTokenProxy` that is refitted on the agent's
    samples every ``a_relabel_every`` updates (> 0). ``on_eval(step, agent)`` runs before the
    first and every ``eval_every``-th update and after the last."""
    active = token_proxy if isinstance(token_proxy, ActiveTokenProxy) else None
    model = active.model if active is not None else token_proxy
    agent = copy.deepcopy(prior).train()
    for p in model.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(agent.parameters(), c.a_lr)
    g = torch.Generator().manual_seed(seed)
    for step in range(c.a_steps):
        if step % c.eval_every == 0:
            on_eval(step, agent)
        if active is not None and c.a_relabel_every and step % c.a_relabel_every == 0 \
                and step > 0:
            active.refit(agent, step, g)
        seqs, _, hot = agent.sample(c.a_batch, c.max_len, g, straight_through_tau=c.a_tau,
                                    feed_gradient=c.a_through_recurrence)
        score = (model(hot, invalid_extra=c.a_validity_weight)
                 if isinstance(model, ValidityWeightedProxy) else model(hot))
        _update(opt, agent, score.mean() + c.a_kl * _kl_to_prior(agent, prior, seqs).mean())
    on_eval(c.a_steps, agent)
    return agent.eval()


def _update(opt: torch.optim.Optimizer, agent: SmilesGRU, loss: torch.Tensor) -> None:
    """One step of either arm: the loss's gradient, its norm clipped to 1, then the optimiser."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(agent.parameters(), 1.0)
    opt.step()


def arm_b(prior: SmilesGRU, vocab, oracle: Oracle, c, seed: int,
          on_eval: Callable[[int, SmilesGRU], None]) -> SmilesGRU:
    """REINVENT: minimise ``(log P_prior(x) + b_sigma * s(x) - log P_agent(x))^2`` over
    samples ``x`` of the agent, with the score ``s = clip((b_sa_zero - SA) / (b_sa_zero - 1),
    0, 1)`` (reward -SA mapped onto REINVENT's score range [0, 1]: 1 at SA 1, 0 from
    ``b_sa_zero`` on, and for a SMILES that does not parse) from the counted oracle; a
    molecule sampled more than ``b_memory`` times (> 0) scores 0 from then on. With
    ``b_replay > 0``, each update adds that many molecules drawn from the ``b_replay_memory``
    best distinct ones scored so far (REINVENT's experience replay; no new oracle calls); with
    ``b_replay_forget`` a molecule the filter zeroes leaves that memory."""
    agent = copy.deepcopy(prior).train()
    opt = torch.optim.Adam(agent.parameters(), c.b_lr)
    seen: Dict[str, int] = {}
    memory = ReplayMemory(c.b_replay_memory)
    g = torch.Generator().manual_seed(seed)
    for step in range(c.b_steps):
        if step % c.eval_every == 0:
            on_eval(step, agent)
        seqs, logps, _ = agent.sample(c.b_batch, c.max_len, g)
        smiles = decode(seqs, vocab)
        canon = [chem.canonical(s) for s in smiles]
        score = sa_score_to_reward(oracle(smiles), c.b_sa_zero)
        for i, can in enumerate(canon):
            if can is None:
                score[i] = 0.0
                continue
            if c.b_memory:
                # REINVENT's identical-molecule filter: a molecule rewarded b_memory times
                # earns 0 after, so the agent cannot collapse onto the few easiest molecules
                seen[can] = seen.get(can, 0) + 1
                if seen[can] > c.b_memory:
                    score[i] = 0.0
                    if c.b_replay_forget:
                        # the filter holds for replay too: a molecule the agent already
                        # writes often is not taught again
                        memory.discard(can)
        seqs_all = seqs
        if c.b_replay and len(memory):
            # replayed before this batch enters the memory, so a molecule is not learned
            # twice in the update that found it
            replayed, replay_score = memory.sample(c.b_replay, g)
            seqs_all = torch.cat([seqs, replayed])
            logps = torch.cat([logps, agent.log_probs(replayed)], 1)
            score = torch.cat([score, replay_score])
        if c.b_replay:
            for i, can in enumerate(canon):
                if can is not None and score[i] > 0:
                    memory.add(can, float(score[i]), seqs[i])
        with torch.no_grad():
            prior_logps = prior.log_probs(seqs_all)
        _update(opt, agent, proxy.reinvent_loss(logps, prior_logps, score, c.b_sigma))
    on_eval(c.b_steps, agent)
    return agent.eval()


class ReplayMemory:
    """The ``size`` best-scored distinct molecules seen so far, with the token sequences that
    wrote them (REINVENT's experience replay: a good molecule found once is learned again
    without another oracle call)."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"ReplayMemory: size must be >= 1, got {size}")
        self.size = size
        self.items: Dict[str, Tuple[float, Tensor]] = {}   # canonical -> (score, seq [L])

    def __len__(self) -> int:
        return len(self.items)

    def add(self, key: str, score: float, seq: Tensor) -> None:
        """Remember ``seq`` (``[L]`` ids) under ``key`` (a canonical SMILES) with ``score``;
        a key already held keeps its first entry, and the worst entry beyond ``size`` goes
        (ties: the oldest)."""
        if key in self.items:
            return
        self.items[key] = (score, seq)
        if len(self.items) > self.size:
            worst = min(self.items, key=lambda k: self.items[k][0])
            del self.items[worst]

    def discard(self, key: str) -> None:
        """Forget ``key`` (a canonical SMILES) if held; it may be added again later."""
        self.items.pop(key, None)

    def sample(self, n: int, generator: torch.Generator) -> Tuple[Tensor, Tensor]:
        """``min(n, len)`` distinct entries uniformly at random: ``(seqs [n, L], scores
        [n])``."""
        if not self.items:
            raise ValueError("ReplayMemory.sample: the memory is empty")
        entries = list(self.items.values())
        pick = torch.randperm(len(entries), generator=generator)[:n].tolist()
        return (torch.stack([entries[i][1] for i in pick]),
                torch.tensor([entries[i][0] for i in pick], dtype=torch.float32))


def sa_score_to_reward(sa: Tensor, sa_zero: float) -> Tensor:
    """SA ``[B]`` (1 easy .. 10 hard) -> REINVENT's score in [0, 1]: 1 at SA 1, falling
    linearly to 0 at ``sa_zero`` and 0 beyond. A band that ends near the worst SA the prior
    writes, rather than at 10, spends the whole [0, 1] range (and so all of ``b_sigma``) on
    the molecules the agent can actually reach."""
    return ((sa_zero - sa) / (sa_zero - 1.0)).clamp(0.0, 1.0)
