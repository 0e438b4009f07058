"""The Trainer under torch.distributed: two gloo ranks (torch.multiprocessing.spawn, one
thread each) train a small spiking network in float64 and are checked against one process.

- a 2-rank step (plain, with TBPTT + clipping, and by a learner) gives the gradients and
  weights of one process stepping on the concatenated batch (1e-10: only the summation order
  differs);
- the epoch's loss and accuracy are summed over the ranks: rank 0 reports the full data set's;
- only rank 0 writes checkpoints and logs and prints progress;
- a 2-rank run stopped by SIGTERM on one rank mid-epoch, and one restarted from an epoch's
  checkpoint, resume exactly (every rank's RNG stream restored) and match an uninterrupted run;
- (slow) ``torchrun -m spikegrad.cli run`` writes one run folder and resumes in it.
"""

import io
import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import spikegrad as sg
from spikegrad.train import (CsvLogger, ObjectiveOutput, Trainer, TrainingInterrupted,
                             make_optimizer, seed_everything)
from spikegrad.train.checkpoint import list_checkpoints

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="needs torch.distributed")

WORLD, B, T, N_IN, N_OUT = 2, 4, 12, 6, 3


def dataset(n):
    g = torch.Generator().manual_seed(7)
    x = torch.rand(n, T, N_IN, generator=g, dtype=torch.float64)
    y = torch.randint(0, N_OUT, (n,), generator=g)
    return TensorDataset(x, y)


def time_major(samples):
    xs, ys = zip(*samples)
    return torch.stack(xs).transpose(0, 1), torch.stack(ys)  # [T, B, N_IN], [B]


def loader(ds, batch_size, shuffle=False):
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, collate_fn=time_major,
                      generator=torch.Generator().manual_seed(3) if shuffle else None)


def network(seed=0):
    torch.manual_seed(seed)
    return sg.nn.Sequential(sg.nn.Linear(N_IN, 16), sg.nn.LIF(16, tau_mem=5e-3, backend="torch"),
                            sg.nn.Linear(16, N_OUT), sg.nn.LI(N_OUT, backend="torch")).double()


def objective(model, xs, y, state, noise=0.0):
    if noise:  # draws from this rank's global RNG: a resume must restore each rank's own
        xs = xs + noise * torch.randn_like(xs)
    out, state = model(4.0 * xs, state)
    logits = out.sum(0)  # [B, N_OUT]
    correct = (logits.argmax(1) == y).double()
    # a mean over the rank's batch: DDP's average of the ranks' gradients is then the
    # gradient of the mean over the concatenated batch
    return ObjectiveOutput(F.cross_entropy(logits, y), state,
                           {"accuracy": correct.mean(), "n": len(y)})


def noisy(model, xs, y, state):
    return objective(model, xs, y, state, noise=0.1)


def grads_and_weights(trainer):
    params = list(trainer.model.parameters())
    return [p.grad.clone() for p in params], [p.detach().clone() for p in params]


def one_step(world_batch, **kwargs):
    """One Trainer step on the first ``world_batch`` samples (this rank's share of them)."""
    model = network()
    trainer = Trainer(model, make_optimizer("sgd", model, lr=0.5), objective, progress=False,
                      **kwargs)
    trainer.fit(loader(dataset(world_batch), B), 1)
    return grads_and_weights(trainer)


def autograd_learner(model, xs, y, update):
    """A learner that writes its gradients itself (here by autograd, so one process can check
    it) and applies them through the trainer's update()."""
    out = objective(model, xs, y, None)
    out.loss.backward()
    update()
    return ObjectiveOutput(out.loss.detach(), None, out.metrics)


def learner_step(world_batch):
    model = network()
    trainer = Trainer(model, make_optimizer("sgd", model, lr=0.5), learner=autograd_learner,
                      progress=False)
    trainer.fit(loader(dataset(world_batch), B), 1)
    return [p.detach().clone() for p in model.parameters()]


def strip_seconds(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def _join(rank, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)


def _steps_metrics_files(rank, port, out):
    _join(rank, port)  # the Trainer joins the group from torchrun's variables
    result = {"plain": one_step(WORLD * B),
              "tbptt": one_step(WORLD * B, tbptt=5, grad_clip=0.05),
              "learner": learner_step(WORLD * B)}
    # metrics over the full data set with frozen weights (lr=0), and the files written
    model = network()
    folder = out / f"rank{rank}"
    stdout, sys.stdout = sys.stdout, io.StringIO()
    try:
        trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), objective,
                          checkpoint_dir=folder / "ckpt", log_path=folder / "log.jsonl",
                          loggers=[CsvLogger(folder / "log.csv")],
                          evaluate=lambda m: {"val_score": float(m[0].weight.sum())})
        result["history"] = trainer.fit(loader(dataset(24), B, shuffle=True), 2)
        result["printed"] = sys.stdout.getvalue()
    finally:
        sys.stdout = stdout
    result["wrote"] = folder.exists()
    torch.save(result, out / f"result{rank}.pt")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Results of both ranks of one spawned job (read-only: each test only looks)."""
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_steps_metrics_files, args=(_free_port(), out), nprocs=WORLD, join=True)
    return out, [torch.load(out / f"result{r}.pt") for r in range(WORLD)]


@pytest.mark.parametrize("case, kwargs", [("plain", {}),
                                          ("tbptt", {"tbptt": 5, "grad_clip": 0.05})])
def test_a_two_rank_step_equals_one_process_on_the_concatenated_batch(two_ranks, case, kwargs):
    _, results = two_ranks
    # one process, one batch of both ranks' samples (the sampler deals them out alternately;
    # the order within a batch does not change a mean)
    model = network()
    trainer = Trainer(model, make_optimizer("sgd", model, lr=0.5), objective, progress=False,
                      **kwargs)
    trainer.fit(loader(dataset(WORLD * B), WORLD * B), 1)
    want_grads, want_weights = grads_and_weights(trainer)
    for rank in range(WORLD):
        grads, weights = results[rank][case]
        for got, want in zip(grads + weights, want_grads + want_weights, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert not torch.equal(want_weights[0], network()[0].weight)  # a step was taken


def test_a_learner_step_averages_its_gradients_over_the_ranks(two_ranks):
    _, results = two_ranks
    model = network()
    trainer = Trainer(model, make_optimizer("sgd", model, lr=0.5), learner=autograd_learner,
                      progress=False)
    trainer.fit(loader(dataset(WORLD * B), WORLD * B), 1)
    for rank in range(WORLD):
        for got, want in zip(results[rank]["learner"], model.parameters(), strict=True):
            torch.testing.assert_close(got, want.detach(), rtol=1e-10, atol=1e-10)


def test_the_epoch_metrics_are_those_of_the_full_data_set(two_ranks):
    _, results = two_ranks
    model, ds = network(), dataset(24)
    with torch.no_grad():
        out, _ = model(4.0 * ds.tensors[0].transpose(0, 1))
    logits = out.sum(0)
    want_loss = float(F.cross_entropy(logits, ds.tensors[1]))
    want_acc = float((logits.argmax(1) == ds.tensors[1]).double().mean())
    history = results[0]["history"]
    for record in history:  # lr=0: both epochs see the same weights
        assert record["train_loss"] == pytest.approx(want_loss, rel=1e-12)
        assert record["train_accuracy"] == pytest.approx(want_acc, rel=1e-12)
        assert record["val_score"] == pytest.approx(float(model[0].weight.detach().sum()), rel=1e-12)
    # 24 samples, 12 per rank, batches of 4: 3 steps per epoch
    assert [r["step"] for r in history] == [3, 6]
    assert strip_seconds(results[1]["history"]) == strip_seconds(history)


def test_only_rank_0_writes_files_and_shows_progress(two_ranks):
    out, results = two_ranks
    assert results[0]["wrote"] and not results[1]["wrote"]
    assert [e for e, _ in list_checkpoints(out / "rank0" / "ckpt")] == [1, 2]
    assert len((out / "rank0" / "log.jsonl").read_text().splitlines()) == 2
    assert len((out / "rank0" / "log.csv").read_text().splitlines()) == 3  # header + 2
    assert "epoch 2/2" in results[0]["printed"]
    assert results[1]["printed"] == ""


# ---------------------------------------------------------------- exact resume


def _run(rank, folder, seed, objective=noisy, epochs=3, resume=None):
    """A shuffled 3-epoch run with Adam, a scheduler and per-rank noise, seeded per rank."""
    seed_everything(seed + rank)
    model = network(seed)
    opt = make_optimizer("adam", model, lr=0.02)
    trainer = Trainer(model, opt, objective, progress=False, checkpoint_dir=folder,
                      keep_checkpoints=None,
                      scheduler=torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7))
    history = trainer.fit(loader(dataset(24), B, shuffle=True), epochs, resume=resume)
    return strip_seconds(history), [p.detach().clone() for p in model.parameters()]


def _kill_and_resume(rank, port, out):
    _join(rank, port)
    result = {"uninterrupted": _run(rank, out / "full", seed=0)}
    calls = []

    def killed(model, xs, y, state):
        calls.append(1)
        if rank == 0 and len(calls) == 5:  # epoch 2, its second batch: only rank 0 is told
            os.kill(os.getpid(), signal.SIGTERM)
        return noisy(model, xs, y, state)

    try:
        _run(rank, out / "killed", seed=0, objective=killed)
        result["interrupted"] = None
    except TrainingInterrupted as stop:
        result["interrupted"] = (str(stop.checkpoint), len(calls))
    # new processes would start from other seeds and weights: the checkpoint must set them
    result["resumed"] = _run(rank, out / "killed", seed=50, resume="latest")
    result["from_epoch"] = _run(rank, out / "full", seed=90,
                                resume=out / "full" / "ckpt_epoch00002.pt")
    torch.save(result, out / f"result{rank}.pt")


def test_b_a_killed_two_rank_run_resumes_exactly(tmp_path):
    mp.spawn(_kill_and_resume, args=(_free_port(), tmp_path), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"result{r}.pt") for r in range(WORLD)]
    history, weights = results[0]["uninterrupted"]
    assert len(history) == 3 and history[-1]["step"] == 9
    for rank in range(WORLD):
        # both ranks stopped after the same batch (the second of epoch 2) and got rank 0's file
        assert results[rank]["interrupted"] == (
            str(tmp_path / "killed" / "ckpt_epoch00001_batch0000002.pt"), 5)
        for run in ("resumed", "from_epoch"):
            got_history, got_weights = results[rank][run]
            assert got_history == history
            for got, want in zip(got_weights, weights, strict=True):
                assert torch.equal(got, want)
    # a 2-process checkpoint cannot continue in one process: the shards would differ
    model = network()
    trainer = Trainer(model, make_optimizer("adam", model, lr=0.02), noisy, progress=False)
    with pytest.raises(ValueError, match="2 process"):
        trainer.fit(loader(dataset(24), B, shuffle=True), 3,
                    resume=tmp_path / "full" / "ckpt_epoch00002.pt")


# ---------------------------------------------------------------- the CLI under torchrun


@pytest.mark.slow  # two torchrun jobs of the classification app: about a minute
def test_spikegrad_run_under_torchrun_writes_one_run_folder_and_resumes(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(scratch)}
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "spikegrad.cli", "run", "classification", "--set", "epochs=2", "--set",
           "hidden=32", "--out", str(tmp_path / "run")]
    for again in ([], ["--resume"]):
        done = subprocess.run(run + again, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.count("classification: results in") == 1  # rank 0 alone prints
        log = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in log] == [1, 2]
        assert not list(scratch.glob("spikegrad-rank*"))  # rank 1's scratch folder is gone
    assert (tmp_path / "run" / "metrics.json").is_file()


# ---------------------------------------------------------------- in one process


def test_a_single_process_is_left_alone(monkeypatch):
    from spikegrad.train.distributed import Ranks, init_from_env

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ranks = init_from_env()
    assert ranks == Ranks() and not ranks.active and ranks.main
    data = loader(dataset(8), 4, shuffle=True)
    assert ranks.shard(data) is data and ranks.wrap(network()) is None
    assert ranks.on_main(lambda: 3) == 3 and ranks.all_true(False) is False


def test_without_torchrun_variables_the_error_says_to_use_torchrun(monkeypatch):
    from spikegrad.train.distributed import init_from_env

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ValueError, match="torchrun"):
        init_from_env()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two'"):
        init_from_env()


def test_loaders_that_cannot_be_sharded_say_how_to_fix_them():
    from torch.utils.data import SubsetRandomSampler

    from spikegrad.train.distributed import Ranks

    ranks = Ranks(rank=0, world_size=2)  # the checks come before any collective
    ds = dataset(8)
    with pytest.raises(ValueError, match="custom sampler"):
        ranks.shard(DataLoader(ds, batch_size=2, sampler=SubsetRandomSampler(range(4))))
    with pytest.raises(ValueError, match="replacement"):
        ranks.shard(DataLoader(ds, batch_size=2,
                               sampler=torch.utils.data.RandomSampler(ds, replacement=True)))
    batches = [ds[:4]]
    with pytest.warns(UserWarning, match="not sharded"):
        assert ranks.shard(batches) is batches


def test_a_checkpoint_resumes_only_on_as_many_processes_as_wrote_it(tmp_path):
    from spikegrad.train.distributed import Ranks

    two = {"rng": 0, "partial": None, "ranks": [{"rng": 1, "partial": None},
                                                {"rng": 2, "partial": None}]}
    assert Ranks(rank=1, world_size=2).own_part(two, tmp_path)["rng"] == 2
    with pytest.raises(ValueError, match="2 process.*has 3"):
        Ranks(rank=1, world_size=3).own_part(two, tmp_path)
    with pytest.raises(ValueError, match="1 process.*has 2"):
        Ranks(rank=0, world_size=2).own_part({"rng": 0, "partial": None}, tmp_path)


def test_epoch_sums_of_the_ranks_add_up():
    from spikegrad.train.epoch import EpochSums

    a, b = EpochSums(lr=0.1), EpochSums(lr=0.1)
    a.add(loss=2.0, weight=3.0, metrics={"acc": 1.0}, grad_norm=0.5)
    b.add(loss=1.0, weight=1.0, metrics={"acc": 0.0, "extra": 4.0}, grad_norm=0.5)
    both = EpochSums.merged([a, b])
    assert both.loss / both.weight == pytest.approx(7.0 / 4.0)
    assert both.metrics["acc"] / both.metric_weights["acc"] == pytest.approx(0.75)
    assert both.metrics["extra"] / both.metric_weights["extra"] == 4.0
    assert (both.batches, both.norm_sum) == (1, 0.5)  # steps are shared, not summed
