"""`make bench`: spikegrad against snnTorch, Norse, SpikingJelly and Spyx in one run.

    python benchmarks/run.py                          # everything (several minutes)
    python benchmarks/run.py --quick                  # small T, 1 repeat: a smoke test
    python benchmarks/run.py --libs spikegrad,snntorch --workloads A512,B,C

Each library runs in its own process (its own virtual environment, benchmarks/.venvs/<lib>,
built by setup_peers.py; spikegrad in the repository's .venv), one process per (library or
spikegrad backend, workload). The workload goes in as JSON on the command line; timings come
back as JSON lines (protocol in common.py). All processes of a workload are started and warmed
up first, then every repeat visits them round-robin, starting one further along each time, so
machine noise hits all alike. Reported: median inference forward, median forward+backward,
peak memory of a training step, the firing rate. Output: a table on stdout,
benchmarks/out/results.json, and benchmarks/RESULTS.md (benchmarks/out/RESULTS.md for --quick
or a subset of libraries/workloads).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
LOGS = OUT / "logs"
sys.path.insert(0, str(HERE))

import common  # noqa: E402
import report  # noqa: E402
import setup_peers  # noqa: E402

LIBS = ("spikegrad", "snntorch", "norse", "spikingjelly", "spyx")
START_TIMEOUT = 900.0
# Consecutive steps a process runs (all timed) each time the round-robin visits it. A process
# sits idle while the others run; its first step after that pays for waking idle cores and
# threads (measured on the 2-vCPU VM: workload B 15 ms back to back, 31 ms after 100 ms idle
# with 2 threads, 18 -> 23 ms with one), which a training loop, running steps back to back,
# does not. With 3 steps per visit the median is a step of a running loop; the cold ones stay
# in the samples and in the min-max spread.
STEPS_PER_SLOT = 3
CMD_TIMEOUT = 900.0


def child_env() -> dict:
    env = dict(os.environ)
    n = str(common.THREADS)
    env.update(OMP_NUM_THREADS=n, MKL_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n,
               NUMBA_NUM_THREADS=n, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONHASHSEED="0", PYTHONUNBUFFERED="1",
               MALLOC_ARENA_MAX="1",   # one glibc arena: malloc_trim sees all freed memory
               # large buffers from glibc's heap, reused step after step, instead of fresh
               # mmaps faulted in page by page every step (spikegrad A512: ~3000 faults and
               # 2-4 ms per step; the cost varies with the host, and so did the timings)
               MALLOC_MMAP_THRESHOLD_=str(256 << 20), MALLOC_TRIM_THRESHOLD_=str(1 << 30))
    # the peers' venvs must not see the repository's src/ through an inherited PYTHONPATH
    env.pop("PYTHONPATH", None)
    return env


def spikegrad_python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


# --- entries: what gets measured -------------------------------------------------------------

def entries_for(lib: str) -> tuple[list, dict]:
    """``([entry, ...], setup status)`` for one library; an entry is a dict with ``name``,
    ``lib``, ``variant``, ``python``, ``script``."""
    if lib == "spikegrad":
        py = spikegrad_python()
        script = str(HERE / "bench_spikegrad.py")
        p = subprocess.run([py, script, "--list-variants"], capture_output=True, text=True,
                           env=child_env())
        if p.returncode != 0:
            err = (p.stderr.strip().splitlines() or ["no output"])[-1]
            return ([{"name": "spikegrad", "lib": lib, "variant": "?", "python": py,
                      "script": script}],
                    {"ok": False, "error": f"cannot list spikegrad backends: {err}"})
        names = json.loads(p.stdout)
        ents = [{"name": "dense GEMM" if v == "dense" else f"spikegrad[{v}]", "lib": lib,
                 "variant": v, "python": py, "script": script} for v in names]
        return ents, {"ok": True}
    try:
        st = setup_peers.setup(lib)
    except Exception as e:  # noqa: BLE001 - reported in the results, never skipped silently
        st = {"ok": False, "error": f"set-up crashed: {type(e).__name__}: {e}"}
    ent = {"name": lib, "lib": lib, "variant": "default",
           "python": str(setup_peers.venv_python(lib)), "script": str(HERE / f"bench_{lib}.py")}
    return [ent], st


# --- one worker process ----------------------------------------------------------------------

class Worker:
    def __init__(self, entry: dict, wl: dict, tag: str):
        self.entry, self.wl = entry, wl
        LOGS.mkdir(parents=True, exist_ok=True)
        safe = entry["name"].replace("[", "-").replace("]", "").replace(" ", "-")
        self.log_path = LOGS / f"{tag}-{safe}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [entry["python"], entry["script"], json.dumps(wl), entry["variant"]],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=child_env(),
            cwd=str(REPO))
        self.ready, self.error = None, None

    def wait_ready(self) -> "Worker":
        """Block until the worker has built its model and warmed up (or failed)."""
        self.ready = self._read(START_TIMEOUT)
        self.error = None if self.ready.get("ok") else self.ready.get("error", "failed")
        return self

    @property
    def ok(self) -> bool:
        return self.error is None

    def _read(self, timeout: float) -> dict:
        fd = self.proc.stdout
        r, _, _ = select.select([fd], [], [], timeout)
        if not r:
            self.kill()
            return {"ok": False, "error": f"no answer within {timeout:.0f} s (killed)"}
        line = fd.readline()
        if not line:
            rc = self.proc.wait()
            self.log.flush()
            tail = ""
            try:
                tail = " | ".join(self.log_path.read_text().strip().splitlines()[-3:])
            except OSError:
                pass
            return {"ok": False, "error": f"process exited (code {rc}): {tail}"[:600]}
        return json.loads(line)

    def cmd(self, text: str) -> dict:
        if not self.ok:
            return {"error": self.error}
        try:
            self.proc.stdin.write((text + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            self.error = "process died"
            return {"error": self.error}
        ans = self._read(CMD_TIMEOUT)
        if "error" in ans:
            self.error = ans["error"]
        return ans

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        if self.ok and self.proc.poll() is None:
            try:
                self.cmd("quit")
            except (OSError, ValueError):
                pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
        self.log.close()


def say(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def med(xs):
    return statistics.median(xs) if xs else None


def run_workload(wl: dict, entries: list, repeats: int) -> dict:
    res = {}
    t0 = time.time()
    # the dense-GEMM baseline has fully connected layers only: no row for the conv workload
    entries = [e for e in entries if not (wl["kind"] == "cnn" and e["variant"] == "dense")]
    # start every process at once (set-up and warm-up overlap; nothing is timed yet)
    workers = [Worker(e, wl, wl["name"]) for e in entries]
    for w in workers:
        e = w.entry
        w.wait_ready()
        r = {"ok": w.ok, "fwd_s": [], "fwdbwd_s": []}
        if w.ok:
            r.update(rate=w.ready["rate"], setup_s=w.ready["setup_s"],
                     warmup_s=w.ready["warmup_s"], info=w.ready.get("info", {}))
            say(f"  [{wl['name']}] {e['name']}: ready after {time.time() - t0:.1f} s, "
                f"rate {w.ready['rate']:.3f}")
        else:
            r["error"] = w.error
            say(f"  [{wl['name']}] {e['name']}: FAILED: {w.error}")
            w.close()
        res[e["name"]] = r
    for rep in range(repeats):
        k = rep % len(workers)
        order = workers[k:] + workers[:k]          # round-robin, a new first each repeat
        for w in order:
            if not w.ok:
                continue
            r = res[w.entry["name"]]
            a = w.cmd(f"fwd {STEPS_PER_SLOT}")
            b = w.cmd(f"fwdbwd {STEPS_PER_SLOT}") if w.ok else {}
            if not w.ok:
                r.update(ok=False, error=w.error)
                say(f"  [{wl['name']}] {w.entry['name']}: FAILED: {w.error}")
                continue
            r["fwd_s"] += a["times"]
            r["fwdbwd_s"] += b["times"]
        done = [f"{w.entry['name']} {1e3 * res[w.entry['name']]['fwdbwd_s'][-1]:.0f}"
                for w in workers if w.ok and res[w.entry["name"]]["fwdbwd_s"]]
        say(f"  [{wl['name']}] repeat {rep + 1}/{repeats}, fwd+bwd ms: " + ", ".join(done))
    for w in workers:
        if not w.ok:
            continue
        r = res[w.entry["name"]]
        mems = [w.cmd("mem") for _ in range(3)]
        if not w.ok:
            r.update(ok=False, error=w.error)
            continue
        r["mem_mb"] = med([m["mem_mb"] for m in mems])
        r["footprint_mb"] = med([m["footprint_mb"] for m in mems])
        r["fwd_med"], r["fwdbwd_med"] = med(r["fwd_s"]), med(r["fwdbwd_s"])
    for w in workers:
        w.close()
    return res


def memory_curve(entries: list, Ts, quick: bool) -> dict:
    """spikegrad backends on workload C at several T: peak memory and forward+backward time."""
    out = {}
    for e in entries:
        if e["lib"] != "spikegrad" or e["variant"] == "dense":
            continue
        rows = {}
        group = [(T, Worker(e, dict(common.workload("C", T), warmup=1), f"Cmem{T}"))
                 for T in Ts]
        for _, w in group:
            w.wait_ready()                  # all warmed up before anything is measured
        for T, w in group:
            if not w.ok:
                rows[str(T)] = {"ok": False, "error": w.error}
                w.close()
                continue
            mems = [w.cmd("mem") for _ in range(3)]
            tb = w.cmd("fwdbwd 1" if quick else "fwdbwd 3")
            if not w.ok:
                rows[str(T)] = {"ok": False, "error": w.error}
            else:
                rows[str(T)] = {"ok": True, "mem_mb": med([m["mem_mb"] for m in mems]),
                                "footprint_mb": med([m["footprint_mb"] for m in mems]),
                                "fwdbwd_med": med(tb["times"]), "rate": w.ready["rate"]}
                say(f"  [C memory] {e['name']} T={T}: {rows[str(T)]['mem_mb']:.1f} MiB, "
                    f"{1e3 * rows[str(T)]['fwdbwd_med']:.0f} ms")
            w.close()
        out[e["name"]] = rows
    return out


def machine() -> dict:
    model = platform.processor() or "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            mem_gib = round(int(f.readline().split()[1]) / 2 ** 20, 1)
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "mem_gib": mem_gib, "os": platform.platform()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="small T, 1 repeat, 1 warm-up (smoke test; writes benchmarks/out/RESULTS.md)")
    ap.add_argument("--libs", default=",".join(LIBS),
                    help=f"comma-separated, from {', '.join(LIBS)} (default: all)")
    ap.add_argument("--workloads", default=",".join(common.WORKLOADS),
                    help=f"comma-separated, from {', '.join(common.WORKLOADS)} (default: all)")
    ap.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 7)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps per process (default 2)")
    ap.add_argument("--no-curve", action="store_true", help="skip the memory-vs-T curve on C")
    ap.add_argument("--no-tbptt", action="store_true",
                    help="skip the TBPTT-vs-full-BPTT rows (benchmarks/tbptt.py)")
    ap.add_argument("--no-contention", action="store_true",
                    help="skip the training-under-load rows (benchmarks/contention.py)")
    ap.add_argument("--note", default="", help="a sentence for RESULTS.md (e.g. machine state)")
    ap.add_argument("--results-md", type=Path, default=None,
                    help="where to write the report (default: benchmarks/RESULTS.md for a full "
                         "run, benchmarks/out/RESULTS.md otherwise)")
    args = ap.parse_args(argv)
    libs = [x for x in args.libs.split(",") if x]
    wls = [x for x in args.workloads.split(",") if x]
    bad = [x for x in libs if x not in LIBS] + [x for x in wls if x not in common.WORKLOADS]
    if bad:
        ap.error(f"unknown: {', '.join(bad)} (libraries: {', '.join(LIBS)}; workloads: "
                 f"{', '.join(common.WORKLOADS)})")
    repeats = args.repeats or (1 if args.quick else 7)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    full = not args.quick and set(libs) == set(LIBS) and set(wls) == set(common.WORKLOADS)
    md_path = args.results_md or (HERE / "RESULTS.md" if full else OUT / "RESULTS.md")
    OUT.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    load_start = os.getloadavg()

    say("[bench] set-up")
    entries, setup = [], {}
    for lib in libs:
        ents, st = entries_for(lib)
        setup[lib] = st
        if st.get("ok"):
            entries += ents
        else:
            say(f"[bench] {lib}: cannot be benchmarked: {st.get('error')}")
    setup_s = time.time() - t_start

    results, specs = {}, {}
    for name in wls:
        wl = dict(common.workload(name, common.QUICK_T[name] if args.quick else None),
                  warmup=warmup)
        specs[name] = {k: v for k, v in wl.items() if k != "warmup"}
        say(f"[bench] workload {name}: {specs[name]}")
        results[name] = run_workload(wl, entries, repeats) if entries else {}
        for lib in libs:                       # failed set-ups appear in every table
            if not setup[lib].get("ok"):
                results[name][lib] = {"ok": False, "error": "set-up failed: "
                                      + str(setup[lib].get("error"))}
    curve = {}
    if not args.no_curve and "spikegrad" in libs:
        Ts = [max(2, T // 10) for T in common.MEMORY_CURVE_T] if args.quick \
            else list(common.MEMORY_CURVE_T)
        say(f"[bench] memory curve on C, T in {Ts}")
        curve = memory_curve(entries, Ts, args.quick)

    contention = {}
    if not args.no_contention and not args.quick and "spikegrad" in libs:
        say("[bench] training under a competing load (benchmarks/contention.py)")
        path = OUT / "contention.json"
        done = subprocess.run([spikegrad_python(), str(HERE / "contention.py"), "--json",
                               str(path)], env=dict(os.environ, PYTHONUNBUFFERED="1"))
        contention = (json.loads(path.read_text()) if done.returncode == 0
                      else {"error": f"contention.py exited with {done.returncode}"})

    tbptt = {}
    if not args.no_tbptt and not args.quick and "spikegrad" in libs:
        say("[bench] TBPTT against full BPTT (benchmarks/tbptt.py)")
        path = OUT / "tbptt.json"
        done = subprocess.run([spikegrad_python(), str(HERE / "tbptt.py"), "--floor", "--json",
                               str(path)],
                              env=dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1"))
        tbptt = (json.loads(path.read_text()) if done.returncode == 0
                 else {"error": f"tbptt.py exited with {done.returncode}"})

    doc = {
        "meta": {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "machine": machine(), "threads": common.THREADS, "repeats": repeats,
                 "warmup": warmup, "quick": args.quick, "full": full,
                 "command": "python benchmarks/run.py " + " ".join(argv if argv is not None
                                                                   else sys.argv[1:]),
                 "setup_s": round(setup_s, 1), "total_s": round(time.time() - t_start, 1),
                 "loadavg_start": [round(x, 2) for x in load_start],
                 "loadavg_end": [round(x, 2) for x in os.getloadavg()],
                 "note": args.note},
        "setup": setup, "workloads": specs,
        "entries": [{k: e[k] for k in ("name", "lib", "variant")} for e in entries],
        "results": results, "memory_curve": curve, "contention": contention,
        "tbptt": tbptt,
    }
    (OUT / "results.json").write_text(json.dumps(doc, indent=1))
    text = report.render(doc)
    md_path.write_text(text)
    print(report.tables(doc))
    say(f"[bench] {doc['meta']['total_s']:.0f} s in all; wrote {OUT / 'results.json'} and "
        f"{md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
