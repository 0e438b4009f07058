"""The molecules app's networks: the SA proxies (a GIN on the atom/bond graph, a Morgan
fingerprint MLP, a differentiable SMILES-token CNN) and the SMILES generators (a GRU, and a
recurrent LIF network trained through surrogate gradients)."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ...data.molecules import ATOM_FEATURES, BOND_FEATURES, MolGraph

__all__ = ["require_pyg", "GINProxy", "IndexedGraphs", "FingerprintMLP", "TokenProxy",
           "TokenGRUProxy", "ValidityWeightedProxy",
           "Probability",
           "SmilesModel", "SmilesGRU", "SpikingSmilesModel"]


def require_pyg():
    """``torch_geometric``, or an ImportError naming the extra."""
    try:
        import torch_geometric  # noqa: F401
        from torch_geometric import nn as gnn
    except ImportError as e:
        raise ImportError("the GIN proxy needs PyTorch Geometric: pip install "
                          f"'spikegrad[molecules]' ({e})") from None
    return gnn


def collate_graphs(graphs: Sequence[MolGraph]):
    """Graphs -> one disconnected graph: ``(x [N, F], edge_index [2, E], edge_attr [E, Fb],
    batch [N])`` with ``batch[n]`` the molecule of atom ``n``."""
    xs, eis, eas, batch, offset = [], [], [], [], 0
    for k, g in enumerate(graphs):
        xs.append(g.x)
        eis.append(g.edge_index + offset)
        eas.append(g.edge_attr)
        batch.append(torch.full((g.x.shape[0],), k, dtype=torch.long))
        offset += g.x.shape[0]
    return torch.cat(xs), torch.cat(eis, 1), torch.cat(eas), torch.cat(batch)


class GINProxy(nn.Module):
    """GIN with edge features (GINE, Hu et al. 2020) on the heavy-atom graph -> one score.

    ``layers`` GINE convolutions (each ``h <- h + MLP((1 + eps) h + sum_j relu(h_j + W e_ij))``,
    residual), then a readout of every layer's sum and mean over atoms. Both poolings because
    SA is a *mean* of fragment contributions minus penalties that grow with *counts* (atoms,
    rings, stereo centres).
    """

    def __init__(self, hidden: int = 128, layers: int = 4):
        super().__init__()
        gnn = require_pyg()
        self.embed = nn.Linear(ATOM_FEATURES, hidden)
        self.convs = nn.ModuleList(
            gnn.GINEConv(nn.Sequential(nn.Linear(hidden, hidden), nn.LayerNorm(hidden),
                                       nn.ReLU(), nn.Linear(hidden, hidden)),
                         train_eps=True, edge_dim=BOND_FEATURES) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.head = nn.Sequential(nn.Linear(2 * hidden * (layers + 1), hidden), nn.ReLU(),
                                  nn.Linear(hidden, 1))
        self._pool = (gnn.global_add_pool, gnn.global_mean_pool)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, batch: Tensor) -> Tensor:
        add, mean = self._pool
        h = self.embed(x)                                      # [N_atoms, H]
        # sums scaled by 1/10: molecules have ~10-50 atoms, this keeps sum and mean comparable
        reads = [add(h, batch) / 10, mean(h, batch)]
        for conv, norm in zip(self.convs, self.norms):
            h = h + torch.relu(norm(conv(h, edge_index, edge_attr)))
            reads += [add(h, batch) / 10, mean(h, batch)]
        return self.head(torch.cat(reads, 1)).squeeze(1)      # [B]


class IndexedGraphs(nn.Module):
    """``forward(index [B]) -> [B]``: a graph model applied to ``graphs[index]``, so that
    :func:`spikegrad.proxy.fit_proxy` (which batches a tensor of inputs) can fit it."""

    def __init__(self, model: nn.Module, graphs: Sequence[MolGraph]):
        super().__init__()
        self.model, self.graphs = model, list(graphs)

    def forward(self, index: Tensor) -> Tensor:
        device = next(self.model.parameters()).device
        parts = collate_graphs([self.graphs[i] for i in index.tolist()])
        return self.model(*(p.to(device) for p in parts))


class FingerprintMLP(nn.Module):
    """``log(1 + Morgan counts) [B, bits] -> [B]``: the baseline proxy."""

    def __init__(self, bits: int = 2048, hidden: int = 256, dropout: float = 0.2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(bits, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(1)


class TokenProxy(nn.Module):
    """A differentiable SA proxy on SMILES tokens: ``onehot [B, L, V] -> [B]``.

    The input is a one-hot (or relaxed, or straight-through) token matrix, so the gradient
    of the score reaches every token choice: the stand-in for the GIN, whose input (a parsed
    graph) a generator cannot differentiate. Token embedding as a matrix product, two
    1-D convolutions (receptive field 9 tokens: an atom and its neighbours in the string),
    then the sum and the mean over positions (masked by the ``<pad>`` channel) and an MLP.
    """

    def __init__(self, vocab_size: int, hidden: int = 128, pad: int = 0):
        super().__init__()
        self.pad = pad
        self.embed = nn.Linear(vocab_size, hidden, bias=False)
        self.conv = nn.Sequential(nn.Conv1d(hidden, hidden, 5, padding=2), nn.ReLU(),
                                  nn.Conv1d(hidden, hidden, 5, padding=2), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, onehot: Tensor) -> Tensor:
        if onehot.dim() != 3:
            raise ValueError(f"TokenProxy: expected a one-hot [B, L, V], got shape "
                             f"{list(onehot.shape)}")
        live = 1.0 - onehot[..., self.pad]                      # [B, L]: not padding
        h = self.conv(self.embed(onehot).transpose(1, 2))       # [B, H, L]
        h = h * live.unsqueeze(1)
        total = h.sum(2)
        mean = total / live.sum(1, keepdim=True).clamp_min(1.0)
        return self.head(torch.cat([total / 10, mean], 1)).squeeze(1)


class TokenGRUProxy(nn.Module):
    """A differentiable SA proxy on tokens that reads the whole string: ``onehot [B, L, V] ->
    [B]``, a bidirectional GRU over the (one-hot, relaxed or straight-through) tokens, then
    the masked sum and mean of its states and an MLP. Unlike :class:`TokenProxy`'s 9-token
    window it can see what makes a SMILES unparsable (a ring bond or a branch opened and
    never closed, tens of tokens apart), which decides the proxy score ``invalid_sa``."""

    def __init__(self, vocab_size: int, hidden: int = 64, pad: int = 0):
        super().__init__()
        self.pad = pad
        self.embed = nn.Linear(vocab_size, hidden, bias=False)
        self.rnn = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.Linear(4 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, onehot: Tensor) -> Tensor:
        if onehot.dim() != 3:
            raise ValueError(f"TokenGRUProxy: expected a one-hot [B, L, V], got shape "
                             f"{list(onehot.shape)}")
        live = (1.0 - onehot[..., self.pad]).unsqueeze(2)       # [B, L, 1]: not padding
        # padding tokens are zeroed, not packed: packing would cut the gradient path of the
        # relaxed <eos>/<pad> choice, and the backward direction then starts from zeros
        h, _ = self.rnn(self.embed(onehot) * live)              # [B, L, 2H]
        h = h * live
        total = h.sum(1)
        mean = total / live.sum(1).clamp_min(1.0)
        return self.head(torch.cat([total / 10, mean], 1)).squeeze(1)


class ValidityWeightedProxy(nn.Module):
    """A two-part token proxy: ``onehot [B, L, V] -> [B]``, the expected oracle score
    ``p(x) * sa(x) + (1 - p(x)) * invalid_sa`` of a string ``x``, where ``validity(x)`` in
    [0, 1] is the probability that the string parses and ``sa(x)`` the SA of the molecule it
    would be.

    One regressor fitted to every string (invalid ones at ``invalid_sa``) spends its fit on
    the jump between parsable and unparsable strings and does not rank the valid molecules;
    fitted on valid molecules only, ``sa`` does, and ``validity`` carries the rest.

    Args:
        validity: ``onehot [B, L, V] -> [B]`` probabilities (e.g. a token network followed
            by a sigmoid); None: every string parses (``p = 1``, SELFIES).
        sa: ``onehot [B, L, V] -> [B]`` SA of a valid molecule (1 easy .. 10 hard).
        invalid_sa: the score the oracle charges a string that does not parse.
    """

    def __init__(self, validity: Optional[nn.Module], sa: nn.Module,
                 invalid_sa: float = 10.0):
        super().__init__()
        self.validity, self.sa, self.invalid_sa = validity, sa, float(invalid_sa)

    def forward(self, onehot: Tensor, invalid_extra: float = 0.0) -> Tensor:
        """``invalid_extra``: SA units charged on top of ``invalid_sa`` for the chance of not
        parsing (a weight on validity for an optimiser of this score; 0: the expected oracle
        score)."""
        if self.validity is None:
            return self.sa(onehot)
        p = self.validity(onehot)
        return p * self.sa(onehot) + (1.0 - p) * (self.invalid_sa + invalid_extra)


class Probability(nn.Module):
    """``net(x) -> sigmoid(net(x))``: a score network turned into a probability ``[B]``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.net(x))


class SmilesModel(nn.Module):
    """A character-level SMILES language model ``p(x_t | x_<t)``; subclasses give the
    recurrent core ``core(xs [T, B, E], state) -> (logits [T, B, V], state)``.

    Tokens enter as one-hot rows times the embedding matrix, which equals an embedding
    look-up for ids and lets straight-through one-hot samples carry a gradient (arm A).
    Sequences start with ``<bos>``; sampling stops a sequence at its ``<eos>``.
    """

    def __init__(self, vocab_size: int, embed: int = 64, bos: int = 1, eos: int = 2,
                 pad: int = 0):
        super().__init__()
        self.vocab_size, self.bos, self.eos, self.pad = vocab_size, bos, eos, pad
        self.embed = nn.Parameter(torch.randn(vocab_size, embed) * 0.1)
        # <pad> and <bos> are never a next token: masked out of every distribution, so a
        # sample cannot emit them and sampled and teacher-forced log-probs agree
        never = torch.zeros(vocab_size)
        never[[pad, bos]] = -math.inf
        self.register_buffer("never", never, persistent=False)

    def core(self, xs: Tensor, state=None):
        raise NotImplementedError

    def step(self, onehot: Tensor, state: Optional[Tensor] = None):
        """One step: ``onehot [B, V]`` (the previous token) -> ``(logits [B, V], state)``."""
        logits, state = self.core((onehot @ self.embed).unsqueeze(0), state)
        return logits[0] + self.never, state

    def forward(self, ids: Tensor) -> Tensor:
        """Teacher forcing: ``ids [T, B]`` -> next-token ``logits [T, B, V]`` (time-major)."""
        logits, _ = self.core(self.embed[ids])
        return logits + self.never

    def log_probs(self, seqs: Tensor) -> Tensor:
        """``seqs [B, L]`` (``<bos>`` first, ``<pad>`` after ``<eos>``) -> per-step log-probs
        ``[L - 1, B]`` of ``seqs[:, 1:]``, zero at padding (sum over steps: the sequence's)."""
        ids = seqs.T                                            # [L, B]
        logp = self(ids[:-1]).log_softmax(-1)                   # [L-1, B, V]
        step = logp.gather(2, ids[1:].unsqueeze(2)).squeeze(2)  # [L-1, B]
        # where, not a product: <pad> has log-prob -inf, and -inf * 0 is NaN
        return step.masked_fill(ids[1:] == self.pad, 0.0)

    def nll(self, seqs: Tensor) -> Tensor:
        """Mean negative log-likelihood per token of ``seqs [B, L]`` (the pretraining loss)."""
        steps = self.log_probs(seqs)
        return -steps.sum() / (seqs[:, 1:] != self.pad).sum()

    def sample(self, n: int, max_len: int, generator: Optional[torch.Generator] = None,
               straight_through_tau: Optional[float] = None, feed_gradient: bool = False):
        """Draw ``n`` sequences of at most ``max_len`` tokens (plus ``<eos>``).

        Returns ``(seqs [n, max_len + 2], log_probs [max_len + 1, n], onehot)``: ``seqs``
        starts with ``<bos>`` and is padded after ``<eos>`` (a sequence that reaches
        ``max_len`` without ``<eos>`` is cut, and will usually not parse); ``log_probs`` are
        the per-step log-probabilities of the drawn tokens with their graph (zero after
        ``<eos>``). With ``straight_through_tau``, tokens are drawn by straight-through
        Gumbel-softmax at that temperature and ``onehot [n, max_len + 1, V]`` is their
        sequence with its gradient (``<pad>`` rows after ``<eos>``, built without gradient);
        otherwise ``onehot`` is None. ``feed_gradient``: the one-hot fed back as the next
        step's input keeps its gradient too (backpropagation through the whole recurrence of
        sampled tokens); otherwise it is detached and each token's gradient reaches only the
        distribution it was drawn from.
        """
        from ...proxy import gumbel_softmax_st
        device = self.embed.device
        prev = torch.zeros(n, self.vocab_size, device=device)
        prev[:, self.bos] = 1.0
        alive = torch.ones(n, dtype=torch.bool, device=device)
        state, ids, logps, hots = None, [], [], []
        pad_row = torch.zeros(self.vocab_size, device=device)
        pad_row[self.pad] = 1.0
        for _ in range(max_len + 1):
            logits, state = self.step(prev, state)
            logp = logits.log_softmax(-1)
            if straight_through_tau is None:
                tok = torch.multinomial(logp.exp().detach(), 1, generator=generator).squeeze(1)
                hot = torch.nn.functional.one_hot(tok, self.vocab_size).to(logp.dtype)
            else:
                hot = gumbel_softmax_st(logits, straight_through_tau, generator=generator)
                tok = hot.detach().argmax(-1)
            keep = alive.unsqueeze(1).to(hot.dtype)
            hots.append(hot * keep + pad_row * (1 - keep))
            ids.append(torch.where(alive, tok, torch.full_like(tok, self.pad)))
            logps.append(logp.gather(1, tok.unsqueeze(1)).squeeze(1).masked_fill(~alive, 0.0))
            alive = alive & (tok != self.eos)
            prev = hot if feed_gradient else hot.detach()
            if not bool(alive.any()):
                break
        seqs = torch.full((n, max_len + 2), self.pad, dtype=torch.long, device=device)
        seqs[:, 0] = self.bos
        seqs[:, 1:1 + len(ids)] = torch.stack(ids, 1)
        log_probs = torch.zeros(max_len + 1, n, device=device)
        log_probs = torch.cat([torch.stack(logps), log_probs[len(logps):]])
        onehot = None
        if straight_through_tau is not None:
            rest = pad_row.expand(n, max_len + 1 - len(hots), -1)
            onehot = torch.cat([torch.stack(hots, 1), rest], 1)
        return seqs, log_probs, onehot


class SmilesGRU(SmilesModel):
    """:class:`SmilesModel` with a ``layers`` x ``hidden`` GRU core and a linear readout."""

    def __init__(self, vocab_size: int, hidden: int = 256, layers: int = 2, embed: int = 64,
                 bos: int = 1, eos: int = 2, pad: int = 0):
        super().__init__(vocab_size, embed, bos, eos, pad)
        self.rnn = nn.GRU(embed, hidden, layers)
        self.out = nn.Linear(hidden, vocab_size)

    def core(self, xs: Tensor, state=None):
        y, state = self.rnn(xs, state)                          # [T, B, H]
        return self.out(y), state


class SpikingSmilesModel(SmilesModel):
    """:class:`SmilesModel` with a recurrent LIF core trained through surrogate gradients:
    ``Linear -> Recurrent(LIF) -> Linear`` readout of the spikes, one simulation step per
    token (the same machinery as every SNN of the library, on a language-modelling task)."""

    def __init__(self, vocab_size: int, hidden: int = 512, embed: int = 64,
                 tau_mem: float = 5e-3, dt: float = 1e-3, bos: int = 1, eos: int = 2,
                 pad: int = 0, backend: str = "auto"):
        super().__init__(vocab_size, embed, bos, eos, pad)
        from ... import nn as snn
        self.inp = snn.Linear(embed, hidden)
        self.rec = snn.Recurrent(snn.LIF(hidden, tau_mem=tau_mem, dt=dt, backend=backend),
                                 autapses=False)
        self.out = snn.Linear(hidden, vocab_size)
        with torch.no_grad():
            # token embeddings of order 1, so that input currents reach the threshold of 1
            # and the network spikes from the start (at 0.1 it is silent: no gradient)
            self.embed.mul_(10.0)

    def core(self, xs: Tensor, state=None):
        zs, state = self.rec(self.inp(xs), state)               # spikes [T, B, H]
        return self.out(zs), state
