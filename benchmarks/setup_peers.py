"""Create one virtual environment per peer library under benchmarks/.venvs/<lib>.

    python benchmarks/setup_peers.py [snntorch norse spikingjelly spyx] [--force]

Torch peers get ``torch==2.13.0`` FIRST (pip takes the CPU wheel from the local wheel folder;
a bare ``torch`` would pull a multi-GB CUDA build), then the peer with ``--no-deps`` and an
explicit list of the light dependencies it needs to run its neurons (not its plotting, dataset
or GPU extras: torchvision, torchaudio, triton, tensorboard, ...). Every install also runs under
a constraints file pinning ``torch==2.13.0``, and afterwards the script checks that torch is
still 2.13.0 (CPU) and that no ``nvidia-*`` package came in. Spyx gets CPU ``jax``/``jaxlib``.

Idempotent: a stamp file records the spec a venv was built from; an unchanged, working venv
is left alone (a second run takes about a second). The outcome -- ok, or the error -- is in
``benchmarks/.venvs/<lib>/.bench-status.json``; the harness reports failures in the results
instead of skipping the library. Logs: benchmarks/out/logs/setup-<lib>.log.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
LOGS = HERE / "out" / "logs"
TORCH = "torch==2.13.0"

# Pins that install and run with torch 2.13.0 (checked 2026-11; see benchmarks/README.md).
PEERS = {
    "snntorch": {
        "torch": True,
        "peer": ["snntorch==1.0.0"],          # declares no dependencies at all
        # nir, nirtorch: its NIR import/export; pytest: benchmarks/nir_crosscheck.py runs
        # tests/interop's cross-library tests in this venv
        "deps": ["numpy==2.4.6", "nir==1.0.8", "nirtorch==2.6", "pytest==9.2.0"],
        "check": "import snntorch; from snntorch import surrogate; snntorch.Leaky(beta=0.9)",
        "dist": "snntorch",
    },
    "norse": {
        "torch": True,
        "peer": ["norse==1.1.0"],             # sdist; declares torchvision (unused by norse.torch)
        "deps": ["numpy==2.4.6", "nir==1.0.8", "nirtorch==2.6", "pytest==9.2.0"],  # pytest: ditto
        "check": "import norse.torch as n; n.LIFBoxCell()",
        "dist": "norse",
    },
    "spikingjelly": {
        "torch": True,
        "peer": ["spikingjelly==2.0.0"],      # declares torchvision, torchaudio, tensorboard, ...
        "deps": ["numpy==2.4.6", "loguru==0.7.3", "packaging==26.4"],
        "check": "from spikingjelly.activation_based import neuron, layer, surrogate, functional",
        "dist": "spikingjelly",
    },
    "spyx": {
        "torch": False,
        "peer": ["spyx==1.0.0", "jax[cpu]==0.10.2", "jaxlib==0.10.2", "flax==0.12.8",
                 "optax==0.2.8", "numpy==2.4.6"],
        "deps": [],
        "check": "import jax, spyx; jax.numpy.zeros(1).block_until_ready()",
        "dist": "spyx",
    },
}


def venv_python(lib: str) -> Path:
    return VENVS / lib / "bin" / "python"


def status(lib: str) -> dict:
    """The recorded outcome of the last set-up of ``lib`` (``{"ok": False, ...}`` if none)."""
    f = VENVS / lib / ".bench-status.json"
    if lib not in PEERS:
        return {"ok": False, "error": f"unknown library {lib!r}"}
    if not f.exists():
        return {"ok": False, "error": "not set up (run benchmarks/setup_peers.py)"}
    return json.loads(f.read_text())


def _spec_hash(lib: str) -> str:
    spec = dict(PEERS[lib], python=sys.version.split()[0], torch_pin=TORCH)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


class SetupError(RuntimeError):
    pass


def _run(cmd, log) -> str:
    log.write(f"\n$ {' '.join(map(str, cmd))}\n")
    log.flush()
    p = subprocess.run(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    log.write(p.stdout)
    log.flush()
    if p.returncode != 0:
        lines = [x for x in p.stdout.strip().splitlines() if not x.startswith("WARNING:")]
        tail = " / ".join(lines[-4:])
        args = list(map(str, cmd))
        what = "pip " + " ".join(args[3:]) if "pip" in args else " ".join(args)
        raise SetupError(f"`{what}` failed (exit {p.returncode}): {tail}")
    return p.stdout


def _base_python() -> str:
    """The interpreter the main venv was made from (a venv's python makes a venv of its base)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def setup(lib: str, force: bool = False, quiet: bool = False) -> dict:
    spec = PEERS[lib]
    root = VENVS / lib
    stamp = root / ".bench-stamp"
    want = _spec_hash(lib)
    if not force and stamp.exists() and stamp.read_text().strip() == want \
            and venv_python(lib).exists():
        st = status(lib)
        if st.get("ok"):
            return st
    LOGS.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    say(f"[setup] {lib}: building {root} (log: {LOGS / f'setup-{lib}.log'})")
    result = {"ok": False, "lib": lib, "pins": spec["peer"] + spec["deps"]
              + ([TORCH] if spec["torch"] else [])}
    with open(LOGS / f"setup-{lib}.log", "w") as log:
        try:
            if not venv_python(lib).exists():
                _run([_base_python(), "-m", "venv", root], log)
            py = venv_python(lib)
            pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
            cons = root / "constraints.txt"
            if spec["torch"]:
                cons.write_text(TORCH + "\n")
                _run(pip + [TORCH], log)                        # the CPU wheel, first
                _run(pip + ["-c", cons, "--no-deps"] + spec["peer"], log)
                if spec["deps"]:
                    _run(pip + ["-c", cons] + spec["deps"], log)
            else:
                cons.write_text("")
                _run(pip + spec["peer"] + spec["deps"], log)
            listing = _run([py, "-m", "pip", "list", "--format=json",
                            "--disable-pip-version-check"], log)
            installed = {d["name"].lower(): d["version"] for d in json.loads(listing)}
            cuda = sorted(k for k in installed if k.startswith("nvidia-") or k == "triton")
            if cuda:
                raise SetupError(f"CUDA packages were pulled in: {', '.join(cuda)}")
            if spec["torch"]:
                tv = installed.get("torch", "")
                if not tv.startswith("2.13.0") or ("+" in tv and not tv.endswith("+cpu")):
                    raise SetupError(f"torch was replaced: torch {tv or 'missing'} "
                                     "(expected 2.13.0+cpu)")
            elif "torch" in installed:
                raise SetupError(f"torch {installed['torch']} was pulled into the {lib} venv")
            _run([py, "-c", spec["check"]], log)
            result.update(ok=True, versions={k: installed.get(k) for k in
                                             (spec["dist"], "torch", "jax", "jaxlib", "flax",
                                              "numpy") if installed.get(k)})
        except (SetupError, OSError) as e:
            result["error"] = str(e)
        result["seconds"] = round(time.time() - t0, 1)
    root.mkdir(parents=True, exist_ok=True)
    (root / ".bench-status.json").write_text(json.dumps(result, indent=1))
    if result["ok"]:
        stamp.write_text(want + "\n")
        say(f"[setup] {lib}: ok in {result['seconds']} s")
    else:
        stamp.unlink(missing_ok=True)
        say(f"[setup] {lib}: FAILED: {result['error']}")
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("libs", nargs="*", metavar="LIB",
                    help=f"peers to set up (default: all of {', '.join(PEERS)})")
    ap.add_argument("--force", action="store_true", help="rebuild even if the stamp matches")
    args = ap.parse_args(argv)
    unknown = [lib for lib in args.libs if lib not in PEERS]
    if unknown:
        ap.error(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    ok = True
    for lib in args.libs or list(PEERS):
        r = setup(lib, force=args.force)
        print(json.dumps(r))
        ok &= bool(r["ok"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
