"""A run's folder: ``config.json``, ``metrics.json``, ``log.jsonl``, figures, ``report.md``."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import torch

from .config import to_json


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _package_versions() -> Dict[str, str]:
    """Versions of the packages that change numbers or speed (absent ones are skipped)."""
    found = {}
    for name in ("spikegrad", "numpy", "numba", "scipy", "scikit-learn", "mnist1d", "h5py",
                 "matplotlib", "tqdm"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def write_config(self, cfg) -> None:
        (self.path / "config.json").write_text(to_json(cfg) + "\n")
        env = {"python": sys.version.split()[0], "torch": torch.__version__,
               "platform": platform.platform(), "git_commit": _git_commit(),
               "threads": torch.get_num_threads(), "seed": getattr(cfg, "seed", None),
               "deterministic": getattr(cfg, "deterministic", None),
               "packages": _package_versions()}
        (self.path / "environment.json").write_text(json.dumps(env, indent=2) + "\n")

    def write_metrics(self, metrics: Dict[str, float]) -> None:
        (self.path / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")

    def write_report(self, title: str, methods: str, cfg, metrics: Dict[str, float],
                     history: List[dict], figures: Sequence[str]) -> Path:
        lines = [f"# {title}", "", "## Results", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(metrics.items())]
        lines += ["", "## Training curve", "", "| epoch | train loss | " +
                  " | ".join(k for k in history[-1] if k.endswith("accuracy")) + " |"]
        acc_keys = [k for k in history[-1] if k.endswith("accuracy")]
        lines.append("|---|---|" + "---|" * len(acc_keys))
        for r in history:
            lines.append(f"| {r['epoch']} | {r['train_loss']:.4f} | " +
                         " | ".join(_fmt(r[k]) for k in acc_keys) + " |")
        lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figures]
        lines += ["", "## Configuration", "", "```json", to_json(cfg), "```", "",
                  "## Methods", "", methods.strip(), ""]
        path = self.path / "report.md"
        path.write_text("\n".join(lines))
        return path


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)
