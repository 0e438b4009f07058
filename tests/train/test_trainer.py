import io
import json
import math
import random
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from spikegrad.train import ObjectiveOutput, Trainer, make_optimizer, seed_everything
from spikegrad.train.checkpoint import list_checkpoints

T, B, D_IN, D_OUT = 7, 3, 4, 2


class LeakyLinear(nn.Module):
    """v_t = a * v_{t-1} + W x_t: the smallest stateful model with a gradient through time."""

    def __init__(self, n_in=D_IN, n_out=D_OUT, a=0.8, dropout=0.0, dtype=torch.float64, seed=None):
        super().__init__()
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(n_out, n_in, generator=gen, dtype=dtype) / n_in**0.5)
        self.a = a
        self.dropout = nn.Dropout(dropout)

    def forward(self, xs, state=None):
        cur = self.dropout(xs) @ self.weight.T  # [T, B, n_out], one GEMM for all steps
        v = torch.zeros_like(cur[0]) if state is None else state
        vs = []
        for c in cur:
            v = self.a * v + c
            vs.append(v)
        return torch.stack(vs), v


def mse_objective(model, xs, ys, state):
    vs, state = model(xs, state)
    return ObjectiveOutput(((vs - ys) ** 2).mean(), state)


def batch(seed=0, steps=T, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(steps, B, D_IN, generator=gen, dtype=dtype), torch.randn(
        steps, B, D_OUT, generator=gen, dtype=dtype
    )


def sgd_trainer(model, lr=0.1, **kwargs):
    kwargs.setdefault("progress", False)
    return Trainer(model, torch.optim.SGD(model.parameters(), lr=lr), mse_objective, **kwargs)


# ---------------------------------------------------------------- TBPTT


@pytest.mark.parametrize("k", [T, T + 3])
def test_tbptt_with_k_at_least_T_is_full_bptt(k):
    data = [batch()]
    full, trunc = LeakyLinear(seed=1), LeakyLinear(seed=1)
    h_full = sgd_trainer(full).fit(data, 1)
    h_trunc = sgd_trainer(trunc, tbptt=k).fit(data, 1)
    assert torch.equal(full.weight.grad, trunc.weight.grad)
    assert torch.equal(full.weight, trunc.weight)
    assert h_full[0]["train_loss"] == h_trunc[0]["train_loss"]


def test_tbptt_chunks_match_hand_written_and_differ_from_full():
    k = 3  # chunks of 3, 3, 1 steps
    xs, ys = batch()
    trained = LeakyLinear(seed=1)
    history = sgd_trainer(trained, lr=0.0, tbptt=k).fit([(xs, ys)], 1)

    manual = LeakyLinear(seed=1)
    state, total = None, 0.0
    for x, y in zip(xs.split(k), ys.split(k)):
        vs, state = manual(x, state)
        loss = ((vs - y) ** 2).mean()
        loss.backward()
        state = state.detach()
        total += loss.item()
    torch.testing.assert_close(trained.weight.grad, manual.weight.grad, rtol=0, atol=1e-12)
    assert history[0]["train_loss"] == pytest.approx(total, rel=1e-12)

    full = LeakyLinear(seed=1)
    sgd_trainer(full, lr=0.0).fit([(xs, ys)], 1)
    assert not torch.allclose(full.weight.grad, trained.weight.grad, atol=1e-6)


def test_tbptt_splits_per_step_targets_only():
    seen = []

    def objective(model, xs, targets, state):
        seen.append((xs.shape[0], tuple(targets.shape)))
        vs, state = model(xs, state)
        return ObjectiveOutput(vs.mean() * targets.double().mean(), state)

    xs, ys = batch()
    model = LeakyLinear(seed=1)
    trainer = Trainer(
        model, torch.optim.SGD(model.parameters(), lr=0.1), objective, tbptt=4, progress=False
    )
    trainer.fit([(xs, ys)], 1)
    assert seen == [(4, (4, B, D_OUT)), (3, (3, B, D_OUT))]

    seen.clear()
    labels = torch.arange(T)  # per-sample labels whose length equals T must not be split
    xs_square = torch.randn(T, T, D_IN, dtype=torch.float64)
    trainer.fit([(xs_square, labels)], 2)
    assert seen == [(4, (T,)), (3, (T,))]


def test_tbptt_validation():
    model = LeakyLinear(seed=1)
    for bad in (0, -2):
        with pytest.raises(ValueError, match="tbptt"):
            sgd_trainer(model, tbptt=bad)
    for bad in (2.5, True, "4"):
        with pytest.raises(TypeError, match="tbptt"):
            sgd_trainer(model, tbptt=bad)
    trainer = sgd_trainer(model, tbptt=2)
    xs, ys = batch()
    with pytest.raises(ValueError, match=r"time-major tensor \[T, B"):
        trainer.fit([((xs, xs), ys)], 1)
    with pytest.raises(ValueError, match=r"time-major tensor \[T, B"):
        trainer.fit([(xs[:, 0, 0], ys)], 1)


# ---------------------------------------------------------------- guard and clipping


def test_non_finite_loss_raises_without_stepping():
    seen = {}

    def objective(model, xs, ys, state):
        out = mse_objective(model, xs, ys, state)
        if len(seen) == 1:  # second batch: the weights now are those after the first step
            seen["before"] = model.weight.detach().clone()
            return ObjectiveOutput(out.loss * math.nan, out.state)
        seen["first"] = True
        return out

    model = LeakyLinear(seed=1)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), objective, progress=False)
    with pytest.raises(FloatingPointError, match=r"nan at epoch 1, batch index 1"):
        trainer.fit([batch(0), batch(1), batch(2)], 1)
    assert torch.equal(model.weight, seen["before"])
    assert trainer.step == 1


def test_grad_clip_logs_pre_clip_norm_and_clips():
    xs, ys = batch()
    ref = LeakyLinear(seed=1)
    mse_objective(ref, xs, ys, None).loss.backward()
    pre_clip = ref.weight.grad.norm().item()
    clip = pre_clip / 10

    model = LeakyLinear(seed=1)
    trainer = sgd_trainer(model, lr=0.5, grad_clip=clip)
    post_clip = []
    trainer.optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: post_clip.append(model.weight.grad.norm().item())
    )
    record = trainer.fit([(xs, ys)], 1)[0]

    assert record["grad_norm_mean"] == pytest.approx(pre_clip, rel=1e-12)
    assert record["grad_norm_max"] == pytest.approx(pre_clip, rel=1e-12)
    assert post_clip[0] <= clip * (1 + 1e-6)
    expected = ref.weight.detach() - 0.5 * ref.weight.grad * clip / pre_clip
    torch.testing.assert_close(model.weight.detach(), expected, rtol=1e-6, atol=1e-12)


def test_grad_norm_is_logged_without_clipping():
    data = [batch(0), batch(1)]
    norms = []
    ref = LeakyLinear(seed=1)
    for xs, ys in data:
        ref.zero_grad()
        mse_objective(ref, xs, ys, None).loss.backward()
        norms.append(ref.weight.grad.norm().item())
        with torch.no_grad():
            ref.weight -= 0.1 * ref.weight.grad
    record = sgd_trainer(LeakyLinear(seed=1)).fit(data, 1)[0]
    assert record["grad_norm_mean"] == pytest.approx(sum(norms) / 2, rel=1e-10)
    assert record["grad_norm_max"] == pytest.approx(max(norms), rel=1e-10)


# ---------------------------------------------------------------- log, scheduler, metrics, evaluate


def test_jsonl_log_and_scheduler_steps_once_per_epoch(tmp_path):
    model = LeakyLinear(seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)

    def objective(model, xs, ys, state):
        out = mse_objective(model, xs, ys, state)
        return ObjectiveOutput(
            out.loss, out.state, {"mae": (model(xs)[0] - ys).abs().mean(), "n": xs.shape[1]}
        )

    log = tmp_path / "logs" / "train.jsonl"
    trainer = Trainer(
        model,
        opt,
        objective,
        scheduler=sched,
        log_path=log,
        progress=False,
        evaluate=lambda m: {"val_score": 1.5},
    )
    history = trainer.fit([batch(0), batch(1)], 3)

    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines == history == trainer.history
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert [r["step"] for r in lines] == [2, 4, 6]
    assert [r["lr"] for r in lines] == pytest.approx([0.1, 0.05, 0.025])
    assert sched.last_epoch == 3
    assert list(lines[0]) == [
        "epoch",
        "step",
        "train_loss",
        "lr",
        "grad_norm_mean",
        "grad_norm_max",
        "seconds",
        "train_mae",
        "val_score",
    ]
    assert all(r["seconds"] >= 0 and r["val_score"] == 1.5 for r in lines)

    # A second fit continues to 4 epochs; the log still mirrors the history.
    trainer.fit([batch(0), batch(1)], 4)
    assert [json.loads(line) for line in log.read_text().splitlines()] == trainer.history
    assert len(trainer.history) == 4


def test_epoch_metrics_are_weighted_by_n_else_by_batch_count():
    values = iter([(1.0, 1.0), (4.0, 3.0)])  # (metric, n) per batch
    weighted = {}

    def objective(model, xs, ys, state):
        metric, n = next(values)
        out = mse_objective(model, xs, ys, state)
        weighted.setdefault("losses", []).append(out.loss.item())
        return ObjectiveOutput(out.loss, out.state, {"m": metric, "n": n})

    model = LeakyLinear(seed=1)
    record = Trainer(
        model, torch.optim.SGD(model.parameters(), lr=0.0), objective, progress=False
    ).fit([batch(0), batch(1)], 1)[0]
    l0, l1 = weighted["losses"]
    assert record["train_m"] == pytest.approx((1.0 * 1 + 4.0 * 3) / 4)
    assert record["train_loss"] == pytest.approx((l0 * 1 + l1 * 3) / 4)
    assert "train_n" not in record

    def unweighted(model, xs, ys, state):
        out = mse_objective(model, xs, ys, state)
        return ObjectiveOutput(out.loss, out.state, {"m": torch.tensor(xs[0, 0, 0].item())})

    data = [batch(0), batch(1)]
    record = _trainer_with(unweighted).fit(data, 1)[0]
    assert record["train_m"] == pytest.approx(
        (data[0][0][0, 0, 0] + data[1][0][0, 0, 0]).item() / 2
    )


def test_evaluate_runs_in_eval_mode_without_grad():
    seen = {}

    def evaluate(model):
        seen["training"] = model.training
        seen["grad"] = torch.is_grad_enabled()
        return {"val_loss": torch.tensor(0.25)}

    model = LeakyLinear(seed=1)
    record = sgd_trainer(model, evaluate=evaluate).fit([batch()], 1)[0]
    assert seen == {"training": False, "grad": False}
    assert model.training
    assert record["val_loss"] == 0.25

    with pytest.raises(ValueError, match="clashes"):
        sgd_trainer(LeakyLinear(seed=1), evaluate=lambda m: {"lr": 1.0}).fit([batch()], 1)
    with pytest.raises(TypeError, match="evaluate"):
        sgd_trainer(LeakyLinear(seed=1), evaluate=lambda m: [1.0]).fit([batch()], 1)


# ---------------------------------------------------------------- checkpoints and exact resume


def time_major(samples):
    xs, ys = torch.utils.data.default_collate(samples)  # [B, T, ...]
    return xs.transpose(0, 1), ys.transpose(0, 1)  # [T, B, ...]


def build_run(init_seed, checkpoint_dir=None, log_path=None, **trainer_kwargs):
    """All new objects: dropout model, Adam, StepLR, shuffled loader with its own generator."""
    seed_everything(init_seed)
    gen = torch.Generator().manual_seed(1234)
    data = TensorDataset(
        torch.linspace(-1, 1, 10 * 5 * D_IN).reshape(10, 5, D_IN).float(),
        torch.linspace(1, -1, 10 * 5 * D_OUT).reshape(10, 5, D_OUT).float().cos(),
    )
    loader = DataLoader(data, batch_size=4, shuffle=True, generator=gen, collate_fn=time_major)
    model = LeakyLinear(dropout=0.3, dtype=torch.float32)
    opt = make_optimizer("adam", model, lr=0.05)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)

    def objective(model, xs, ys, state):
        out = mse_objective(model, xs, ys, state)
        # numpy and python RNG draws: a resume that forgot to restore them changes the loss
        jitter = 1e-3 * float(np.random.rand()) + 1e-3 * random.random()
        return ObjectiveOutput(out.loss + jitter, out.state, {"n": xs.shape[1]})

    def evaluate(model):
        return {"val_noise": torch.rand(()).item()}

    trainer = Trainer(
        model,
        opt,
        objective,
        scheduler=sched,
        evaluate=evaluate,
        progress=False,
        checkpoint_dir=checkpoint_dir,
        log_path=log_path,
        **trainer_kwargs,
    )
    return trainer, loader


def _strip_seconds(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


@pytest.fixture
def uninterrupted():
    trainer, loader = build_run(0)
    history = trainer.fit(loader, 3)
    return trainer.model.weight.detach().clone(), _strip_seconds(history)


def test_exact_resume_from_latest(tmp_path, uninterrupted):
    weight, history = uninterrupted
    first, loader = build_run(0, checkpoint_dir=tmp_path)
    first.fit(loader, 2)
    assert [e for e, _ in list_checkpoints(tmp_path)] == [1, 2]

    log = tmp_path / "log.jsonl"
    log.write_text("stale\n")
    resumed, fresh_loader = build_run(
        99, checkpoint_dir=tmp_path, log_path=log
    )  # different init on purpose
    result = resumed.fit(fresh_loader, 3, resume="latest")
    assert torch.equal(resumed.model.weight, weight)
    assert _strip_seconds(result) == history
    assert resumed.epoch == 3 and resumed.step == 9
    assert [json.loads(line)["epoch"] for line in log.read_text().splitlines()] == [1, 2, 3]


def test_resume_falls_back_past_a_corrupt_checkpoint(tmp_path, uninterrupted):
    weight, history = uninterrupted
    first, loader = build_run(0, checkpoint_dir=tmp_path)
    first.fit(loader, 2)
    newest = tmp_path / "ckpt_epoch00002.pt"
    newest.write_bytes(newest.read_bytes()[:-50])
    resumed, fresh_loader = build_run(5, checkpoint_dir=tmp_path)
    with pytest.warns(UserWarning, match="ckpt_epoch00002"):
        result = resumed.fit(fresh_loader, 3, resume="latest")
    assert torch.equal(resumed.model.weight, weight)
    assert _strip_seconds(result) == history


def test_resume_from_explicit_path_and_mismatches(tmp_path):
    first, loader = build_run(0, checkpoint_dir=tmp_path)
    first.fit(loader, 1)
    resumed, fresh_loader = build_run(3)
    resumed.fit(
        fresh_loader, 1, resume=tmp_path / "ckpt_epoch00001.pt"
    )  # already done: nothing to train
    assert resumed.epoch == 1 and torch.equal(resumed.model.weight, first.model.weight)

    model = LeakyLinear(dropout=0.3, dtype=torch.float32)
    no_sched = Trainer(model, make_optimizer("adam", model, lr=0.05), mse_objective, progress=False)
    with pytest.raises(ValueError, match="scheduler"):
        no_sched.fit(fresh_loader, 2, resume=tmp_path / "ckpt_epoch00001.pt")
    with pytest.raises(ValueError, match="checkpoint_dir"):
        no_sched.fit(fresh_loader, 2, resume="latest")


def test_resume_latest_in_empty_folder_starts_fresh(tmp_path):
    trainer = sgd_trainer(LeakyLinear(seed=1), checkpoint_dir=tmp_path / "ckpts")
    assert len(trainer.fit([batch()], 1, resume="latest")) == 1
    assert [e for e, _ in list_checkpoints(tmp_path / "ckpts")] == [1]


def test_checkpoint_every_and_keep(tmp_path):
    trainer = sgd_trainer(
        LeakyLinear(seed=1), checkpoint_dir=tmp_path, checkpoint_every=2, keep_checkpoints=2
    )
    trainer.fit([batch()], 5)
    assert [e for e, _ in list_checkpoints(tmp_path)] == [4, 5]  # every 2nd epoch, plus the last
    trainer = sgd_trainer(
        LeakyLinear(seed=1), checkpoint_dir=tmp_path / "all", keep_checkpoints=None
    )
    trainer.fit([batch()], 4)
    assert [e for e, _ in list_checkpoints(tmp_path / "all")] == [1, 2, 3, 4]


# ---------------------------------------------------------------- bad input


def test_bad_constructor_arguments():
    model = LeakyLinear(seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for clip in (0, -1.0, math.inf):
        with pytest.raises(ValueError, match="grad_clip"):
            Trainer(model, opt, mse_objective, grad_clip=clip)
    with pytest.raises(TypeError, match="grad_clip"):
        Trainer(model, opt, mse_objective, grad_clip="1")
    with pytest.raises(TypeError, match="objective must be a callable"):
        Trainer(model, opt, "mse")
    with pytest.raises(TypeError, match="optimizer"):
        Trainer(model, "adam", mse_objective)
    with pytest.raises(TypeError, match="model"):
        Trainer(lambda x: x, opt, mse_objective)
    with pytest.raises(ValueError, match="checkpoint_every"):
        Trainer(model, opt, mse_objective, checkpoint_every=0)
    with pytest.raises(ValueError, match="keep_checkpoints"):
        Trainer(model, opt, mse_objective, keep_checkpoints=0)


def test_bad_epochs_and_batches():
    trainer = sgd_trainer(LeakyLinear(seed=1))
    with pytest.raises(ValueError, match="epochs"):
        trainer.fit([batch()], 0)
    with pytest.raises(TypeError, match="epochs"):
        trainer.fit([batch()], 1.5)
    with pytest.raises(ValueError, match=r"\(inputs, targets\) pairs"):
        trainer.fit([batch()[0]], 1)
    with pytest.raises(ValueError, match="no batches"):
        trainer.fit([], 1)


def _trainer_with(objective):
    model = LeakyLinear(seed=1)
    return Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), objective, progress=False)


def test_bad_objective_outputs():
    def returns_tuple(model, xs, ys, state):
        return tuple(mse_objective(model, xs, ys, state))

    def non_scalar(model, xs, ys, state):
        vs, state = model(xs, state)
        return ObjectiveOutput((vs - ys) ** 2, state)

    def no_grad(model, xs, ys, state):
        return ObjectiveOutput(mse_objective(model, xs, ys, state).loss.detach())

    def bad_metric(model, xs, ys, state):
        return ObjectiveOutput(mse_objective(model, xs, ys, state).loss, None, {"acc": "high"})

    def clashing_metric(model, xs, ys, state):
        return ObjectiveOutput(mse_objective(model, xs, ys, state).loss, None, {"loss": 1.0})

    with pytest.raises(TypeError, match="ObjectiveOutput"):
        _trainer_with(returns_tuple).fit([batch()], 1)
    with pytest.raises(ValueError, match=r"scalar.*loss\.mean\(\)"):
        _trainer_with(non_scalar).fit([batch()], 1)
    with pytest.raises(ValueError, match="does not require grad"):
        _trainer_with(no_grad).fit([batch()], 1)
    with pytest.raises(TypeError, match="'acc'"):
        _trainer_with(bad_metric).fit([batch()], 1)
    with pytest.raises(ValueError, match="built-in key"):
        _trainer_with(clashing_metric).fit([batch()], 1)


# ---------------------------------------------------------------- progress, device, seeding


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_with_and_without_tqdm(monkeypatch, capsys):
    pytest.importorskip("tqdm")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    sgd_trainer(LeakyLinear(seed=1), progress=True).fit([batch(), batch(1)], 1)
    assert "epoch 1" in terminal.getvalue()
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    assert len(sgd_trainer(LeakyLinear(seed=1), progress=True).fit([batch()], 1)) == 1
    assert capsys.readouterr().err == ""


def test_device_moves_nested_batches():
    def objective(model, inputs, targets, state):
        assert inputs["x"].device.type == "cpu"
        return mse_objective(model, inputs["x"], targets[0], state)

    xs, ys = batch()
    model = LeakyLinear(seed=1)
    trainer = Trainer(
        model, torch.optim.SGD(model.parameters(), lr=0.1), objective, device="cpu", progress=False
    )
    assert trainer.fit([({"x": xs}, (ys,))], 1)[0]["step"] == 1


def test_seed_everything():
    seed_everything(3)
    draws = (torch.rand(2), np.random.rand(), random.random())
    seed_everything(3)
    assert torch.equal(draws[0], torch.rand(2))
    assert draws[1:] == (np.random.rand(), random.random())
    try:
        seed_everything(3, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    with pytest.raises(ValueError, match="seed"):
        seed_everything(-1)
    with pytest.raises(TypeError, match="seed"):
        seed_everything(1.0)


# ---------------------------------------------------------------- mid-epoch checkpoints, signals


@pytest.mark.parametrize("name", ["ckpt_epoch00000_batch0000002.pt", "ckpt_epoch00001_batch0000001.pt",
                                  "ckpt_epoch00001_batch0000003.pt"])
def test_resume_from_a_mid_epoch_checkpoint_is_exact(tmp_path, uninterrupted, name):
    weight, history = uninterrupted
    first, loader = build_run(0, checkpoint_dir=tmp_path / "all", keep_checkpoints=None,
                              checkpoint_every_steps=2)
    assert _strip_seconds(first.fit(loader, 3)) == history  # saving changes nothing
    names = [p.name for _, p in list_checkpoints(tmp_path / "all")]
    # 3 batches per epoch: steps 2, 4, 6, 8 fall 2, 1, 3, 2 batches into epochs 1..3
    assert names == ["ckpt_epoch00000_batch0000002.pt", "ckpt_epoch00001.pt",
                     "ckpt_epoch00001_batch0000001.pt", "ckpt_epoch00001_batch0000003.pt",
                     "ckpt_epoch00002.pt", "ckpt_epoch00002_batch0000002.pt", "ckpt_epoch00003.pt"]
    (tmp_path / "crashed").mkdir()
    (tmp_path / "crashed" / name).write_bytes((tmp_path / "all" / name).read_bytes())
    resumed, fresh_loader = build_run(42, checkpoint_dir=tmp_path / "crashed")
    result = resumed.fit(fresh_loader, 3, resume="latest")
    assert torch.equal(resumed.model.weight, weight)
    assert _strip_seconds(result) == history
    assert resumed.step == 9


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signal_finishes_the_batch_saves_and_resumes_exactly(tmp_path, uninterrupted, sig):
    import os
    import signal

    from spikegrad.train import TrainingInterrupted

    weight, history = uninterrupted
    trainer, loader = build_run(0, checkpoint_dir=tmp_path)
    inner = trainer.objective
    calls = []

    def objective(model, xs, ys, state):
        calls.append(1)
        if len(calls) == 5:  # epoch 2, second batch
            os.kill(os.getpid(), getattr(signal, sig))
        return inner(model, xs, ys, state)

    trainer.objective = objective
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as info:
        trainer.fit(loader, 3)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert info.value.checkpoint == tmp_path / "ckpt_epoch00001_batch0000002.pt"
    assert info.value.exit_code == 128 + getattr(signal, sig)
    assert trainer.step == 5  # the batch in flight was finished, nothing after it
    resumed, fresh_loader = build_run(7, checkpoint_dir=tmp_path)
    result = resumed.fit(fresh_loader, 3, resume="latest")
    assert torch.equal(resumed.model.weight, weight)
    assert _strip_seconds(result) == history


class NaNAfter(nn.Module):
    """Passes v through; from call ``start`` on, multiplies by inf (overflow inside a layer)."""

    def __init__(self, start):
        super().__init__()
        self.start, self.calls = start, 0

    def forward(self, v):
        self.calls += 1
        return v * float("inf") if self.calls >= self.start else v


class TwoLayers(nn.Module):
    def __init__(self, start):
        super().__init__()
        self.leaky = LeakyLinear(seed=0)
        self.blowup = NaNAfter(start)

    def forward(self, xs, state=None):
        vs, state = self.leaky(xs, state)
        return self.blowup(vs), state


def test_nonfinite_loss_names_the_layer_that_overflowed():
    trainer = sgd_trainer(TwoLayers(start=1))
    with pytest.raises(FloatingPointError, match=r"loss is (nan|inf) at epoch 1, batch index 0 "
                       r"\(first non-finite value: output of layer 'blowup', NaNAfter\)"):
        trainer.fit([batch()], 1)
    assert trainer.step == 0


def test_nonfinite_parameter_is_named():
    model = LeakyLinear(seed=0)
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="parameter 'weight' is not finite"):
        sgd_trainer(model).fit([batch()], 1)


def test_nonfinite_gradient_names_the_parameter():
    model = LeakyLinear(seed=0)
    model.weight.register_hook(lambda g: g * float("inf"))
    with pytest.raises(FloatingPointError, match="non-finite gradient of weight"):
        sgd_trainer(model).fit([batch()], 1)


def test_skip_mode_drops_only_the_bad_updates():
    data = [batch(0), batch(1), batch(2)]
    # the model's 2nd forward call is batch index 1 of epoch 1; later calls overflow too
    model = TwoLayers(start=2)
    trainer = sgd_trainer(model, nonfinite="skip")
    reference = sgd_trainer(LeakyLinear(seed=0))
    reference.fit(data[:1], 1)
    with pytest.warns(RuntimeWarning, match="skipped a step: loss is"):
        history = trainer.fit(data, 1)
    assert history[0]["skipped_steps"] == 2 and trainer.step == 1
    assert torch.equal(model.leaky.weight, reference.model.weight)
    assert history[0]["train_loss"] == reference.history[0]["train_loss"]


def test_skip_mode_fails_when_every_batch_is_bad():
    trainer = sgd_trainer(TwoLayers(start=1), nonfinite="skip")
    with pytest.warns(RuntimeWarning), pytest.raises(FloatingPointError, match="every batch"):
        trainer.fit([batch(0), batch(1)], 1)


def test_bad_nonfinite_and_checkpoint_every_steps():
    with pytest.raises(ValueError, match="nonfinite must be one of"):
        sgd_trainer(LeakyLinear(), nonfinite="ignore")
    with pytest.raises(ValueError, match="checkpoint_every_steps"):
        sgd_trainer(LeakyLinear(), checkpoint_every_steps=0)


def test_progress_bar_stays_out_of_non_terminal_logs(capfd):
    """progress=True draws a bar on a terminal only: in a batch job's log every refresh would
    be a new line (pytest's captured stderr is not a terminal)."""
    pytest.importorskip("tqdm")
    trainer = sgd_trainer(LeakyLinear(), progress=True)
    trainer.fit([batch(s) for s in range(5)], epochs=2)
    err = capfd.readouterr().err
    assert "epoch 0" not in err and "it/s" not in err


# ---------------------------------------------------------------- silent misuse, progress lines


def test_tbptt_with_an_objective_that_drops_the_state_raises():
    def forgetful(model, xs, ys, state):
        vs, _ = model(xs, state)
        return ObjectiveOutput(((vs - ys) ** 2).mean())  # state=None: nothing carried

    model = LeakyLinear(seed=1)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), forgetful, tbptt=3,
                      progress=False)
    with pytest.raises(ValueError, match=r"tbptt=3.*state=None.*ObjectiveOutput\(loss, state\)"):
        trainer.fit([batch()], 1)
    # one chunk (K >= T) carries nothing, so None is fine there; so is tbptt=None
    Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), forgetful, tbptt=T,
            progress=False).fit([batch()], 1)
    Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), forgetful,
            progress=False).fit([batch()], 1)


def test_warns_when_the_loss_never_beats_the_first_epoch():
    from spikegrad.train.trainer import NotLearningWarning

    data = [batch(s) for s in range(3)]
    with pytest.warns(NotLearningWarning, match=r"not learning.*check lr \(epoch 1: 0\)"):
        sgd_trainer(LeakyLinear(seed=1), lr=0.0).fit(data, 5)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotLearningWarning)
        sgd_trainer(LeakyLinear(seed=1), lr=0.05).fit(data, 5)  # learns: no warning


def test_progress_prints_one_line_per_epoch_with_an_eta(capsys):
    from spikegrad.train.progress import Progress

    sgd_trainer(LeakyLinear(seed=1), progress=True,
                evaluate=lambda m: {"val_loss": 1.5}).fit([batch()], 3)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("epoch 1/3 train_loss ") and "val_loss 1.5" in lines[0]
    assert "ETA" in lines[0] and "ETA" not in lines[2]  # nothing left after the last
    # a shared Progress counts the epochs of several trainings as one run
    shared = Progress(4, "run")
    for _ in range(2):
        sgd_trainer(LeakyLinear(seed=1), progress=shared).fit([batch()], 2)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" train_loss")[0] for line in lines] == [
        "run 1/4 epoch 1/2", "run 2/4 epoch 2/2", "run 3/4 epoch 1/2", "run 4/4 epoch 2/2"]
    sgd_trainer(LeakyLinear(seed=1), progress=Progress(2, "x", enabled=False)).fit([batch()], 2)
    assert capsys.readouterr().out == ""


def _spiking_net(seed=1):
    import spikegrad as sg
    torch.manual_seed(seed)
    net = sg.nn.Sequential(sg.nn.Linear(D_IN, 8), sg.nn.Recurrent(sg.nn.LIF(8)),
                           sg.nn.Linear(8, D_OUT), sg.nn.LI(D_OUT)).double()
    with torch.no_grad():
        net[0].weight.mul_(4.0)  # spikes in most steps' neighbourhood: a gradient to cut
    return net


def test_tbptt_whole_mode_equals_chunks_for_a_per_step_loss():
    steps, k = 23, 5
    xs, ys = batch(steps=steps)

    def objective(model, x, y, state):  # each chunk adds its share: the chunks sum to the whole
        out, state = model(x, state)
        return ObjectiveOutput(((out - y) ** 2).sum() / (steps * B), state)

    grads, losses = {}, {}
    for mode in ("chunks", "whole", "full"):
        net = _spiking_net()
        trainer = Trainer(net, torch.optim.SGD(net.parameters(), lr=0.0), objective,
                          tbptt=None if mode == "full" else k,
                          tbptt_mode="chunks" if mode == "full" else mode, progress=False)
        losses[mode] = trainer.fit([(xs, ys)], 1)[0]["train_loss"]
        grads[mode] = [p.grad.clone() for p in net.parameters()]
    for a, b in zip(grads["chunks"], grads["whole"]):
        torch.testing.assert_close(b, a, rtol=1e-11, atol=1e-14)
    assert losses["whole"] == pytest.approx(losses["chunks"], rel=1e-12)
    assert any(not torch.allclose(a, b, rtol=1e-3) for a, b in zip(grads["full"], grads["whole"]))


def test_tbptt_mode_validation():
    with pytest.raises(ValueError, match="tbptt_mode must be one of 'chunks', 'whole'"):
        sgd_trainer(_spiking_net(), tbptt=3, tbptt_mode="fused")
    # a plain nn.Module's own time loop is not cut: refused, not silently full BPTT
    with pytest.raises(ValueError, match="contains none"):
        sgd_trainer(LeakyLinear(seed=1), tbptt=3, tbptt_mode="whole")
    trainer = sgd_trainer(_spiking_net(), tbptt=3, tbptt_mode="whole")
    with pytest.raises(ValueError, match=r"time-major tensor \[T, B"):
        trainer.fit([([torch.zeros(3)], torch.zeros(3))], 1)
