"""``spikegrad run APP [--set key=value ...] [--out DIR] [--resume]``, ``spikegrad list``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import List, Optional

from .apps import APPS, get_app
from .apps.config import ConfigError, apply_overrides
from .train.interrupt import TrainingInterrupted


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spikegrad", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run an application")
    r.add_argument("app", help="application name (see `spikegrad list`)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable)")
    r.add_argument("--out", type=Path, default=None,
                   help="run folder (default runs/APP/<timestamp>)")
    r.add_argument("--resume", action="store_true",
                   help="continue from the newest valid checkpoint in --out")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_parser("list", help="list applications and their config keys")
    sub.add_parser("bench", help="how to run the peer benchmarks (`make bench`)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        for name in sorted(APPS):
            cfg = get_app(name).Config()
            keys = ", ".join(f.name for f in dataclasses.fields(cfg))
            print(f"{name}\n  keys: {keys}")
        return 0
    if args.command == "bench":
        print("spikegrad bench: the comparison with snnTorch, Norse, SpikingJelly and Spyx needs "
              "their own virtual environments; run it from a source checkout with `make bench` "
              "(results in benchmarks/RESULTS.md; `make bench BENCH_ARGS=--quick` for a smoke "
              "test).")
        return 0
    try:
        app = get_app(args.app)
        overrides = list(args.overrides) + (["progress=false"] if args.quiet else [])
        cfg = apply_overrides(app.Config(), overrides)
        if args.resume and args.out is None:
            raise ConfigError("--resume needs --out DIR (the run folder to continue)")
        out = args.out or Path("runs") / args.app / time.strftime("%Y%m%d-%H%M%S")
        result = app.run(cfg, out, resume=args.resume)
    except TrainingInterrupted as e:
        hint = f"; continue with: spikegrad run {args.app} --out {out} --resume" + "".join(
            f" --set {o}" for o in args.overrides) if e.checkpoint is not None else ""
        print(f"spikegrad: {e}{hint}", file=sys.stderr)
        return e.exit_code
    except (ConfigError, ValueError, TypeError, FileNotFoundError, KeyError) as e:
        print(f"spikegrad: error: {e}", file=sys.stderr)
        return 2
    print(f"\n{args.app}: results in {result.out_dir}")
    width = max(len(k) for k in result.metrics)
    for k, v in sorted(result.metrics.items()):
        print(f"  {k:<{width}}  {v:.4f}" if isinstance(v, float) else f"  {k:<{width}}  {v}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
