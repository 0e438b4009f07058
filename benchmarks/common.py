"""Shared by the harness and every library's benchmark script (stdlib + numpy only: each script
runs in its own virtual environment, with torch or jax but not both).

Workloads (issue 3), neuron constants, the data every library gets (the same numpy weights and
input spikes, seeded), and the worker protocol:

    <venv>/bin/python benchmarks/bench_<lib>.py '<workload JSON>' [variant]

The worker builds the model, warms up, prints one JSON line ``{"ok": true, "rate": ...}`` and
then answers commands read line by line from stdin, one JSON line each:

    fwd K      -> {"times": [s, ...]}   K inference forwards (no autograd graph)
    fwdbwd K   -> {"times": [s, ...]}   K training steps: forward, loss, backward (grads None first)
    mem        -> {"mem_mb": x, "footprint_mb": y}   peak RSS of one training step minus the
                  settled RSS just before it (x), and minus the RSS after set-up (y)
    quit

Only the protocol goes to the real stdout; anything a library prints goes to stderr (the
harness keeps it in benchmarks/out/logs/).
"""

from __future__ import annotations

import gc
import json
import math
import os
import sys
import time
import traceback

import numpy as np

# --- neuron constants, the same for every library ---------------------------------------------

DT = 1e-3                     # s
TAU_MEM = 20e-3               # s
DECAY = math.exp(-DT / TAU_MEM)   # a = exp(-1/20) = 0.951229...
THRESHOLD = 1.0
SURROGATE_SLOPE = 10.0        # fast sigmoid / SuperSpike: phi(x) = 1 / (1 + 10 |x|)^2
SEED = 0
THREADS = 2

# --- workloads --------------------------------------------------------------------------------
# kind: "ff"  = Linear(n_in -> n, no bias) + LIF;              loss = sum of output spikes
#       "clf" = Linear(n_in -> n) + LIF + Linear(n -> n_out) + LI; loss = sum of readout membrane
#       "rec" = Linear(n_in -> n) + recurrent LIF (W_rec n x n); loss = sum of output spikes
#       "cnn" = two spiking conv blocks (3x3 conv, no bias -> batch norm over T*B (tdBN) -> LIF
#               -> 2x2 average pool) -> Linear(c2 * (hw/4)^2 -> n_out) + LI;
#               loss = sum of readout membrane (an N-MNIST-sized input: 2 polarities x 32 x 32)

WORKLOADS = {
    "A512": dict(kind="ff", n_in=512, n=512, B=16, T=500, p=0.1),
    "A2048": dict(kind="ff", n_in=2048, n=2048, B=16, T=500, p=0.1),
    "B": dict(kind="clf", n_in=700, n=256, n_out=20, B=64, T=100, p=0.02),
    "C": dict(kind="rec", n_in=256, n=256, B=32, T=1000, p=0.1),
    "D": dict(kind="cnn", c_in=2, hw=32, c1=16, c2=32, n_out=10, B=32, T=20, p=0.1),
}
QUICK_T = {"A512": 50, "A2048": 25, "B": 20, "C": 100, "D": 4}
MEMORY_CURVE_T = (125, 250, 500, 1000)

# Weight scales: W ~ N(0, GAIN / sqrt(n_in p)) gives every neuron an input of standard
# deviation ~GAIN per step, which with a = exp(-1/20) and threshold 1 fires at ~5-8 %
# (the measured rates are reported per library).
GAIN_IN = 0.5
GAIN_REC = 0.5          # W_rec ~ N(0, GAIN_REC / sqrt(n)), zero diagonal (no autapses)
# The conv workload's batch norms (weight gamma, bias 0) set every channel's currents to mean 0
# and standard deviation gamma per step: the conv weights' scale drops out.
BN_GAMMA = 0.6


def workload(name: str, T: int | None = None) -> dict:
    wl = dict(WORKLOADS[name], name=name)
    if T is not None:
        wl["T"] = int(T)
    return wl


def make_data(wl: dict) -> dict:
    """Input spikes and weights as float32 numpy arrays, identical for every library.

    Weights use the torch ``nn.Linear`` layout ``[out, in]``: ``y = x @ W.T``.
    """
    if wl["kind"] == "cnn":
        return _make_cnn_data(wl)
    rng = np.random.default_rng([SEED, 1])        # weights: independent of T
    T, B, n_in, n = wl["T"], wl["B"], wl["n_in"], wl["n"]
    w_in = rng.standard_normal((n, n_in), dtype=np.float32) * np.float32(
        GAIN_IN / math.sqrt(n_in * wl["p"]))
    d = {"w_in": w_in}
    if wl["kind"] == "clf":
        d["w_out"] = rng.standard_normal((wl["n_out"], n), dtype=np.float32) * np.float32(
            1.0 / math.sqrt(n))
    if wl["kind"] == "rec":
        w_rec = rng.standard_normal((n, n), dtype=np.float32) * np.float32(GAIN_REC / math.sqrt(n))
        np.fill_diagonal(w_rec, 0.0)
        d["w_rec"] = w_rec
    # inputs from their own stream, time-major: a shorter T sees a prefix of a longer one
    xr = np.random.default_rng([SEED, 2])
    d["x"] = (xr.random((T, B, n_in), dtype=np.float32) < wl["p"]).astype(np.float32)
    return d


def cnn_flat(wl: dict) -> int:
    """Features entering the conv workload's readout: c2 channels of (hw / 4)^2 positions."""
    return wl["c2"] * (wl["hw"] // 4) ** 2


def _make_cnn_data(wl: dict) -> dict:
    """Conv weights ``[out, in, 3, 3]`` (torch's layout), the readout ``[n_out, features]``,
    the batch norms' weight, and input spikes ``[T, B, c_in, hw, hw]``."""
    rng = np.random.default_rng([SEED, 1])
    c_in, c1, c2 = wl["c_in"], wl["c1"], wl["c2"]

    def normal(shape, fan_in):
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(1 / math.sqrt(fan_in))
    d = {"w_c1": normal((c1, c_in, 3, 3), c_in * 9), "w_c2": normal((c2, c1, 3, 3), c1 * 9),
         "w_out": normal((wl["n_out"], cnn_flat(wl)), cnn_flat(wl) * 0.1),
         "bn_gamma": np.float32(BN_GAMMA)}
    xr = np.random.default_rng([SEED, 2])
    shape = (wl["T"], wl["B"], c_in, wl["hw"], wl["hw"])
    d["x"] = (xr.random(shape, dtype=np.float32) < wl["p"]).astype(np.float32)
    return d


def no_cnn(wl: dict, lib: str) -> None:
    """For libraries without a benchmark of the conv workload: say so (the table shows it)."""
    if wl["kind"] == "cnn":
        raise NotImplementedError(f"{lib}: the spiking-CNN workload is not implemented for "
                                  "this library in the benchmark")


# --- memory: peak RSS of one step, reset with /proc/self/clear_refs ---------------------------

def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


_LIBC = None


def _malloc_trim() -> None:
    """Give every whole free page of every glibc arena back to the OS (malloc_trim(0))."""
    global _LIBC
    try:
        if _LIBC is None:
            import ctypes
            _LIBC = ctypes.CDLL("libc.so.6")
        _LIBC.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def settled_rss_kb() -> int:
    """Resident memory after ``gc.collect()`` and glibc ``malloc_trim(0)``: live memory, not
    memory that earlier work freed and the allocator still caches."""
    gc.collect()
    _malloc_trim()
    return _status_kb("VmRSS")


def step_memory(step, setup_rss_kb: int) -> dict:
    """Peak resident memory of one (steady-state) training step, MiB.

    ``mem_mb``: peak RSS during ``step()`` minus the settled RSS just before it (after set-up
    and warm-up): the memory the step itself needs. ``footprint_mb``: the same peak minus the
    RSS right after set-up (model and data built, before the first step), which also holds what
    the first steps left for good: JIT-compiled code (numba, XLA), caches, thread pools.

    The peak is the kernel's own: writing "5" to /proc/self/clear_refs resets the high-water
    mark VmHWM to the current RSS, and VmHWM read after the step is the exact maximum, with no
    sampling thread and no allocator hooks -- the same for torch, numba and XLA. The harness
    runs every worker with MALLOC_ARENA_MAX=1 so that ``malloc_trim(0)`` reaches all freed
    memory (glibc does not trim the top of per-thread arenas, where XLA's worker threads would
    otherwise keep their freed buffers out of sight).
    """
    before = settled_rss_kb()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    step()
    peak = _status_kb("VmHWM")
    return {"mem_mb": max(0, peak - before) / 1024.0,
            "footprint_mb": max(0, peak - setup_rss_kb) / 1024.0}


# --- the worker -------------------------------------------------------------------------------

def _pin_cpus() -> None:
    """Every library runs on the same THREADS cores (jax sizes its pool from the affinity)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cpus[:THREADS])
    except (AttributeError, OSError):
        pass


def worker_main(build) -> None:
    """Run the worker protocol. ``build(wl, data, variant) -> bench`` with methods
    ``forward()``, ``train_step()``, ``rate() -> float`` and an ``info`` dict."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)                       # library prints go to stderr
    sys.stdout = sys.stderr

    def send(obj) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    try:
        wl = json.loads(sys.argv[1])
        variant = sys.argv[2] if len(sys.argv) > 2 else "default"
        warmup = int(wl.get("warmup", 2))
        _pin_cpus()
        t0 = time.perf_counter()
        bench = build(wl, make_data(wl), variant)
        setup_s = time.perf_counter() - t0
        setup_rss = settled_rss_kb()
        t0 = time.perf_counter()
        for _ in range(warmup):
            bench.forward()
            bench.train_step()
        warmup_s = time.perf_counter() - t0
        rate = float(bench.rate())
    except BaseException as e:  # noqa: BLE001 - reported to the harness, never swallowed
        send({"ok": False, "error": f"{type(e).__name__}: {e}",
              "traceback": traceback.format_exc()[-4000:]})
        return
    send({"ok": True, "rate": rate, "setup_s": setup_s, "warmup_s": warmup_s,
          "info": getattr(bench, "info", {})})
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        cmd = parts[0]
        try:
            if cmd in ("fwd", "fwdbwd"):
                fn = bench.forward if cmd == "fwd" else bench.train_step
                k = int(parts[1]) if len(parts) > 1 else 1
                times = []
                for _ in range(k):
                    t0 = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t0)
                send({"times": times})
            elif cmd == "mem":
                send(step_memory(bench.train_step, setup_rss))
            elif cmd == "quit":
                send({"bye": True})
                return
            else:
                send({"error": f"unknown command {cmd!r}"})
        except BaseException as e:  # noqa: BLE001
            send({"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]})
            return


def versions(*dists: str) -> dict:
    from importlib import metadata
    out = {"python": sys.version.split()[0]}
    for d in dists:
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            out[d] = None
    return out


# --- torch libraries --------------------------------------------------------------------------

def torch_init():
    """Import torch with THREADS intra-op threads and the shared seed."""
    import torch
    torch.set_num_threads(THREADS)
    torch.manual_seed(SEED)
    return torch


class TorchBench:
    """Subclasses set ``self.params`` (tensors that get gradients) and define ``run()`` ->
    ``(loss, spikes)`` where ``spikes`` is the spiking layer's output (for the firing rate)."""

    params: list
    info: dict = {}

    def run(self):
        raise NotImplementedError

    def forward(self):
        import torch
        with torch.no_grad():
            self.run()

    def train_step(self):
        for p in self.params:
            p.grad = None
        loss, _ = self.run()
        loss.backward()

    def rate(self) -> float:
        import torch
        with torch.no_grad():
            _, z = self.run()
        return float(z.float().mean())
