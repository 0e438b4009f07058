"""Multi-seed runs: ``spikegrad sweep APP --seeds N [--set ...] [--out DIR] [--resume]``.

One app, one config, several seeds. Each seed is a normal run in its own folder
(``seed0/``, ``seed1/``, ...: config, metrics, log, checkpoints, report), and the sweep
folder gets

- ``sweep.json``: the app, the ``--set`` overrides and the seeds (what ``--resume`` checks);
- ``summary.json``: every seed's metrics and, per numeric metric, n, mean, sd (sample,
  n - 1), median, min and max;
- ``summary.md``: the same as tables;
- ``summary.png``: the distribution over seeds of the main metrics (a box and the seeds'
  points, one panel per metric).

Resuming works like a single run's: seeds with a ``metrics.json`` are done and skipped, a
seed stopped mid-training continues from its newest checkpoint, the others start.

Seeds run one after another in this process, or in ``jobs`` parallel processes (each with
``OMP_NUM_THREADS`` = cores / jobs unless set: on fewer threads a run's float sums may
differ in the last bits from a run on all cores, which is why the sequential default exists).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from . import get_app
from .config import ConfigError, apply_overrides, resolve_config, to_json
from .report import config_changes, fmt, resume_point
from ..train.interrupt import TrainingInterrupted
from ..train.progress import Progress

__all__ = ["parse_seeds", "run_sweep", "summarise", "Summary", "has_progress"]

# Metrics about cost rather than outcome; listed in the tables, left out of the plot.
_COST_WORDS = ("seconds", "wall", "epochs", "steps", "memory", "_mb")


def parse_seeds(text: str) -> List[int]:
    """``"3"`` -> ``[0, 1, 2]``; ``"0,4,7"`` -> ``[0, 4, 7]``."""
    text = str(text).strip()
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            n = int(text)
            if n < 1:
                raise ConfigError(f"--seeds {text}: the number of seeds must be >= 1")
            seeds = list(range(n))
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"--seeds expects a number of seeds (e.g. --seeds 5 for 0..4) or a "
                          f"comma-separated list (e.g. --seeds 0,3,7); got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds must list distinct seeds >= 0 (e.g. --seeds 0,1,2); got "
                          f"{text!r}")
    return seeds


def seed_dir(out: Path, seed: int) -> Path:
    return Path(out) / f"seed{seed}"


def has_progress(out: Path) -> bool:
    """Whether ``out`` holds a sweep with a finished or checkpointed seed."""
    out = Path(out)
    if not (out / "sweep.json").exists():
        return False
    for d in out.glob("seed*"):
        if (d / "metrics.json").exists() or resume_point(d) is not None:
            return True
    return False


@dataclasses.dataclass
class Summary:
    out_dir: Path
    seeds: List[int]
    per_seed: Dict[int, Dict[str, float]]
    stats: Dict[str, Dict[str, float]]

    def table(self) -> str:
        width = max((len(k) for k in self.stats), default=6)
        lines = [f"  {'metric':<{width}}  {'mean':>10}  {'sd':>10}  {'median':>10}  "
                 f"{'min':>10}  {'max':>10}"]
        for k, s in self.stats.items():
            lines.append(f"  {k:<{width}}  " + "  ".join(
                f"{s[c]:>10.4g}" for c in ("mean", "sd", "median", "min", "max")))
        return "\n".join(lines)


def run_sweep(app_name: str, overrides: Sequence[str], seeds: Sequence[int], out: Path,
              resume: bool = False, jobs: int = 1, quiet: bool = False) -> Summary:
    """Run ``app_name`` with ``overrides`` once per seed under ``out`` and summarise.

    ``resume``: skip seeds that finished, continue those with a checkpoint (and check that
    ``out`` holds a sweep of the same app and config: every key but ``progress``
    and ``log`` has its saved value, however the ``--set`` list spells it).
    """
    app = get_app(app_name)
    overrides = list(overrides)
    if any(o.split("=", 1)[0].strip() == "seed" for o in overrides):
        raise ConfigError("--set seed=... conflicts with --seeds; give the seeds with --seeds "
                          "only (e.g. --seeds 3,4)")
    for s in seeds:  # every seed's config is valid before the first one starts
        apply_overrides(app.Config(), overrides + [f"seed={s}"])
    out = Path(out)
    _write_manifest(out, app_name, overrides, seeds, resume)
    done = {s: _metrics(out, s) for s in seeds} if resume else {}
    todo = [s for s in seeds if done.get(s) is None]
    progress = Progress(len(seeds), f"{app_name} sweep", enabled=not quiet)
    progress.skip(len(seeds) - len(todo))
    if jobs == 1:
        for s in todo:
            sub = overrides + [f"seed={s}"] + (["progress=false"] if quiet else [])
            d = seed_dir(out, s)
            app.run(apply_overrides(app.Config(), sub), d,
                    resume=resume and resume_point(d) is not None)
            progress.update(1, _seed_info(s, _metrics(out, s)))
    else:
        _run_parallel(app_name, overrides, todo, out, resume, jobs, progress)
    return summarise(out, seeds)


def _write_manifest(out: Path, app_name: str, overrides: List[str], seeds: Sequence[int],
                    resume: bool) -> None:
    path = out / "sweep.json"
    if resume and path.exists():
        old = json.loads(path.read_text())
        old_sets = old.get("overrides", [])
        shown = " ".join(f"--set {o}" for o in old_sets) or "no --set"
        if old.get("app") != app_name:
            raise ConfigError(f"--resume: {out} holds a sweep of {old.get('app')} ({shown}), "
                              f"not of {app_name}; choose another --out")
        changes = _config_changes(app_name, old_sets, overrides)
        if changes:
            raise ConfigError(
                f"--resume: {out} holds a sweep of {app_name} with another config "
                f"({'; '.join(changes)}, saved -> now); resuming would mix the two. Resume it "
                f"with its own values ({shown}), or start a new sweep with another --out")
        seeds = sorted(set(old.get("seeds", [])) | set(seeds))
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"app": app_name, "overrides": overrides, "seeds": list(seeds)},
                               indent=2) + "\n")


def _config_changes(app_name: str, saved: List[str], now: List[str]) -> List[str]:
    """The keys whose values differ between the app's configs under the ``--set`` lists
    ``saved`` and ``now`` (so the same config given in another order or spelling is the
    same sweep)."""
    app = get_app(app_name)
    try:
        old = resolve_config(app, apply_overrides(app.Config(), saved))
    except ConfigError as e:
        raise ConfigError(f"--resume: the sweep's saved --set values are not valid for "
                          f"{app_name} any more ({e}); start a new sweep with another "
                          "--out") from None
    new = resolve_config(app, apply_overrides(app.Config(), now))
    return config_changes(json.loads(to_json(old)), json.loads(to_json(new)))


def _metrics(out: Path, seed: int) -> Optional[Dict[str, float]]:
    path = seed_dir(out, seed) / "metrics.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:  # written at a crash: the seed runs again
        return None


def _seed_info(seed: int, metrics: Optional[dict]) -> str:
    main = _main_metrics(metrics or {})[:2]
    return f"seed {seed} done" + "".join(f" {k} {metrics[k]:.4g}" for k in main)


def _run_parallel(app_name: str, overrides: List[str], todo: List[int], out: Path,
                  resume: bool, jobs: int, progress: Progress) -> None:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    pending, running, failed = list(todo), {}, []
    try:
        while pending or running:
            while pending and len(running) < jobs:
                s = pending.pop(0)
                d = seed_dir(out, s)
                cmd = [sys.executable, "-m", "spikegrad.cli", "run", app_name, "--out", str(d),
                       "--quiet"]
                cmd += ["--resume-or-start"] if resume else []
                for o in overrides + [f"seed={s}"]:
                    cmd += ["--set", o]
                d.mkdir(parents=True, exist_ok=True)
                log = open(d / "sweep_stderr.txt", "w")
                running[s] = (subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                               stderr=log), log)
            time.sleep(0.2)
            for s, (proc, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[s]
                if proc.returncode == 0:
                    progress.update(1, _seed_info(s, _metrics(out, s)))
                else:
                    tail = (seed_dir(out, s) / "sweep_stderr.txt").read_text().strip()
                    failed.append(f"seed {s} (exit {proc.returncode}): "
                                  f"{tail.splitlines()[-1] if tail else 'no message'}")
    except KeyboardInterrupt:
        # the seeds' trainers save a checkpoint on SIGTERM; wait for them to do so
        for proc, log in running.values():
            proc.send_signal(signal.SIGTERM)
        for proc, log in running.values():
            proc.wait()
            log.close()
        raise TrainingInterrupted(signal.SIGINT, out) from None
    if failed:
        raise ValueError(f"{len(failed)} of {len(todo)} seeds failed (their stderr is in "
                         f"{out}/seed*/sweep_stderr.txt): " + "; ".join(failed))


def _main_metrics(metrics: Dict[str, float]) -> List[str]:
    """Outcome metrics first (accuracy, error, loss), cost metrics (time, memory) left out."""
    numeric = [k for k, v in metrics.items() if isinstance(v, (int, float))
               and not any(w in k for w in _COST_WORDS)]

    def rank(k: str) -> tuple:
        for i, word in enumerate(("test_accuracy", "accuracy", "nmse", "loss")):
            if word in k:
                return (i, k)
        return (9, k)
    return sorted(numeric, key=rank)


def summarise(out: Path, seeds: Sequence[int]) -> Summary:
    """Read every seed's ``metrics.json`` and write ``summary.json``, ``.md`` and ``.png``."""
    out = Path(out)
    per_seed = {}
    for s in seeds:
        m = _metrics(out, s)
        if m is None:
            raise ConfigError(f"seed {s} has no metrics in {seed_dir(out, s)}; run the sweep "
                              "again with --resume to finish it")
        per_seed[s] = m
    keys = [k for k, v in per_seed[seeds[0]].items() if isinstance(v, (int, float))]
    stats = {}
    for k in sorted(keys):
        values = [float(per_seed[s][k]) for s in seeds if isinstance(per_seed[s].get(k),
                                                                     (int, float))]
        stats[k] = {"n": len(values), "mean": statistics.fmean(values),
                    "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                    "median": statistics.median(values), "min": min(values), "max": max(values)}
    summary = Summary(out, list(seeds), per_seed, stats)
    (out / "summary.json").write_text(json.dumps(
        {"seeds": list(seeds), "stats": stats,
         "per_seed": {str(s): per_seed[s] for s in seeds}}, indent=2, sort_keys=True) + "\n")
    main = _main_metrics(per_seed[seeds[0]])[:6]
    _write_markdown(summary, main)
    if main:
        _plot(summary, main, out / "summary.png")
    return summary


def _write_markdown(summary: Summary, main: List[str]) -> None:
    manifest = json.loads((summary.out_dir / "sweep.json").read_text())
    sets = " ".join(f"--set {o}" for o in manifest["overrides"])
    seeds = ", ".join(map(str, summary.seeds))
    lines = [f"# Sweep of {manifest['app']} over {len(summary.seeds)} seeds", "",
             f"`spikegrad sweep {manifest['app']} --seeds {','.join(map(str, summary.seeds))}"
             f"{' ' + sets if sets else ''}`; seeds {seeds}, each run in `seed<N>/`.", "",
             "| metric | mean | sd | median | min | max |", "|---|---|---|---|---|---|"]
    for k, s in summary.stats.items():
        lines.append(f"| {k} | " + " | ".join(fmt(s[c]) for c in
                                              ("mean", "sd", "median", "min", "max")) + " |")
    lines += ["", "## Per seed", "", "| seed | " + " | ".join(main) + " |",
              "|---|" + "---|" * len(main)]
    for s in summary.seeds:
        lines.append(f"| {s} | " + " | ".join(fmt(summary.per_seed[s].get(k)) for k in main)
                     + " |")
    if main:
        lines += ["", "![distribution over seeds](summary.png)"]
    (summary.out_dir / "summary.md").write_text("\n".join(lines) + "\n")


def _plot(summary: Summary, main: List[str], path: Path) -> None:
    from ..viz import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, len(main), figsize=(2.2 * len(main) + 1, 3.2), squeeze=False)
    for ax, k in zip(axes[0], main):
        values = [float(summary.per_seed[s][k]) for s in summary.seeds]
        ax.boxplot(values, widths=0.5, showfliers=False)
        n = len(values)
        xs = [1 + 0.25 * ((i / (n - 1)) - 0.5) if n > 1 else 1 for i in range(n)]
        ax.scatter(xs, values, s=14, zorder=3)
        ax.set_xticks([])
        ax.set_title(k, fontsize=9)
    fig.suptitle(f"{len(summary.seeds)} seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
