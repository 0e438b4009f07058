"""``spikegrad run APP [--set key=value ...] [--out DIR] [--resume | --resume-or-start]``,
``spikegrad sweep APP --seeds N [--set ...] [--out DIR] [--resume] [--jobs J]``,
``spikegrad list [APP]`` (an app's keys with type, default and meaning), ``spikegrad run APP
--help`` (the same under the command's own options).

Exit status: 0 done; 2 a mistake in the command line or config (one line on stderr that
names the key or option, no traceback), also a run too large for this machine's memory;
3 training stopped at a NaN/Inf loss or gradient (the message says where, and how to
continue from the last good checkpoint); 128 + signal number when SIGINT/SIGTERM stopped
the run after saving a checkpoint (the message gives the resume command).

Under ``torchrun --nproc_per_node=N -m spikegrad.cli run APP ...`` every process runs the app
and the Trainer trains data-parallel (see :mod:`spikegrad.train.distributed`): rank 0 picks
the run folder and writes it (config, log, checkpoints, figures, report, metrics) and prints;
the other ranks run quietly in a temporary folder that they delete at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path
from typing import List, Optional

from .apps import APPS, budget, get_app
from .apps.config import ConfigError, apply_overrides, resolve_config
from .apps.report import check_out_dir, check_resume_config, make_out_dir, resume_point
from .train.distributed import Ranks, init_from_env
from .train.interrupt import TrainingInterrupted

EXIT_USAGE = 2
EXIT_NONFINITE = 3


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one ``spikegrad: error:`` line, like the config errors."""

    def error(self, message: str):  # type: ignore[override]
        print(f"spikegrad: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _common(r: argparse.ArgumentParser, what: str) -> None:
    # app is optional to argparse so that `spikegrad run --help` and `run APP --help` reach
    # main(), which prints the app's own keys; main() requires it otherwise
    r.add_argument("app", nargs="?", help="application name (see `spikegrad list`)")
    r.add_argument("-h", "--help", action="store_true",
                   help="show this help, and with APP its config keys, and exit")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable)")
    r.add_argument("--out", default=None, help=f"{what} folder (default runs/APP/<timestamp>)")
    again = r.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run in --out; an error if it holds nothing to continue")
    again.add_argument("--resume-or-start", action="store_true",
                       help="continue the run in --out if it holds one, else start it there")
    r.add_argument("--quiet", action="store_true", help="no progress lines")
    r.add_argument("--no-memory-check", action="store_true",
                   help="run even when the memory estimate exceeds this machine's memory")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="spikegrad", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run an application", add_help=False)
    _common(r, "run")
    s = sub.add_parser("sweep", help="run an application over several seeds and summarise",
                       add_help=False)
    _common(s, "sweep")
    s.add_argument("--seeds", metavar="N|S1,S2,...",  # required; checked in main (--help)
                   help="number of seeds (0..N-1) or a comma-separated list")
    s.add_argument("--jobs", type=int, default=1, metavar="J",
                   help="seeds run in parallel processes (default 1: one after the other)")
    lst = sub.add_parser("list", help="list the applications, or one app's config keys")
    lst.add_argument("app", nargs="?", help="an application: show its keys with type, default "
                                            "and meaning")
    sub.add_parser("bench", help="how to run the peer benchmarks (`make bench`)")
    p.commands = {"run": r, "sweep": s}  # for the per-app help
    return p


def _summary(module) -> str:
    """The first sentence of an app module's docstring."""
    doc = " ".join((module.__doc__ or "").split())
    return doc.split(". ")[0].rstrip(".") if doc else ""


def _app_keys(name: str) -> str:
    from .apps.fields import describe, format_keys

    app = get_app(name)
    head = (textwrap.fill(f"{name}: {_summary(app)}.", 100) + "\n\nconfig keys (--set "
            "KEY=VALUE; None -> X: X from the dataset's preset):\n")
    return head + format_keys(describe(app))


def _list(app: Optional[str]) -> int:
    if app is not None:
        print(_app_keys(app))
        return 0
    width = max(map(len, APPS))
    for name in sorted(APPS):
        print(f"  {name:<{width}}  {_summary(get_app(name))}")
    print("\n`spikegrad list APP` shows an app's config keys with type, default and meaning.")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `spikegrad list APP | head`: the reader left, which is fine
        sys.stdout = open(os.devnull, "w")
        return 0


def _main(argv: Optional[List[str]]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error, already printed
        return int(e.code or 0)
    try:
        if args.command == "list":
            return _list(args.app)
        if args.command in ("run", "sweep") and (args.help or args.app is None):
            parser = _parser().commands[args.command]
            if not args.help:
                parser.error("the following arguments are required: app")
            print(parser.format_help())
            if args.app is not None:
                print(_app_keys(args.app))
            return 0
        if args.command == "sweep" and args.seeds is None:
            _parser().commands["sweep"].error("the following arguments are required: --seeds")
    except ValueError as e:  # an unknown app name
        print(f"spikegrad: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as e:  # the usage error, already printed
        return int(e.code or 0)
    if args.command == "bench":
        print("spikegrad bench: the comparison with snnTorch, Norse, SpikingJelly and Spyx needs "
              "their own virtual environments; run it from a source checkout with `make bench` "
              "(results in benchmarks/RESULTS.md; `make bench BENCH_ARGS=--quick` for a smoke "
              "test).")
        return 0
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return _run_or_sweep(args)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"spikegrad: warning: {message}", file=sys.stderr if file is None else file)


def _run_or_sweep(args) -> int:
    out: Optional[Path] = None
    scratch: Optional[Path] = None
    ranks = Ranks()
    try:
        ranks = _join_job(args)
        app = get_app(args.app)
        quiet = args.quiet or not ranks.main
        overrides = list(args.overrides) + (["progress=false"] if quiet else [])
        cfg = apply_overrides(app.Config(), overrides)
        resolved = resolve_config(app, cfg)  # every key checked before anything runs
        if not args.no_memory_check:
            budget.check(args.app, resolved)
        if args.command == "sweep":
            from .apps import sweep

            seeds = sweep.parse_seeds(args.seeds)
            if args.jobs < 1:
                raise ConfigError(f"--jobs must be >= 1 (parallel processes); got {args.jobs}")
        # rank 0 decides (a default folder is named by its clock) and tells the others
        out, resume = ranks.on_main(lambda: _out_dir(args, resolved))
        if args.command == "sweep":
            summary = sweep.run_sweep(args.app, args.overrides, seeds, out, resume=resume,
                                      jobs=args.jobs, quiet=args.quiet)
            print(f"\n{args.app} sweep over seeds {', '.join(map(str, seeds))}: "
                  f"{summary.out_dir / 'summary.md'}")
            print(summary.table())
            return 0
        if not ranks.main:
            scratch = Path(tempfile.mkdtemp(prefix=f"spikegrad-rank{ranks.rank}-"))
        result = app.run(cfg, out if scratch is None else scratch, resume=resume)
        if scratch is not None:
            return 0
    except TrainingInterrupted as e:
        hint = (f"; continue with: {_again(args, out, ranks)}" if e.checkpoint is not None
                else "")
        if ranks.main:  # every rank stopped after the same batch; one message is enough
            print(f"spikegrad: {e}{hint}", file=sys.stderr)
        return e.exit_code
    except FloatingPointError as e:
        where = resume_point(out) if out is not None else None
        hint = (f" The last good checkpoint is in {out}; continue from it (e.g. with a lower lr "
                f"or grad_clip) with: {_again(args, out, ranks)}" if where is not None else "")
        print(f"spikegrad: error: training stopped: {e}{hint}", file=sys.stderr)
        return EXIT_NONFINITE
    except (ConfigError, ValueError, TypeError, FileNotFoundError, KeyError) as e:
        print(f"spikegrad: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except MemoryError as e:
        print(f"spikegrad: error: out of memory ({_one_line(e) or 'MemoryError'}); make the "
              "sizes smaller (--set ...)", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # e.g. the disk filled up, or --out became unwritable mid-run
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"spikegrad: error: {e.strerror or e}{where}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{args.app}: results in {result.out_dir}")
    width = max(len(k) for k in result.metrics)
    for k, v in sorted(result.metrics.items()):
        print(f"  {k:<{width}}  {v:.4f}" if isinstance(v, float) else f"  {k:<{width}}  {v}")
    return 0


def _join_job(args) -> Ranks:
    """This process's place in a torchrun job (one process: ``Ranks()``)."""
    ranks = init_from_env("cpu")  # the apps train on the CPU: gloo, also on a GPU machine
    if ranks.active and args.command == "sweep":
        raise ConfigError("spikegrad sweep does not run under torchrun (its seeds are "
                          "independent runs: use --jobs J); run one seed data-parallel with "
                          "`torchrun --nproc_per_node=N -m spikegrad.cli run APP`")
    return ranks


def _one_line(e: BaseException) -> str:
    text = str(e)
    if isinstance(e, KeyError) and len(e.args) == 1:
        text = str(e.args[0])
    return " ".join(text.split())


def _again(args, out, ranks: Ranks) -> str:
    """The command that continues this run (or sweep)."""
    seeds = f" --seeds {args.seeds}" if args.command == "sweep" else ""
    sets = "".join(f" --set {o}" for o in args.overrides)
    # a data-parallel run resumes exactly only on as many processes as wrote its checkpoint
    launch = (f"torchrun <the same options: {ranks.world_size} processes> -m spikegrad.cli"
              if ranks.active else "spikegrad")
    return f"{launch} {args.command} {args.app}{seeds} --out {out} --resume{sets}"


def _out_dir(args, resolved) -> tuple:
    """The run folder, checked, and whether to resume in it (a run only with the config it
    was started with, ``resolved``; a sweep checks its own in ``run_sweep``)."""
    continuing = args.resume or args.resume_or_start
    flag = "--resume" if args.resume else "--resume-or-start"
    if continuing and args.out is None:
        raise ConfigError(f"{flag} needs --out DIR (the {args.command} folder to continue)")
    if args.out is None:
        default = Path("runs") / args.app / time.strftime("%Y%m%d-%H%M%S")
        return make_out_dir(default, "the default run folder"), False
    out = check_out_dir(args.out)
    if out.exists() or not args.resume:
        # writable first: scanning a folder that is not a run's (e.g. /proc, whose entries
        # vanish while it is walked) for checkpoints would fail with a confusing error
        make_out_dir(out)
    if args.command == "sweep":
        from .apps import sweep

        found = sweep.has_progress(out)
    else:
        point = resume_point(out)
        found = point is not None
        if found:  # also without a flag: a folder with checkpoints is continued
            check_resume_config(out, resolved, flag if continuing else "--out")
            if not continuing:
                print(f"spikegrad: {out} holds a run of this config with checkpoints: "
                      f"continuing it from {point.relative_to(out)} (a new run needs another "
                      "--out)", file=sys.stderr)
    if args.resume and not found:
        what = ("does not exist" if not out.exists() else
                "is empty" if not any(out.iterdir()) else
                "holds no valid checkpoint (stopped before its first one, or all are unreadable)")
        raise ConfigError(f"--resume: {out} {what}, so there is nothing to continue; start the "
                          f"{args.command} without --resume, or use --resume-or-start")
    return out, bool(found)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
