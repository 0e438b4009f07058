import pytest
import torch

import spikegrad as sg
from spikegrad.nn import conv_output_size, dense_macs, fan_out, spiking_conv, synaptic_ops

from numerics import assert_decisions_clear, assert_same_up_to_order, chain, spike_margins


def test_conv_output_size_matches_torch():
    for size, k, s, p in [((28, 28), 3, 2, 1), ((40,), 5, 2, 2), ((8, 7), 3, 1, 0),
                          ((5,), 1, 2, 0)]:
        conv = (torch.nn.Conv1d if len(size) == 1 else torch.nn.Conv2d)(1, 1, k, s, p)
        out = conv(torch.zeros(1, 1, *size)).shape[2:]
        assert conv_output_size(size, k, s, p) == tuple(out)
    with pytest.raises(ValueError, match="too small for kernel_size"):
        conv_output_size((2,), 5)


@pytest.mark.parametrize("in_shape", [(2, 12), (2, 8, 8)])
@pytest.mark.parametrize("norm", ["none", "threshold", "per_step"])
@pytest.mark.parametrize("pool", ["none", "max", "avg", "sum"])
def test_spiking_conv_block_shapes_and_outputs(in_shape, norm, pool):
    torch.manual_seed(0)
    block = spiking_conv(in_shape, 3, 3, stride=1, padding=1, norm=norm, n_steps=5, pool=pool)
    net = sg.nn.Sequential(*block.layers)
    with torch.no_grad():
        outs, _ = net.forward_all(torch.rand(5, 4, *in_shape) * 3)
    assert tuple(outs[-1].shape) == (5, 4, *block.out_shape)
    spikes = next(o for o, m in zip(outs, net.layers) if isinstance(m, sg.nn.LIF))
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    if pool == "sum":  # counts of spikes in each 2-wide window
        assert torch.equal(outs[-1], outs[-1].round())
        assert float(outs[-1].max()) <= 2 ** (len(in_shape) - 1)
    if pool == "max":
        assert set(outs[-1].unique().tolist()) <= {0.0, 1.0}
    assert (norm == "none") == (block.layers[0].bias is not None)


def test_spiking_conv_with_other_neurons_and_fused_kernels():
    torch.manual_seed(1)
    xs = torch.rand(6, 3, 1, 6, 6) * 2
    for make in (lambda s: sg.nn.IF(s), lambda s: sg.nn.LIF(s, tau_syn=5e-3, threshold=0.3)):
        outs = {}
        for backend in ("reference", "auto"):
            torch.manual_seed(2)
            block = spiking_conv((1, 6, 6), 2, 3, padding=1, norm="threshold",
                                 neuron=lambda s, b=backend: _with_backend(make(s), b))
            net = sg.nn.Sequential(*block.layers)
            with spike_margins() as margins:
                zs, _ = net(xs)
            zs.sum().backward()
            outs[backend] = (zs.detach(), block.layers[0].weight.grad)
            if backend == "reference":  # both float32 paths must decide alike
                assert_decisions_clear(margins, torch.float32, chain(6, 0, 9), paths=2)
        assert torch.equal(outs["reference"][0], outs["auto"][0])
        # 6 steps of 9-wide convolution sums, then the weight gradient over 3 x 6 x 6 positions
        assert_same_up_to_order(outs["auto"][1], outs["reference"][1], chain(6, 108, 9))
    block = spiking_conv((1, 6, 6), 2, 3, neuron=lambda s: sg.nn.LIF(s, threshold=0.25))
    assert block.layers[1].threshold == pytest.approx(0.25)  # tdBN scaled to the threshold


def _with_backend(m, backend):
    m.backend = backend
    return m


def test_spiking_conv_bad_arguments():
    with pytest.raises(ValueError, match="in_shape must be"):
        spiking_conv((1, 2, 3, 4), 2, 3)
    with pytest.raises(ValueError, match="pass n_steps=T"):
        spiking_conv((1, 8), 2, 3, norm="per_step")
    with pytest.raises(ValueError, match="pool must be one of"):
        spiking_conv((1, 8), 2, 3, pool="median")


def test_sum_pool_is_a_window_sum():
    xs = torch.rand(2, 3, 2, 7)
    avg = torch.nn.functional.avg_pool1d(xs.flatten(0, 1), 3, 2, 1).unflatten(0, (2, 3))
    torch.testing.assert_close(sg.nn.SumPool1d(3, 2, 1)(xs), avg * 3)
    xs = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]]).view(1, 1, 1, 2, 4)
    assert sg.nn.SumPool2d(2)(xs).flatten().tolist() == [1.0, 3.0]


def test_fan_out_by_hand():
    # Conv1d k=3 on length 5, no padding: input 0 feeds output 0 only, input 2 feeds all 3
    assert fan_out(torch.nn.Conv1d(1, 2, 3), (1, 5)).tolist() == [[2.0, 4.0, 6.0, 4.0, 2.0]]
    # stride 2, padding 1, k=3 on length 5 -> outputs 0..2 read inputs {-1,0,1}, {1,2,3}, {3,4,5}
    assert fan_out(torch.nn.Conv1d(1, 1, 3, stride=2, padding=1), (1, 5)).tolist() == \
        [[1.0, 2.0, 1.0, 2.0, 1.0]]
    # 2-D: k=2, stride 2 on 4x4: every input feeds exactly one output per channel
    assert torch.equal(fan_out(torch.nn.Conv2d(3, 4, 2, stride=2), (3, 4, 4)),
                       torch.full((3, 4, 4), 4.0))
    assert torch.equal(fan_out(torch.nn.Linear(6, 5), (6,)), torch.full((6,), 5.0))


def test_dense_macs_equal_out_elements_times_fan_in():
    conv = torch.nn.Conv2d(3, 8, 3)  # no padding: every output reads a full 3x3x3 window
    assert dense_macs(conv, (3, 10, 10)) == 8 * 8 * 8 * 3 * 9
    assert dense_macs(torch.nn.Linear(40, 7), (40,)) == 280
    # with zero padding the padded taps are not synapses
    assert dense_macs(torch.nn.Conv1d(1, 1, 3, padding=1), (1, 4)) == 4 * 3 - 2


def test_synaptic_ops_by_hand():
    conv = torch.nn.Conv1d(1, 2, 3)  # fan-out [2, 4, 6, 4, 2]
    xs = torch.zeros(3, 2, 1, 5)
    xs[0, 0, 0, 0] = 1  # sample 0: spikes at (t=0, x=0), (t=2, x=2) -> 2 + 6
    xs[2, 0, 0, 2] = 1
    xs[1, 1, 0, 3] = 2  # sample 1: a count of 2 at x=3 (sum pooling) -> 2 * 4
    assert synaptic_ops(conv, xs).tolist() == [8.0, 8.0]
    # per step: sample 0 pays 2 at t=0 and 6 at t=2, sample 1 pays 8 at t=1
    assert synaptic_ops(conv, xs, per_step=True).tolist() == [[2.0, 0.0], [0.0, 8.0],
                                                              [6.0, 0.0]]
    analog = torch.zeros(1, 1, 1, 5)
    analog[0, 0, 0, 1] = 0.3  # a graded event costs its fan-out once
    assert synaptic_ops(conv, analog).tolist() == [4.0]
    full = torch.ones(4, 1, 3, 6, 6)  # every element spikes at every step: T x dense MACs
    conv2 = torch.nn.Conv2d(3, 5, 3, stride=2, padding=1)
    assert synaptic_ops(conv2, full).item() == 4 * dense_macs(conv2, (3, 6, 6))


def test_fan_out_bad_arguments():
    with pytest.raises(ValueError, match="does not fit Linear"):
        fan_out(torch.nn.Linear(3, 2), (4,))
    with pytest.raises(ValueError, match="does not fit Conv2d with 3 input channels"):
        fan_out(torch.nn.Conv2d(3, 2, 3), (2, 5, 5))
    with pytest.raises(TypeError, match="layer must be nn.Linear"):
        fan_out(torch.nn.ReLU(), (3,))
