"""Trainer(learner=...): a rule that writes its own gradients and applies them through the
trainer's update (clipping, NaN guard, optimizer step), with checkpoints and exact resume."""

import pytest
import torch
from torch import nn

from spikegrad.train import ObjectiveOutput, Trainer


def _data(seed=0, n=4):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 3, generator=g), torch.randn(8, 2, generator=g)) for _ in range(n)]


def _objective(model, x, y, state):
    return ObjectiveOutput(nn.functional.mse_loss(model(x), y))


def _delta_rule(model, x, y, update):
    """The exact gradient of _objective, written by hand (a linear model's delta rule)."""
    with torch.no_grad():
        out = model(x)
        err = 2 * (out - y) / y.numel()
        model.weight.grad = err.t() @ x
        model.bias.grad = err.sum(0)
        loss = nn.functional.mse_loss(out, y)
    update()
    return ObjectiveOutput(loss)


def _model(seed=1):
    torch.manual_seed(seed)
    return nn.Linear(3, 2)


def _trainer(model, **kw):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return Trainer(model, opt, progress=False, **kw)


def test_a_learner_with_the_exact_gradient_trains_as_backprop_does():
    a, b = _model(), _model()
    ha = _trainer(a, objective=_objective).fit(_data(), 3)
    hb = _trainer(b, learner=_delta_rule).fit(_data(), 3)
    torch.testing.assert_close(a.weight, b.weight, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(a.bias, b.bias, rtol=1e-6, atol=1e-7)
    for ra, rb in zip(ha, hb):
        assert ra["step"] == rb["step"]
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-5)
        assert ra["grad_norm_max"] == pytest.approx(rb["grad_norm_max"], rel=1e-5)


class Chunked:
    """Applies a gradient after each of ``k`` slices of the batch (online learning)."""

    def __init__(self, k):
        self.k, self.norms, self.seen = k, [], 0

    def __call__(self, model, x, y, update):
        for xs, ys in zip(x.chunk(self.k), y.chunk(self.k)):
            model.zero_grad()
            loss = nn.functional.mse_loss(model(xs), ys)
            loss.backward()
            self.norms.append(float(torch.cat([p.grad.flatten() for p in model.parameters()])
                                    .norm()))
            update()
        self.seen += 1
        return ObjectiveOutput(loss.detach(), None, {"n": float(len(x))})

    def state_dict(self):
        return {"seen": torch.tensor(self.seen)}

    def load_state_dict(self, state):
        self.seen = int(state["seen"])


def test_every_update_is_an_optimizer_step_and_the_batch_logs_its_largest_norm():
    model, rule = _model(), Chunked(4)
    trainer = _trainer(model, learner=rule)
    hist = trainer.fit(_data(n=2), 1)
    assert trainer.step == 8 and hist[0]["step"] == 8
    per_batch = [max(rule.norms[:4]), max(rule.norms[4:])]
    assert hist[0]["grad_norm_max"] == pytest.approx(max(per_batch), rel=1e-6)
    assert hist[0]["grad_norm_mean"] == pytest.approx(sum(per_batch) / 2, rel=1e-6)


def test_update_clips_to_grad_clip_before_the_step():
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    trainer = Trainer(model, opt, learner=Chunked(1), grad_clip=1e-3, progress=False)
    hist = trainer.fit(_data(n=1), 1)
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)])
    assert float(moved.norm()) == pytest.approx(1e-3, rel=1e-4)
    assert hist[0]["grad_norm_max"] > 1e-2  # logged before clipping


def test_a_learner_that_never_calls_update_gets_one():
    def writes_only(model, x, y, update):
        out = nn.functional.mse_loss(model(x), y)
        out.backward()
        return ObjectiveOutput(out.detach())

    trainer = _trainer(_model(), learner=writes_only)
    trainer.fit(_data(n=3), 1)
    assert trainer.step == 3


def _poisoned(at):
    calls = {"n": 0}

    def rule(model, x, y, update):
        for i in range(3):
            calls["n"] += 1
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            if i == at:
                model.weight.grad[0, 0] = float("nan")
            update()
        return ObjectiveOutput(loss.detach())
    return rule


def test_a_nonfinite_update_raises_naming_the_update_and_the_parameter():
    model = _model()
    with pytest.raises(FloatingPointError, match=r"update 2 of epoch 1, batch index 0.*weight"):
        _trainer(model, learner=_poisoned(1)).fit(_data(n=1), 1)
    assert torch.isfinite(model.weight).all()


def test_skip_drops_only_the_nonfinite_update():
    model = _model()
    trainer = _trainer(model, learner=_poisoned(1), nonfinite="skip")
    with pytest.warns(RuntimeWarning, match="skipped an update"):
        trainer.fit(_data(n=1), 1)
    assert trainer.step == 2 and torch.isfinite(model.weight).all()


def test_a_nonfinite_learner_loss_raises():
    def diverged(model, x, y, update):
        update()
        return ObjectiveOutput(torch.tensor(float("inf")))

    with pytest.raises(FloatingPointError, match="loss is inf at epoch 1, batch index 0"):
        _trainer(_model(), learner=diverged).fit(_data(n=1), 1)


def test_resume_restores_the_learner_state_and_continues_exactly(tmp_path):
    full_model, full_rule = _model(), Chunked(2)
    _trainer(full_model, learner=full_rule).fit(_data(), 4)

    part = _trainer(_model(), learner=Chunked(2), checkpoint_dir=tmp_path)
    part.fit(_data(), 2)
    model, rule = _model(seed=7), Chunked(2)
    resumed = _trainer(model, learner=rule, checkpoint_dir=tmp_path)
    resumed.fit(_data(), 4, resume="latest")
    assert rule.seen == full_rule.seen == 4 * 4
    assert torch.equal(model.weight, full_model.weight)
    assert resumed.step == 4 * 4 * 2


def test_resume_refuses_a_checkpoint_without_the_learners_state(tmp_path):
    _trainer(_model(), learner=_delta_rule, checkpoint_dir=tmp_path).fit(_data(n=1), 1)
    with pytest.raises(ValueError, match="has no learner state"):
        _trainer(_model(), learner=Chunked(1), checkpoint_dir=tmp_path).fit(
            _data(n=1), 2, resume="latest")


@pytest.mark.parametrize("kw, match", [
    (dict(), "pass exactly one of objective"),
    (dict(objective=_objective, learner=_delta_rule), "got both"),
    (dict(learner=3), "learner must be a callable"),
    (dict(learner=_delta_rule, tbptt=10), "Use tbptt=None with learner"),
])
def test_bad_learner_arguments_say_what_to_pass(kw, match):
    with pytest.raises((TypeError, ValueError), match=match):
        _trainer(_model(), **kw)
