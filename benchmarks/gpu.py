"""GPU benchmark of spikegrad's LIF backends on CUDA (issue 3): the fused Triton kernels
against the torch-ops fused path and the reference loop, on the feed-forward workloads A512,
A2048 and B of ``common.py`` (the same weights, input spikes and neuron constants as the CPU
benchmark). For each workload and backend: forward and forward+backward time (CUDA events,
median of ``--repeats`` after warm-up), the peak CUDA memory of a training step, the firing
rate, and a parity check of every backend against the reference loop on the workload itself
(spikes identical, weight gradient within float32 tolerance).

    python benchmarks/gpu.py --out gpu.md          # on a machine with CUDA and triton

``--interpret`` runs the same code on the CPU in Triton's interpreter with short sequences:
a smoke test of this script where there is no GPU (its times mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

BACKENDS = ("reference", "torch", "triton")


def build(torch, sg, wl, data, backend, device):
    neuron = dict(tau_mem=common.TAU_MEM, dt=common.DT, threshold=common.THRESHOLD,
                  reset="subtract", surrogate="fast_sigmoid", beta=common.SURROGATE_SLOPE)
    layers = [sg.nn.Linear(wl["n_in"], wl["n"], bias=False),
              sg.nn.LIF(wl["n"], **neuron, backend=backend)]
    if wl["kind"] == "clf":
        layers += [sg.nn.Linear(wl["n"], wl["n_out"], bias=False),
                   sg.nn.LI(wl["n_out"], tau_mem=common.TAU_MEM, dt=common.DT,
                            backend=backend)]
    net = sg.nn.Sequential(*layers).to(device)
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(data["w_in"]))
        if wl["kind"] == "clf":
            net[2].weight.copy_(torch.from_numpy(data["w_out"]))
    return net


def timed(torch, fn, repeats, device):
    """Median seconds of ``fn()`` over ``repeats`` runs after 3 warm-ups."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def run_workload(torch, sg, name, wl, repeats, device):
    data = common.make_data(wl)
    x = torch.from_numpy(data["x"]).to(device)
    rows, ref = [], None
    for backend in BACKENDS:
        net = build(torch, sg, wl, data, backend, device)
        params = list(net.parameters())

        def step():
            for p in params:
                p.grad = None
            out, _ = net(x)
            out.sum().backward()
            return out

        def forward():
            with torch.no_grad():
                net(x)
        out = step()
        spikes = net.forward_all(x)[0][1].detach()
        grad = params[0].grad.detach().clone()
        if ref is None:
            ref = (spikes, grad)
        same = bool(torch.equal(spikes, ref[0]))
        close = bool(torch.allclose(grad, ref[1], rtol=1e-4, atol=1e-5))
        fwd = timed(torch, forward, repeats, device)
        train = timed(torch, step, repeats, device)
        peak = float("nan")
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            step()
            torch.cuda.synchronize()
            peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        rows.append(dict(workload=name, backend=backend, fwd_ms=1e3 * fwd,
                         fwdbwd_ms=1e3 * train, peak_mib=peak,
                         rate=float(spikes.float().mean()), spikes_equal=same,
                         weight_grad_close=close))
        del out, net
    return rows


def table(rows) -> str:
    lines = ["| workload | backend | forward ms | fwd+bwd ms | step peak MiB | rate | "
             "spikes = reference | dW close |", "|---|---|---:|---:|---:|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['workload']} | {r['backend']} | {r['fwd_ms']:.2f} | "
                     f"{r['fwdbwd_ms']:.2f} | {r['peak_mib']:.1f} | {100 * r['rate']:.2f} % | "
                     f"{r['spikes_equal']} | {r['weight_grad_close']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", default="A512,A2048,B")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--interpret", action="store_true",
                    help="CPU smoke run in Triton's interpreter (T = 3; times mean nothing)")
    ap.add_argument("--out", default=None, help="write the table (markdown) and a .json here")
    args = ap.parse_args(argv)
    if args.interpret:
        os.environ["TRITON_INTERPRET"] = "1"  # before the kernels' module is imported
    import torch
    import spikegrad as sg
    if args.interpret:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        print("no CUDA device (use --interpret for a CPU smoke run)", file=sys.stderr)
        return 2
    torch.manual_seed(common.SEED)
    rows = []
    for name in args.workloads.split(","):
        wl = common.workload(name, T=3 if args.interpret else None)
        rows += run_workload(torch, sg, name, wl, 2 if args.interpret else args.repeats, device)
    head = (f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}"
            f", torch {torch.__version__}")
    try:
        import triton
        head += f", triton {triton.__version__}"
    except ImportError:
        pass
    text = head + "\n\n" + table(rows) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
        with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
            json.dump(dict(head=head, rows=rows), f, indent=1)
    ok = all(r["spikes_equal"] and r["weight_grad_close"] for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
