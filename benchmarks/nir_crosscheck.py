"""The NIR cross-library check: spikegrad <-> snnTorch and spikegrad <-> Norse, both ways.

    python benchmarks/nir_crosscheck.py [snntorch norse]        (or: make interop-check)

Builds each peer's pinned venv if needed (benchmarks/setup_peers.py: torch 2.13.0 CPU, the
peer, nir 1.0.8, nirtorch 2.6, pytest), then runs tests/interop/test_nir_<peer>.py inside it
with spikegrad's src/ on PYTHONPATH (spikegrad's core needs torch and numpy, its interop nir).
Prints one line per peer -- passed / failed / skipped counts and the versions -- and exits
non-zero if any peer's set-up fails, any test fails, or a test file is skipped (the peer did
not import) or ran nothing. JUnit XML: benchmarks/out/nir-crosscheck-<peer>.xml.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import setup_peers  # noqa: E402

TESTS = {"snntorch": "tests/interop/test_nir_snntorch.py",
         "norse": "tests/interop/test_nir_norse.py"}
VERSIONS = "import importlib.metadata as m; print(' '.join(f'{d} {m.version(d)}' for d in %r))"


def check(lib: str) -> bool:
    st = setup_peers.setup(lib)
    if not st.get("ok"):
        print(f"{lib}: FAILED to set up: {st.get('error')}")
        return False
    py = str(setup_peers.venv_python(lib))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    dists = (lib, "torch", "nir", "nirtorch", "numpy")
    versions = subprocess.run([py, "-c", VERSIONS % (dists,)], env=env, text=True,
                              capture_output=True).stdout.strip()
    xml = HERE / "out" / f"nir-crosscheck-{lib}.xml"
    xml.parent.mkdir(parents=True, exist_ok=True)
    cmd = [py, "-m", "pytest", TESTS[lib], "-q", "-rfEs", "-p", "no:cacheprovider",
           "-W", "ignore::DeprecationWarning", f"--junitxml={xml}"]
    print(f"$ PYTHONPATH=src {' '.join(cmd)}", flush=True)
    rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    try:
        suite = ET.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    except (OSError, ET.ParseError):
        n = dict(tests=0, failures=0, errors=0, skipped=0)
    passed = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
    ok = rc == 0 and passed > 0 and n["skipped"] == 0
    print(f"{lib}: {'ok' if ok else 'FAILED'}: {passed} passed, {n['failures'] + n['errors']} "
          f"failed, {n['skipped']} skipped ({versions}; pytest exit {rc})", flush=True)
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("libs", nargs="*", metavar="LIB", help=f"default: {' '.join(TESTS)}")
    args = ap.parse_args(argv)
    libs = args.libs or list(TESTS)
    bad = [lib for lib in libs if lib not in TESTS]
    if bad:
        ap.error(f"no cross-check for {', '.join(bad)}; choose from {', '.join(TESTS)}")
    results = {lib: check(lib) for lib in libs}
    print("nir cross-check: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}"
                                          for k, v in results.items()))
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
