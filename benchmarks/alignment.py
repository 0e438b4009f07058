"""What a buffer's alignment costs the event kernels: forward and weight gradient of a workload's
input layer with the packed weight / packed gradient rows and the blocked weight gradient
starting 0, 16, 32 or 48 bytes past a 64-byte boundary (glibc's heap guarantees only 16).
One thread, the variants interleaved round by round; prints median ms and the ratio to the
aligned buffers.

Run:  python benchmarks/alignment.py [--workload A512] [--repeats 25]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def offset_copy(a: np.ndarray, offset_bytes: int) -> np.ndarray:
    """A copy of ``a`` starting ``offset_bytes`` past a 64-byte boundary."""
    from spikegrad.kernels import aligned
    raw = aligned.empty(a.nbytes + 64, np.uint8)
    out = raw[offset_bytes:offset_bytes + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workload", default="A512", choices=["A512", "A2048", "B", "C"])
    ap.add_argument("--repeats", type=int, default=25)
    args = ap.parse_args()
    torch = common.torch_init()
    torch.set_num_threads(1)
    from spikegrad.kernels import numba_event as ne
    wl = common.workload(args.workload)
    d = common.make_data(wl)
    n_in, n = wl["n_in"], wl["n"]
    x2 = torch.from_numpy(d["x"]).reshape(-1, n_in)
    w = torch.from_numpy(d["w_in"])
    rp, cl, _ = ne.active_csr(x2)
    rp, cl = rp.numpy(), cl.numpy()
    n_rows, L, rb = x2.shape[0], ne.lanes(w.dtype), ne.ROW_BLOCK
    nb = -(-n // L)
    g = np.random.default_rng(0).standard_normal(n_rows * n).astype(np.float32)
    n_rb = -(-n_rows // rb)
    colptr = np.zeros(n_rb * n_in + 1, np.int64)
    rows = np.empty(cl.shape[0], np.int32)
    ne._csc_kernel(rp, cl, n_in, rb, colptr, rows, 0, n_rb)
    wtb0 = ne.pack_weight(w)
    runs = {}
    for off in (0, 16, 32, 48):
        wtb = offset_copy(wtb0, off)
        y = offset_copy(np.zeros(n_rows * n, np.float32), off)
        dwt = offset_copy(np.zeros(nb * n_in * L, np.float32), off)
        pack = offset_copy(np.zeros(nb * rb * L, np.float32), off)

        def fwd(wtb=wtb, y=y):
            ne._forward_kernel(rp, cl, wtb, n_in, n, y, 0, nb)

        def wgrad(dwt=dwt, pack=pack):
            ne._weight_grad_kernel(colptr, rows, g, n_rows, n_in, n, rb, dwt, pack, 0, nb)
        runs[off] = (fwd, wgrad)
    times = {off: ([], []) for off in runs}
    for _ in range(2):  # compile and warm
        for fns in runs.values():
            for f in fns:
                f()
    for _ in range(args.repeats):
        for off, fns in runs.items():
            for k, f in enumerate(fns):
                t0 = time.perf_counter()
                f()
                times[off][k].append(time.perf_counter() - t0)
    med = {off: [1e3 * statistics.median(t) for t in ts] for off, ts in times.items()}
    print(f"workload {args.workload}, 1 thread, {args.repeats} interleaved rounds, median ms:")
    print("offset (bytes)   event forward        weight gradient")
    for off, (f, wg) in med.items():
        print(f"{off:14d}   {f:6.2f} ({f / med[0][0]:.2f}x)   {wg:6.2f} ({wg / med[0][1]:.2f}x)")


if __name__ == "__main__":
    main()
