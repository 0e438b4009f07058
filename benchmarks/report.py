"""Turn benchmarks/out/results.json into RESULTS.md (run.py calls it; it also runs alone).

    python benchmarks/report.py [benchmarks/out/results.json] [-o benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402

PEERS = ("snntorch", "norse", "spikingjelly", "spyx")
DESCRIBE = {
    "ff": "Linear({n_in}->{n}, no bias) + LIF; B={B}, T={T}, input p={p}; loss = sum of spikes",
    "clf": "{n_in} -> {n} LIF -> {n_out} LI readout; B={B}, T={T}, input p={p}; "
           "loss = sum of readout membrane",
    "cnn": "{c_in}x{hw}x{hw} spikes -> conv3x3({c1}) + tdBN + LIF + avgpool2 -> conv3x3({c2}) + "
           "tdBN + LIF + avgpool2 -> {n_out} LI readout; B={B}, T={T}, input p={p}; "
           "loss = sum of readout membrane",
    "rec": "Linear({n_in}->{n}) + recurrent LIF ({n}x{n} W_rec); B={B}, T={T}, input p={p}; "
           "loss = sum of spikes",
}


def _ok(r) -> bool:
    return bool(r and r.get("ok") and r.get("fwdbwd_med"))


def _ms(s) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "-"
    ms = 1e3 * s
    return f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def _x(v) -> str:
    return "-" if v is None else (f"{v:.2f}x" if v < 10 else f"{v:.1f}x")


RECOMPUTE = "spikegrad[auto+recompute]"


def best_spikegrad(res: dict):
    """(name, result) of the spikegrad backend with the fastest median forward+backward."""
    cands = [(k, r) for k, r in res.items() if k.startswith("spikegrad[") and _ok(r)]
    return min(cands, key=lambda kr: kr[1]["fwdbwd_med"]) if cands else (None, None)


def best_peer(res: dict):
    cands = [(k, r) for k, r in res.items() if k in PEERS and _ok(r)]
    return min(cands, key=lambda kr: kr[1]["fwdbwd_med"]) if cands else (None, None)


def workload_table(name: str, res: dict) -> str:
    sg_name, sg = best_spikegrad(res)
    lines = ["| library | forward ms | fwd+bwd ms (min-max) | step memory MiB | incl. one-time MiB "
             "| firing rate "
             "| fwd+bwd / spikegrad | memory / spikegrad |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    order = sorted(res, key=lambda k: (not k.startswith("spikegrad"), k == "dense GEMM", k))
    for k in order:
        r = res[k]
        if not r.get("ok") or not r.get("fwdbwd_med"):
            err = str(r.get("error", "no result")).replace("|", "/").replace("\n", " ")
            lines.append(f"| {k} | failed: {err[:300]} | | | | | | |")
            continue
        t_ratio = r["fwdbwd_med"] / sg["fwdbwd_med"] if sg else None
        m_ratio = (r["mem_mb"] / sg["mem_mb"] if sg and sg.get("mem_mb") else None)
        rate = r.get("rate")
        rate_s = "-" if rate is None or math.isnan(rate) else f"{100 * rate:.2f} %"
        label = f"**{k}**" if k == sg_name else k
        fb = r["fwdbwd_s"]
        spread = f" ({_ms(min(fb))}-{_ms(max(fb))})" if len(fb) > 1 else ""
        lines.append(f"| {label} | {_ms(r['fwd_med'])} | {_ms(r['fwdbwd_med'])}{spread} | "
                     f"{r.get('mem_mb', float('nan')):.1f} | {r.get('footprint_mb', float('nan')):.1f} | "
                     f"{rate_s} | {_x(t_ratio)} | {_x(m_ratio)} |")
    notes = []
    if sg:
        notes.append(f"Fastest spikegrad backend (**bold**): `{sg_name}`.")
        dense = res.get("dense GEMM")
        if _ok(dense):
            notes.append(f"{sg_name} forward+backward / dense time-folded GEMM forward+backward"
                         f" = {sg['fwdbwd_med'] / dense['fwdbwd_med']:.2f}.")
    return "\n".join(lines) + ("\n\n" + " ".join(notes) if notes else "")


def floors(doc: dict) -> str:
    res = doc["results"]
    rows = ["| floor (issues 3, 27) | workload | measured | verdict |", "|---|---|---:|---|"]

    def verdict(ok):
        return "met" if ok else "**not met**"

    for w in ("A512", "A2048", "B", "C", "D"):
        if w not in res:
            continue
        sg_name, sg = best_spikegrad(res[w])
        p_name, p = best_peer(res[w])
        # the fastest variant, and the memory-saving one (recompute) when it is another
        shown = [(sg_name, sg)] if sg else []
        rc = res[w].get(RECOMPUTE)
        if rc is not None and _ok(rc) and RECOMPUTE != sg_name:
            shown.append((RECOMPUTE, rc))
        for name, r_sg in shown:
            if p:
                r = p["fwdbwd_med"] / r_sg["fwdbwd_med"]
                # issue 27 asks 4x of the fastest variant on A-C (issue 3 asked 2x, which the
                # memory-saving variant is still held to); 2x on the CNN workload
                need = 4 if w != "D" and name == sg_name else 2
                rows.append(f"| fwd+bwd >= {need}x faster than the fastest peer ({p_name}): "
                            f"{name} | {w} | {r:.2f}x | {verdict(r >= need)} |")
        ref = res[w].get("spikegrad[reference]")
        for k, r_ in sorted(res[w].items()):
            if k.startswith("spikegrad[") and k != "spikegrad[reference]" and _ok(r_) \
                    and _ok(ref):
                q = r_["fwdbwd_med"] / ref["fwdbwd_med"]
                if k == RECOMPUTE:  # trades time for memory on purpose, like checkpointing
                    rows.append(f"| time vs the reference loop (memory-saving option, not a "
                                f"fast path): {k} | {w} | {q:.2f}x reference | - |")
                    continue
                rows.append(f"| never slower than the reference loop: {k} | {w} | "
                            f"{q:.2f}x reference | {verdict(q <= 1.0)} |")
        peers = [(k, r_) for k, r_ in res[w].items() if k in PEERS and _ok(r_)
                 and r_.get("mem_mb")]
        if w in ("A512", "A2048", "C") and peers:
            k, lo = min(peers, key=lambda kr: kr[1]["mem_mb"])
            for name, r_sg in shown:
                if r_sg.get("mem_mb") is None:
                    continue
                q = r_sg["mem_mb"] / lo["mem_mb"]
                rows.append(f"| memory <= 0.5x the lowest peer's ({k}): {name} | {w} | {q:.2f}x | "
                            f"{verdict(q <= 0.5)} |")
        dense = res[w].get("dense GEMM")
        if w.startswith("A") and sg and _ok(dense):
            q = sg["fwdbwd_med"] / dense["fwdbwd_med"]
            rows.append(f"| fwd+bwd <= 1.0x the dense time-folded GEMM | {w} | {q:.2f}x | "
                        f"{verdict(q <= 1.0)} |")
    curve = doc.get("memory_curve") or {}
    for k, pts in curve.items():
        good = sorted((int(T), p["mem_mb"]) for T, p in pts.items() if p.get("ok"))
        if len(good) >= 3:
            # Memory per step, peak / T: falls or stays flat for linear growth (a constant part
            # spread over more steps), doubles with each doubling of T for quadratic growth.
            # Met if the longest sequence's per-step memory is at most 1.5x the largest of the
            # shorter ones'. (Until 2026-11-29 this compared the slopes between neighbouring
            # points, which one low RSS reading in the middle -- the heap reusing a freed
            # block -- could fail although the end points lay on the line.)
            per_step = [1000 * m / t for t, m in good]
            ok = per_step[-1] <= 1.5 * max(per_step[:-1])
            shown = "/".join(f"{s:.0f}" for s in per_step)
            rows.append(f"| memory grows at most linearly in T: {k} | C, T "
                        f"{'-'.join(str(t) for t, _ in good)} | MiB per 1000 steps: "
                        f"{shown} | {verdict(ok)} |")
    return "\n".join(rows)


def curve_table(doc: dict) -> str:
    curve = doc.get("memory_curve") or {}
    if not curve:
        return "(not measured in this run)"
    Ts = sorted({int(T) for pts in curve.values() for T in pts})
    head = "| backend | " + " | ".join(f"T={T}" for T in Ts) + " |"
    lines = [head, "|---|" + "---:|" * len(Ts)]
    for k, pts in curve.items():
        cells = []
        for T in Ts:
            p = pts.get(str(T), {})
            cells.append(f"{p['mem_mb']:.1f} MiB, {_ms(p['fwdbwd_med'])} ms" if p.get("ok")
                         else "failed: " + str(p.get("error", "-"))[:80].replace("|", "/"))
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tables(doc: dict) -> str:
    out = []
    for w, res in doc["results"].items():
        spec = doc["workloads"][w]
        out.append(f"### {w}: {DESCRIBE[spec['kind']].format(**spec)}\n\n"
                   + workload_table(w, res))
    out.append("### Floors\n\n" + floors(doc))
    out.append("### Memory vs T, workload C (peak MiB, fwd+bwd ms)\n\n" + curve_table(doc))
    return "\n\n".join(out)


def _versions(doc: dict) -> str:
    seen = {}
    for res in doc["results"].values():
        for k, r in res.items():
            lib = "spikegrad" if k.startswith("spikegrad") or k == "dense GEMM" else k
            for d, v in (r.get("info", {}).get("versions") or {}).items():
                seen.setdefault(lib, {})[d] = v
    lines = []
    for lib in ["spikegrad", *PEERS]:
        if lib in seen:
            lines.append(f"- {lib}: " + ", ".join(f"{d} {v}" for d, v in seen[lib].items()))
        elif lib in doc["setup"] and not doc["setup"][lib].get("ok"):
            lines.append(f"- {lib}: **could not be installed/run**: {doc['setup'][lib].get('error')}")
    return "\n".join(lines)


def _paths(doc: dict) -> str:
    seen = {}
    for res in doc["results"].values():
        for k, r in res.items():
            info = r.get("info") or {}
            if info.get("path"):
                seen.setdefault(k, []).append(info["path"])
                seen.setdefault(k + "#model", []).append(info.get("model", ""))
    lines = []
    for k in sorted(x for x in seen if "#" not in x):
        paths = " / ".join(dict.fromkeys(seen[k]))
        model = " / ".join(dict.fromkeys(seen[k + "#model"]))
        lines.append(f"- **{k}**: {paths}. {model}.")
    return "\n".join(lines)


def contention(doc: dict) -> str:
    """The training-under-load section (``benchmarks/contention.py``), or ""."""
    c = doc.get("contention") or {}
    if not c:
        return ""
    if "error" in c:
        return f"## Training under a competing load\n\nNot measured: {c['error']}.\n"
    lines = ["## Training under a competing load", "",
             "One training step of a workload, quiet and with competing processes on the same "
             f"{c['cpus']} cores: `spin` = pure-Python busy loops, `torch` = processes "
             f"multiplying matrices on {c['threads']} torch threads (other training jobs). "
             "`auto` = spikegrad's default (the fused kernels measure each split over threads "
             "and run unsplit while splitting is slower than one thread); `auto-split` = the "
             "fused kernels always split; `torch` = spikegrad's plain torch loop of the same "
             "model. Variants interleaved block by block in one process; medians. Slowdown = "
             "loaded / quiet.", "",
             "| workload | competitors | variant | quiet ms | loaded ms | slowdown |",
             "|---|---|---|---:|---:|---:|"]
    for r in c["rows"]:
        lines.append(f"| {r['workload']} (T={r['T']}) | {r['competitors']} x {r['kind']} | "
                     f"{r['variant']} | {r['quiet_ms']:.2f} | {r['loaded_ms']:.2f} | "
                     f"{r['slowdown']:.2f}x |")
    return "\n".join(lines) + "\n"


def tbptt(doc: dict) -> str:
    """The TBPTT-vs-full-BPTT section (``benchmarks/tbptt.py``), or ""."""
    t = doc.get("tbptt") or {}
    if not t:
        return ""
    if "error" in t:
        return f"## Truncated BPTT\n\nNot measured: {t['error']}.\n"
    lines = ["## Truncated BPTT", "",
             f"One training step of the regression app's network (T = {t['T']}, batch 1, "
             f"{t['hidden']} recurrent LIF; forward, loss, backward, Adam), on "
             f"{t['threads']} thread, median of {t['repeats']} interleaved repeats. `whole` = "
             "one pass with the gradient cut every K steps inside the kernels "
             "(`Trainer(tbptt_mode=\"whole\")`, the app's default); `chunks` = the objective "
             "chunk by chunk (memory of one chunk). Same gradient. `bound` = the ratio the "
             "chunked loop would have if each chunk cost only torch's own overhead for a graph "
             "of that shape.", "",
             "| K | mode | calls | wall ms | x full | CPU ms | x full | bound |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in t["rows"]:
        bound = f"{r['bound']:.2f}" if "bound" in r else ""
        lines.append(f"| {r['k'] or 'full'} | {r['mode']} | {r['chunks']} | {r['wall_ms']:.2f} "
                     f"| {r['wall_x_full']:.2f} | {r['cpu_ms']:.2f} | {r['cpu_x_full']:.2f} "
                     f"| {bound} |")
    return "\n".join(lines) + "\n"


def render(doc: dict) -> str:
    m = doc["meta"]
    mach = m["machine"]
    quick = " (**--quick smoke test: small T, 1 repeat -- not a measurement**)" if m["quick"] else ""
    load = f"\n- Note: {m['note']}" if m.get("note") else ""
    if m.get("loadavg_start"):
        load += (f"\n- Load average (1/5/15 min) at the start {'/'.join(map(str, m['loadavg_start']))}, "
                f"at the end {'/'.join(map(str, m['loadavg_end']))} (on {mach['cores']} cores: "
                "above ~1 means other work shared the machine and the times are noisier).")
    return f"""# Benchmarks: spikegrad vs snnTorch, Norse, SpikingJelly and Spyx (CPU){quick}

Generated by `make bench` (`{m['command'].strip()}`) on {m['date']}; the whole run took
{m['total_s']:.0f} s (peer set-up {m['setup_s']:.0f} s).

- Machine: {mach['cpu']}, {mach['cores']} cores ({mach.get('affinity')} usable),
  {mach.get('mem_gib')} GiB RAM; {mach['os']}.{load}
- Every library on {m['threads']} threads/cores; warm-up: {m['warmup']} forward + {m['warmup']}
  training steps per process; then {m['repeats']} repeat(s) interleaved round-robin across
  libraries; medians reported.
{_versions(doc)}

Neuron constants everywhere: decay a = exp(-dt/tau_mem) = exp(-1/20) (tau_mem 20 ms, dt 1 ms),
threshold 1, subtract (soft) reset, fast-sigmoid/SuperSpike surrogate (slope 10 where the library
takes one). Weights and input spikes are the same numpy arrays (seeded) in every library, so
the firing rates below show the workloads are the same; Spyx's LIF reads its spike one step
late (its model), the others agree to the last spike or nearly.

## Results

Forward = inference (no autograd graph / jit of the forward); fwd+bwd = one training step
(forward, loss, backward to all weights). "step memory" = peak RSS during a training step minus
the settled RSS just before it, after set-up and warm-up (the memory ratios and floors use
this); "incl. one-time" = the same peak minus the RSS right after set-up, before the first
step, so it also holds what the first steps leave for good (JIT-compiled code of numba and
XLA, thread pools, caches). Ratios are against the fastest spikegrad backend (bold): above 1
means spikegrad is faster / smaller.

{tables(doc)}

{tbptt(doc)}
{contention(doc)}
## How each library runs

{_paths(doc)}

The dense-GEMM baseline is the time-folded GEMMs of the same shapes (forward and the weight /
input-gradient GEMMs of backward) with no neuron, in the spikegrad environment.

## Method

- One process per (library or spikegrad backend, workload), each in its own virtual
  environment (`benchmarks/.venvs/<lib>`, built by `benchmarks/setup_peers.py` with the pins
  listed in `benchmarks/README.md`; spikegrad in the repository's `.venv`). The harness passes
  the workload as JSON and reads JSON lines back; see `benchmarks/common.py`.
- Each process is pinned to the same {m['threads']} CPUs (`sched_setaffinity`; XLA sizes its
  thread pool from it) and torch uses `set_num_threads({m['threads']})`.
- Memory: the kernel's own high-water mark. Before a step the worker runs `gc.collect()` and
  glibc `malloc_trim(0)` (every worker runs with `MALLOC_ARENA_MAX=1`, so the trim reaches all
  freed memory, XLA's worker threads included), reads `VmRSS`, and writes `5` to
  `/proc/self/clear_refs`, which resets `VmHWM` to the current RSS; `VmHWM` after the step is
  the exact peak -- no sampling thread, no allocator hooks, the same for torch, numba and XLA.
  Median of 3 steps, after the timed repeats.
- Memory-vs-T curve: a fresh process per (backend, T) on workload C.

Rerun: `make bench` (all; builds the peer environments the first time, a few minutes), or
`.venv/bin/python benchmarks/run.py --quick` (smoke test), `--libs spikegrad,snntorch`,
`--workloads A512,B,C`. Raw numbers: `benchmarks/out/results.json`; per-process logs:
`benchmarks/out/logs/`.
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="?", type=Path, default=HERE / "out" / "results.json")
    ap.add_argument("-o", "--out", type=Path, default=None)
    args = ap.parse_args(argv)
    doc = json.loads(args.results.read_text())
    text = render(doc)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
