"""The molecules app's configuration: the data, the two SA proxies compared (GIN and
fingerprint MLP), the SMILES generator and its pretraining, the token proxy of arm A, the two
fine-tuning arms and the evaluation."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ConfigError

__all__ = ["Config", "PROXY_SETS", "validate"]

#: the set on which the GIN and the fingerprint MLP are compared: ``nci`` (RDKit's NCI
#: first_5K.smi, 4991 molecules) or ``moses`` (the first ``proxy_limit`` MOSES training SMILES)
PROXY_SETS = ("nci", "moses")


@dataclass
class Config:
    """De novo design for synthetic accessibility: a learned proxy's gradient (arm A) against
    a policy gradient on the true oracle (arm B), from one pretrained SMILES prior."""

    seed: int = 0
    progress: bool = True
    # data: MOSES training SMILES (the molsets wheel), read in file order
    pretrain_smiles: int = 20000         # MOSES SMILES the prior is trained on (novelty reference)
    max_len: int = 60                    # longest SMILES in tokens (longer ones are dropped)
    #: what the generators (and arm A's token proxy) write: smiles (characters; a string may
    #: not parse) or selfies (SELFIES tokens, which always decode to a molecule; the
    #: selfies package of the molecules extra)
    tokens: str = "smiles"
    # proxies compared on held-out molecules (GIN vs Morgan-fingerprint MLP)
    proxy_set: str = "nci"               # one of PROXY_SETS: nci or moses
    proxy_limit: int = 0                 # first N molecules of proxy_set (0: all; moses needs > 0)
    val_fraction: float = 0.2            # held-out share of every proxy fit
    gin_hidden: int = 64                 # GIN width
    gin_layers: int = 3                  # GINE convolutions
    gin_epochs: int = 30                 # GIN training epochs (AdamW)
    gin_lr: float = 2e-3                 # GIN learning rate
    mlp_hidden: int = 256                # fingerprint MLP width (2 hidden layers)
    mlp_epochs: int = 40                 # fingerprint MLP training epochs (AdamW)
    mlp_lr: float = 1e-3                 # fingerprint MLP learning rate
    mlp_weight_decay: float = 1e-2       # fingerprint MLP decoupled weight decay
    # generator: a SMILES GRU pretrained by maximum likelihood (Adam, batches of 128, cosine)
    gen_hidden: int = 256                # GRU units per layer
    gen_layers: int = 1                  # GRU layers
    gen_epochs: int = 12                 # pretraining epochs over pretrain_smiles
    gen_lr: float = 3e-3                 # pretraining peak learning rate (cosine decay to 0)
    # optional spiking generator: a recurrent LIF network (one step per token) pretrained
    # like the GRU through surrogate gradients, reported next to it (not fine-tuned)
    spiking_epochs: int = 0              # its pretraining epochs (0: no spiking generator)
    spiking_hidden: int = 512            # its recurrent LIF neurons
    #: its LIF kernel backend (spikegrad.functional.lif_seq): auto (compiled where it pays,
    #: a one-off compile of tens of seconds), torch, numba or reference (the Python loop)
    spiking_backend: str = "auto"
    # arm A's differentiable proxy: a token network on one-hot tokens, fitted to the oracle's
    # scores of MOSES molecules after those the prior saw (each label is one oracle call)
    token_train: int = 3000              # oracle-labelled MOSES SMILES for the token proxy
    #: prior samples added to the token proxy's data, labelled by the oracle (a SMILES that
    #: does not parse: invalid_sa), so that the proxy has seen the strings arm A proposes
    token_samples: int = 1000
    #: the token proxy: cnn (two convolutions, a 9-token window) or gru (a bidirectional GRU
    #: over the whole string, which can see an unclosed ring or branch)
    token_arch: str = "gru"
    #: the token proxy as two token_arch networks: a validity classifier on every string and
    #: an SA regressor on the valid ones only, arm A minimising their expected oracle score
    #: p * SA + (1 - p) * invalid_sa (tokens=selfies: the regressor alone, p = 1); False:
    #: one regressor on every string
    token_split: bool = True
    #: small aromatics (aromatics.py: benzene with 0-3 small substituents, two phenyls joined
    #: by a linker; SA down to 1, below any MOSES molecule) drawn at random and labelled by
    #: arm A's oracle for its token proxy (each one an oracle call of arm A), so that the
    #: proxy has labels beyond the prior's region to point the agent to; 0: none
    easy_labels: int = 1000
    token_hidden: int = 64               # token proxy width
    token_epochs: int = 20               # token proxy training epochs (AdamW)
    token_lr: float = 1e-3               # token proxy learning rate
    # arm A: proxy gradient through straight-through Gumbel-softmax samples
    a_steps: int = 50                    # agent updates
    a_batch: int = 64                    # samples per update
    a_lr: float = 5e-4                   # agent learning rate (Adam)
    a_tau: float = 1.0                   # Gumbel-softmax temperature of the backward pass
    a_kl: float = 0.1                    # weight of the per-token KL(agent || prior) anchor
    #: extra SA units arm A's objective charges for the chance that a string does not parse:
    #: it minimises p * SA + (1 - p) * (invalid_sa + a_validity_weight) of the two-part proxy
    #: (0: its expected oracle score; no effect without token_split or with SELFIES)
    a_validity_weight: float = 0.0
    #: the sampled one-hot fed back into the GRU keeps its gradient (backprop through the
    #: recurrence of samples); False: each token's gradient reaches only its own distribution
    a_through_recurrence: bool = False
    #: active learning: every a_relabel_every updates (0: never) the oracle labels a_relabel
    #: fresh samples of the agent (arm A's oracle calls) and the token proxy trains
    #: a_relabel_epochs more epochs on all its labels, so it follows the agent's drift
    a_relabel_every: int = 25
    #: agent samples the oracle labels at each arm A refit
    a_relabel: int = 256
    #: epochs of each arm A token-proxy refit, over all its labels so far
    a_relabel_epochs: int = 2
    # arm B: REINVENT (augmented likelihood) with reward -SA from the true oracle
    b_steps: int = 300                   # agent updates
    b_batch: int = 64                    # samples (= oracle calls) per update
    b_lr: float = 5e-4                   # agent learning rate (Adam)
    b_sigma: float = 60.0                # nats per unit of the [0, 1] score (REINVENT's sigma)
    #: the SA at which the score (1 at SA 1) reaches 0; 10 spans the whole SA scale, on
    #: which the prior's molecules (SA 1.5-4.5) use only a third of the score's range
    b_sa_zero: float = 4.0
    b_replay: int = 16                   # remembered molecules replayed per update (0: none)
    b_replay_memory: int = 100           # best distinct molecules kept for replay
    #: a molecule earns its reward the first b_memory times it is sampled and 0 after
    #: (REINVENT's identical-molecule filter against collapse); 0: no filter
    b_memory: int = 3
    #: a molecule the identical-molecule filter zeroes (sampled more than b_memory times) is
    #: also dropped from the replay memory, so replay does not keep teaching what the agent
    #: already writes (REINVENT's filter applied to replay; for uniqueness)
    b_replay_forget: bool = False
    invalid_sa: float = 10.0             # SA charged to a SMILES that does not parse (the worst)
    # evaluation (samples are never counted as oracle calls of the arms)
    eval_samples: int = 1000             # samples drawn from prior and agents for the metrics
    eval_every: int = 25                 # agent updates between evaluations
    top_k: int = 100                     # the "top-k valid unique" of the SA floor
    grid: int = 12                       # molecules in each arm's grid figure


def validate(cfg: Config) -> Config:
    """Check every field (a :class:`~spikegrad.apps.config.ConfigError` naming the key)."""
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg must be a spikegrad.apps.molecules.Config, got "
                        f"{type(cfg).__name__}")
    c = cfg

    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ConfigError(msg)
    need(c.proxy_set in PROXY_SETS, f"proxy_set must be one of {', '.join(PROXY_SETS)}; got "
                                    f"{c.proxy_set!r}")
    need(c.tokens in ("smiles", "selfies"), f"tokens must be smiles or selfies; got "
                                            f"{c.tokens!r}")
    need(c.token_arch in ("cnn", "gru"), f"token_arch must be cnn or gru; got "
                                         f"{c.token_arch!r}")
    need(c.spiking_backend in ("auto", "reference", "torch", "numba"),
         f"spiking_backend must be auto, reference, torch or numba; got {c.spiking_backend!r}")
    need(c.proxy_set != "moses" or c.proxy_limit > 0,
         "proxy_set=moses needs proxy_limit > 0 (the MOSES training set has 1.58 M molecules); "
         "e.g. --set proxy_limit=5000")
    for key in ("pretrain_smiles", "max_len", "spiking_hidden", "gin_hidden", "gin_layers",
                "gin_epochs", "mlp_hidden", "mlp_epochs", "gen_hidden", "gen_layers",
                "gen_epochs", "token_hidden", "token_epochs", "a_relabel", "a_relabel_epochs",
                "a_steps", "a_batch", "b_steps", "b_batch", "b_replay_memory", "eval_every",
                "top_k"):
        need(getattr(c, key) >= 1, f"{key} must be >= 1; got {getattr(c, key)}")
    need(c.token_train >= 10, f"token_train must be >= 10 (a held-out fifth needs >= 2); got "
                              f"{c.token_train}")
    need(c.eval_samples >= c.top_k, f"eval_samples must be >= top_k={c.top_k}; got "
                                    f"{c.eval_samples}")
    for key in ("proxy_limit", "grid", "token_samples", "easy_labels", "b_memory",
                "spiking_epochs", "b_replay", "a_relabel_every"):
        need(getattr(c, key) >= 0, f"{key} must be >= 0; got {getattr(c, key)}")
    for key in ("gin_lr", "mlp_lr", "gen_lr", "token_lr", "a_lr", "a_tau", "b_lr", "b_sigma"):
        need(getattr(c, key) > 0, f"{key} must be > 0; got {getattr(c, key)}")
    for key in ("mlp_weight_decay", "a_kl", "a_validity_weight"):
        need(getattr(c, key) >= 0, f"{key} must be >= 0; got {getattr(c, key)}")
    need(0 < c.val_fraction < 1, f"val_fraction must be in (0, 1); got {c.val_fraction}")
    need(1 <= c.invalid_sa <= 10, f"invalid_sa must be in [1, 10] (the SA range); got "
                                  f"{c.invalid_sa}")
    need(1 < c.b_sa_zero <= 10, f"b_sa_zero must be in (1, 10] (the SA range); got "
                                f"{c.b_sa_zero}")
    need(0 <= c.seed < 2 ** 32, f"seed must be in [0, 2**32); got {c.seed}")
    return c
