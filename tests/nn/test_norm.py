import pytest
import torch

import spikegrad as sg

F64 = torch.float64
SHAPES = [(5, 4, 3), (5, 4, 3, 7), (5, 4, 3, 6, 5)]  # [T, B, C], [T, B, C, L], [T, B, C, H, W]


def _reduce_dims(x, keep):
    return [d for d in range(x.dim()) if d not in keep]


@pytest.mark.parametrize("shape", SHAPES)
def test_threshold_batch_norm_statistics_over_time_batch_and_space(shape):
    torch.manual_seed(0)
    bn = sg.nn.ThresholdBatchNorm(3, threshold=0.7, alpha=0.5, eps=1e-14).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 3.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    xs = torch.randn(shape, dtype=F64) * 4 + 3
    ys = bn(xs)
    dims = _reduce_dims(ys, keep=[2])
    torch.testing.assert_close(ys.mean(dims), bn.bias.detach(), rtol=0, atol=1e-12)
    # biased std = weight * alpha * threshold
    torch.testing.assert_close(ys.std(dims, unbiased=False),
                               torch.tensor([1.0, 2.0, 3.0], dtype=F64) * 0.35, rtol=0, atol=1e-12)
    # the formula itself, element by element
    mean = xs.mean(dims, keepdim=True)
    var = xs.var(dims, unbiased=False, keepdim=True)
    view = [1, 1, 3] + [1] * (xs.dim() - 3)
    ref = (bn.weight.view(view) * 0.35 * (xs - mean) / var.sqrt() + bn.bias.view(view))
    torch.testing.assert_close(ys, ref, rtol=0, atol=1e-12)


def test_threshold_batch_norm_running_statistics_and_eval():
    torch.manual_seed(1)
    bn = sg.nn.ThresholdBatchNorm(2, threshold=2.0, momentum=0.25).double()
    xs = torch.randn(4, 6, 2, 5, dtype=F64) * 3 + 1
    bn(xs)
    dims = [0, 1, 3]
    torch.testing.assert_close(bn.running_mean, 0.25 * xs.mean(dims), rtol=0, atol=1e-12)
    torch.testing.assert_close(bn.running_var, 0.75 + 0.25 * xs.var(dims, unbiased=True),
                               rtol=0, atol=1e-12)
    bn.eval()
    x2 = torch.randn(3, 2, 2, 5, dtype=F64)
    rm, rv = bn.running_mean.view(1, 1, 2, 1), bn.running_var.view(1, 1, 2, 1)
    torch.testing.assert_close(bn(x2), 2.0 * (x2 - rm) / (rv + bn.eps).sqrt(), rtol=0, atol=1e-12)
    torch.testing.assert_close(bn.running_mean, 0.25 * xs.mean(dims))  # eval does not update


@pytest.mark.parametrize("shape", SHAPES)
def test_per_step_batch_norm_equals_one_batch_norm_per_step(shape):
    torch.manual_seed(2)
    T, C = shape[0], shape[2]
    bn = sg.nn.PerStepBatchNorm(C, n_steps=T, bias=True).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1, 1)
    scale = torch.arange(1, T + 1, dtype=F64).view(T, *[1] * (len(shape) - 1))
    xs = torch.randn(shape, dtype=F64) * scale  # a different spread at every step
    ys = bn(xs)
    cls = {3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm1d, 5: torch.nn.BatchNorm2d}[len(shape)]
    for t in range(T):
        ref_bn = cls(C).double()
        with torch.no_grad():
            ref_bn.weight.copy_(bn.weight.view(T, C)[t])
            ref_bn.bias.copy_(bn.bias.view(T, C)[t])
        torch.testing.assert_close(ys[t], ref_bn(xs[t]), rtol=0, atol=1e-12)
        torch.testing.assert_close(bn.running_mean.view(T, C)[t], ref_bn.running_mean,
                                   rtol=0, atol=1e-12)
        torch.testing.assert_close(bn.running_var.view(T, C)[t], ref_bn.running_var,
                                   rtol=0, atol=1e-12)


def test_per_step_batch_norm_normalises_every_step_separately():
    torch.manual_seed(3)
    bn = sg.nn.PerStepBatchNorm(2, n_steps=3, eps=1e-14).double()
    assert bn.bias is None  # BNTT: scale only
    scale = torch.tensor([1.0, 5.0, 9.0], dtype=F64).view(3, 1, 1, 1)
    xs = torch.randn(3, 16, 2, 4, dtype=F64) * scale + 7
    ys = bn(xs)
    torch.testing.assert_close(ys.mean((1, 3)), torch.zeros(3, 2, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(ys.std((1, 3), unbiased=False), torch.ones(3, 2, dtype=F64),
                               rtol=0, atol=1e-12)


def test_norms_pass_gradients_and_work_in_a_spiking_stack():
    torch.manual_seed(4)
    net = sg.nn.Sequential(sg.nn.Conv1d(1, 4, 3, padding=1), sg.nn.ThresholdBatchNorm(4),
                           sg.nn.LIF((4, 10)), sg.nn.Conv1d(4, 4, 3, padding=1),
                           sg.nn.PerStepBatchNorm(4, n_steps=6), sg.nn.LIF((4, 10)))
    zs, _ = net(torch.randn(6, 8, 1, 10))
    zs.sum().backward()
    assert 0 < float(zs.detach().mean()) < 1
    for m in (net[1], net[4]):
        assert m.weight.grad is not None and float(m.weight.grad.abs().sum()) > 0


def test_bad_input_messages():
    with pytest.raises(ValueError, match=r"ThresholdBatchNorm\(3\): expected a time-major input "
                                         r"\[T, B, 3\].*got shape \[4, 2, 5\]"):
        sg.nn.ThresholdBatchNorm(3)(torch.zeros(4, 2, 5))
    with pytest.raises(ValueError, match="n_steps = 4; build it with n_steps=6"):
        sg.nn.PerStepBatchNorm(2, n_steps=4)(torch.zeros(6, 2, 2))
    with pytest.raises(ValueError, match="PerStepBatchNorm: n_steps must be an int >= 1, got 0"):
        sg.nn.PerStepBatchNorm(2, n_steps=0)
    with pytest.raises(ValueError, match="threshold must be a finite number > 0, got -1"):
        sg.nn.ThresholdBatchNorm(2, threshold=-1)
    with pytest.raises(ValueError, match=r"momentum must be a finite number > 0 and <= 1"):
        sg.nn.ThresholdBatchNorm(2, momentum=2.0)
