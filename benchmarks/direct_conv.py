"""The compiled weight gradient of convs with few input channels (``kernels/direct_conv.py``)
against torch's (oneDNN) on the same inputs, interleaved, medians of ``--reps``; torch's
forward for scale.

    python benchmarks/direct_conv.py --reps 9
"""

from __future__ import annotations

import argparse
import statistics
import time

# N x C x H x W -> C_out, k x k, padding k // 2; N = T * B of a time-folded spiking conv
SHAPES = ["640x2x32x32x16x3", "640x1x40x40x16x3", "640x1x28x28x16x5", "640x2x16x16x32x3",
          "2560x2x32x32x8x3", "640x3x32x32x32x3", "640x4x32x32x32x3"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", nargs="+", default=SHAPES)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--density", type=float, default=0.1, help="of the input spikes")
    args = ap.parse_args()
    import common
    torch = common.torch_init()
    from spikegrad.kernels import direct_conv

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ms, medians of "
          f"{args.reps} interleaved rounds")
    print(f"{'N x C x H x W -> Co, k':28s} {'torch fwd':>9s} {'torch dW':>9s} "
          f"{'direct dW':>10s} {'ratio':>6s}")
    for spec in args.shapes:
        n, c, h, w, co, k = (int(v) for v in spec.split("x"))
        p = k // 2
        x = (torch.rand(n, c, h, w) < args.density).float()
        wt = torch.randn(co, c, k, k) * 0.3
        wr = wt.clone().requires_grad_()
        gy = torch.randn(n, co, h + 2 * p - k + 1, w + 2 * p - k + 1)
        calls = [
            lambda: torch.nn.functional.conv2d(x, wr, None, padding=p),
            lambda: torch.ops.aten.convolution_backward(
                gy, x, wr, None, [1, 1], [p, p], [1, 1], False, [0, 0], 1,
                [False, True, False]),
            lambda: direct_conv.conv2d_weight_grad(gy, x, wt.shape, (p, p)),
        ]
        for f in calls:
            f()
            f()
        times = [[] for _ in calls]
        for _ in range(args.reps):
            for i, f in enumerate(calls):
                t0 = time.perf_counter()
                f()
                times[i].append(time.perf_counter() - t0)
        med = [1e3 * statistics.median(t) for t in times]
        label = f"{n}x{c}x{h}x{w} -> {co}, {k}x{k}"
        print(f"{label:28s} {med[0]:9.1f} {med[1]:9.1f} {med[2]:10.1f} {med[2] / med[1]:6.2f}")


if __name__ == "__main__":
    main()
