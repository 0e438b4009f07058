"""The spiking decoder's two trainings, both run by :class:`spikegrad.train.Trainer` (log,
checkpoints, exact resume): offline SG-BPTT on random windows, and one online e-prop pass
over the training stream in time order."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import Tensor

from ...decoders import RandomWindows, RSNNDecoder
from ...learning import EProp, StreamingEProp
from ...train import ObjectiveOutput, Trainer, make_optimizer
from ...train.log import loggers_for
from .config import Config

__all__ = ["build_decoder", "train_bptt", "train_eprop", "StreamChunks", "StreamLearner",
           "make_stream", "cosine", "eprop_groups"]


def build_decoder(c: Config, counts: Tensor, velocity: Tensor) -> RSNNDecoder:
    """The spiking decoder of ``c`` for the training ``counts [T, N]`` and ``velocity
    [T, 2]`` (input and target normalisation); initialised from torch's global RNG (seeded
    by the caller)."""
    n_in = counts.shape[1]
    dec = RSNNDecoder(n_in, velocity.shape[1], c.hidden, dt=c.dt_ms * 1e-3,
                      tau_mem=c.tau_mem_ms * 1e-3,
                      tau_syn=c.tau_syn_ms * 1e-3 if c.tau_syn_ms else None,
                      tau_out=c.tau_out_ms * 1e-3, input_gain=c.input_gain)
    return dec.set_normalisation(velocity, counts)


def cosine(total: int, final: float, warmup: int = 0):
    """LR factor per scheduler step: linear warm-up, then cosine to ``final``."""
    def factor(step: int) -> float:
        ramp = min(1.0, (step + 1) / warmup) if warmup else 1.0
        progress = min(step, total) / max(total, 1)
        return ramp * (final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress)))
    return factor


def _bptt_objective(c: Config):
    dt = c.dt_ms * 1e-3
    burn = int(round(c.burn_in_ms / c.dt_ms))

    def objective(model, xs, ys, state):
        if c.input_dropout:                                   # torch's global RNG (checkpointed)
            keep = (torch.rand(xs.shape) >= c.input_dropout).to(xs.dtype)
            xs = xs * keep / (1.0 - c.input_dropout)
        outs, _ = model.forward_all(model.centre(xs))
        y, zs = outs[-1], outs[1]                             # [W, B, K], [W, B, H]
        mse = (y[burn:] - ys[burn:]).pow(2).mean()
        rate_hz = zs.mean((0, 1)) / dt                        # [H]
        loss = mse + c.rate_weight * (rate_hz - c.target_rate_hz).pow(2).mean()
        return ObjectiveOutput(loss, None, {"mse": float(mse.detach()),
                                            "rate_hz": float(rate_hz.mean().detach())})
    return objective


def train_bptt(c: Config, decoder: RSNNDecoder, counts: Tensor, velocity: Tensor,
               out: Optional[Path], resume: bool, progress) -> list:
    """Offline SG-BPTT: Adam on random ``window_s`` windows of the training part (batch
    ``batch_size``), MSE on the normalised velocity after the burn-in plus the rate penalty;
    ``bptt_steps`` steps in epochs of ``steps_per_epoch``. Returns the history."""
    window = int(round(c.window_s * 1e3 / c.dt_ms))
    epochs = max(1, math.ceil(c.bptt_steps / c.steps_per_epoch))
    loader = RandomWindows(counts, decoder.normalise(velocity), window, c.batch_size,
                           c.steps_per_epoch, seed=c.seed)
    opt = make_optimizer("adam", decoder.parameters(), lr=c.lr_bptt)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine(epochs, c.lr_final_frac, 1))
    trainer = Trainer(decoder, opt, _bptt_objective(c), scheduler=sched,
                      log_path=None if out is None else out / "log.jsonl",
                      loggers=() if out is None else loggers_for(c.log, out / "log.jsonl"),
                      checkpoint_dir=out, checkpoint_every=c.checkpoint_every,
                      keep_checkpoints=1, progress=progress)
    return trainer.fit(loader, epochs, resume="latest" if resume else None)


def eprop_groups(decoder: RSNNDecoder, lr: float, readout_frac: float) -> list:
    """Adam parameter groups of the e-prop pass: the input and recurrent weights at ``lr``,
    the readout (``W_out``, ``b_out``) at ``lr * readout_frac``.

    Why a separate rate: Adam moves every weight by about ``lr`` per update whatever its
    gradient's size, and the readout's weights all move with the sign of the same output
    error, so at one rate the readout swings the output most from update to update; with
    symmetric feedback (``B = W_out^T``) it also sets the hidden neurons' learning signals.
    That is the reading; what was measured is the effect on one pass: on seeds 10-12 test
    R² 0.759, 0.722, 0.772 at fraction 1; 0.775, 0.742, 0.784 at 0.3; 0.779, 0.740, 0.778
    at 0.1; 0.775, 0.747, 0.770 at 0.03."""
    hidden = [p for layer in decoder.layers[:2] for p in layer.parameters()]
    readout = list(decoder.layers[2].parameters())
    return [{"params": hidden, "lr": lr}, {"params": readout, "lr": lr * readout_frac}]


class StreamChunks:
    """A recording as consecutive chunks ``(counts [L, N], targets [L, K])`` in time order
    (one Trainer batch each)."""

    def __init__(self, counts: Tensor, targets: Tensor, chunk: int):
        self.counts, self.targets, self.chunk = counts, targets, chunk

    def __len__(self) -> int:
        return math.ceil(self.counts.shape[0] / self.chunk)

    def __iter__(self):
        for lo in range(0, self.counts.shape[0], self.chunk):
            yield self.counts[lo:lo + self.chunk], self.targets[lo:lo + self.chunk]


def make_stream(c: Config, decoder: RSNNDecoder, reg: Optional[float] = None
                ) -> StreamingEProp:
    """Streaming e-prop (symmetric feedback) on ``decoder``: loss ``1/2 sum (y - y*)^2`` on
    the normalised velocity, the rate regulariser ``reg`` (default ``eprop_reg``) towards
    ``target_rate_hz`` over each update window, the pseudo-derivative of slope
    ``eprop_beta``.

    The hidden neurons' surrogate is set to slope ``eprop_beta`` in place: the forward pass
    does not depend on it, only the eligibility traces do. e-prop's pseudo-derivative spans
    the whole distance to threshold (Bellec et al. 2020: a triangle of half-width
    ``v_th``); slope 1 keeps a quarter of the peak at one threshold's distance, where the
    slope BPTT trains with (10) has fallen to a quarter at a tenth of it and leaves most
    traces near zero."""
    neuron = decoder.layers[1].neuron
    neuron.surrogate = neuron.surrogate.with_beta(c.eprop_beta)
    dt = c.dt_ms * 1e-3
    ep = EProp.from_sequential(decoder, feedback="symmetric",
                               reg=c.eprop_reg if reg is None else reg,
                               rate_target=c.target_rate_hz * dt, loss_scale=1.0)
    return StreamingEProp(ep, backend="auto", rate_window="update")


class StreamLearner:
    """The e-prop pass as a Trainer learner: each batch is the next chunk of one stream
    (the state carries over), the weights are updated every ``update_every`` bins; its
    ``state_dict`` holds the stream's traces, so a resumed pass continues exactly."""

    def __init__(self, stream: StreamingEProp, update_every: int):
        self.stream, self.update_every = stream, update_every

    @torch.no_grad()
    def __call__(self, model, xs: Tensor, ys: Tensor, update) -> ObjectiveOutput:
        sq = 0.0
        for lo in range(0, xs.shape[0], self.update_every):
            y = self.stream.run(xs[lo:lo + self.update_every], ys[lo:lo + self.update_every])
            sq += float((y - ys[lo:lo + self.update_every]).pow(2).sum())
            self.stream.flush()
            update()
        mse = sq / ys.numel()
        return ObjectiveOutput(torch.tensor(mse), None, {"mse": mse})

    def state_dict(self) -> dict:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state)


def train_eprop(c: Config, decoder: RSNNDecoder, counts: Tensor, velocity: Tensor,
                out: Optional[Path], resume: bool, progress) -> Tuple[list, StreamingEProp]:
    """One online e-prop pass over the training stream in time order (batch 1): Adam
    (``lr_eprop``, the readout at ``lr_eprop * eprop_readout_lr_frac``, cosine over the
    pass), an update every ``update_every`` bins."""
    chunk = max(c.update_every, int(round(c.chunk_s * 1e3 / c.dt_ms)) // c.update_every
                * c.update_every)
    loader = StreamChunks(decoder.centre(counts).float(), decoder.normalise(velocity).float(),
                          chunk)
    stream = make_stream(c, decoder)
    opt = make_optimizer("adam", eprop_groups(decoder, c.lr_eprop, c.eprop_readout_lr_frac),
                         lr=c.lr_eprop)
    epochs = len(loader)
    warm = int(round(c.eprop_warmup_s / (chunk * c.dt_ms * 1e-3)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine(epochs, c.lr_final_frac, warm))
    trainer = Trainer(decoder, opt, learner=StreamLearner(stream, c.update_every),
                      scheduler=sched, log_path=None if out is None else out / "log.jsonl",
                      loggers=() if out is None else loggers_for(c.log, out / "log.jsonl"),
                      checkpoint_dir=out, checkpoint_every=c.checkpoint_every,
                      keep_checkpoints=1, progress=progress)

    class OnePass:
        """The stream, one chunk per epoch (epoch e trains on chunk e - 1)."""

        def __len__(self):
            return 1

        def __iter__(self):
            yield chunks[trainer.epoch]
    chunks = list(loader)
    history = trainer.fit(OnePass(), epochs, resume="latest" if resume else None)
    return history, stream

