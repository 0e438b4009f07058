"""A run's folder: ``config.json``, ``metrics.json``, ``log.jsonl``, figures, ``report.md``."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from .config import ConfigError, to_json


@dataclasses.dataclass
class Result:
    """What every app's ``run`` returns: the metrics it wrote to ``metrics.json``, the
    per-epoch (or per-step) history and the run folder."""

    metrics: Dict[str, float]
    history: List[dict]
    out_dir: Path


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


def check_out_dir(text: str, option: str = "--out") -> Path:
    """``text`` as a run folder that can be created and written, or a :class:`ConfigError`
    that says what is wrong with it (empty, a file, below a file, not writable)."""
    if not str(text).strip():
        # Path("") is ".", which would scatter a run's files over the current folder
        raise ConfigError(f"{option} is empty; give a folder, e.g. {option} runs/my-run")
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{option} {out} is a file, not a folder; give a folder path (it is "
                          "created if missing)")
    parent = out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{option} {out} is below {parent}, which is a file, not a folder")
    where = out if out.exists() else parent
    if not os.access(where, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {out}: no permission to write in {where}; choose a folder "
                          "you can write to")
    return out


def make_out_dir(out: Path, option: str = "--out") -> Path:
    """Create run folder ``out`` and write a file in it (which os.access cannot promise, e.g.
    for root, on read-only or virtual file systems), or raise a :class:`ConfigError`."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise ConfigError(f"{option} {out}: cannot write there ({e.strerror or e}); choose a "
                          "folder you can write to") from None
    return out


def resume_point(path: Path) -> Optional[Path]:
    """A file below run folder ``path`` that a resumed run continues from: the newest valid
    Trainer checkpoint of any of its trainings, or a finished sweep point (``points/*.json``);
    ``None`` if there is none (a missing folder, an empty one, a run killed before its first
    checkpoint, or one whose checkpoints are all unreadable)."""
    from ..train.checkpoint import latest_valid

    path = Path(path)
    if not path.is_dir():
        return None
    folders = sorted({p.parent for p in path.rglob("ckpt_epoch*.pt")})
    for folder in folders:
        found = latest_valid(folder)
        if found is not None:
            return found[0]
    points = sorted(path.glob("points/*.json"))
    return points[0] if points else None


#: Config keys that change what a run prints or logs, not what it computes: a resume may
#: change them (``--quiet`` sets ``progress=false``, a sweep's seeds run quietly).
PRESENTATION_KEYS = frozenset({"progress", "log"})


def config_changes(saved: Mapping[str, Any], now: Mapping[str, Any],
                   defaults: Optional[Mapping[str, Any]] = None) -> List[str]:
    """``"key saved -> now"`` for every key (but :data:`PRESENTATION_KEYS`) whose value
    differs between two configs given as JSON-like dicts, sorted by key; a key that only one
    of them has shows as ``(absent)`` on the other side, unless the saved config lacks it and
    its value now is its default in ``defaults`` (a key added to the app after that run was
    started, whose default keeps the old behaviour)."""
    missing = object()
    defaults = defaults or {}
    changes = []
    for key in sorted(set(saved) | set(now)):
        old, new = saved.get(key, missing), now.get(key, missing)
        if old is missing and key in defaults and defaults[key] == new:
            continue
        if key not in PRESENTATION_KEYS and old != new:
            show = [("(absent)" if v is missing else json.dumps(v)) for v in (old, new)]
            changes.append(f"{key} {show[0]} -> {show[1]}")
    return changes


def config_defaults(cfg) -> dict:
    """The JSON values of a config dataclass's field defaults (fields without a plain,
    JSON-able default are left out)."""
    out = {}
    for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(cfg) else ():
        if f.default is not dataclasses.MISSING:
            try:
                out[f.name] = json.loads(json.dumps(f.default))
            except (TypeError, ValueError):
                pass
    return out


def check_resume_config(path: Path, cfg, flag: str = "--resume") -> None:
    """Raise a :class:`ConfigError` when run folder ``path`` was started with a config other
    than ``cfg`` (the validated config, as the app writes it to ``config.json``): its
    checkpoints then come from another run, and continuing from them would give a result of
    two configs. A folder without ``config.json`` has nothing to compare and passes."""
    saved_path = Path(path) / "config.json"
    if not saved_path.exists():
        return
    try:
        saved = json.loads(saved_path.read_text())
    except json.JSONDecodeError:
        saved = None
    if not isinstance(saved, dict):
        raise ConfigError(f"{flag}: {saved_path} is not a config (a JSON object), so the run's "
                          "config is unknown; start a new run with another --out")
    changes = config_changes(saved, json.loads(to_json(cfg)), config_defaults(cfg))
    if changes:
        raise ConfigError(
            f"{flag}: the run in {path} was started with another config ({'; '.join(changes)}"
            f", saved -> now); resuming would mix the two. Resume with the saved values (drop "
            "those --set or repeat the saved ones; see its config.json), or start a new run "
            "with another --out")


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        # Whole-run progress (spikegrad.train.progress.Progress) for the trainings of a run
        # that has several; None: each training reports its own.
        self.progress = None

    def write_config(self, cfg) -> None:
        # no config check here: from Python, resuming with another config is how a run is
        # extended (more epochs) or a sweep's finished points reused (the apps' tests do
        # both); `spikegrad run --resume` checks (check_resume_config)
        (self.path / "config.json").write_text(to_json(cfg) + "\n")
        env = {"python": sys.version.split()[0], "torch": torch.__version__,
               "platform": platform.platform(), "git_commit": _git_commit(),
               "threads": torch.get_num_threads(), "seed": getattr(cfg, "seed", None),
               "deterministic": getattr(cfg, "deterministic", None),
               "packages": _package_versions()}
        (self.path / "environment.json").write_text(json.dumps(env, indent=2) + "\n")

    def save_figure(self, fig, name: str, dpi: int = 110) -> str:
        """``fig`` laid out tightly, written to ``name`` in the run folder and closed (pyplot
        keeps every open figure); returns ``name``, as :meth:`write_report` links it."""
        import matplotlib.pyplot as plt
        fig.tight_layout()
        fig.savefig(self.path / name, dpi=dpi)
        plt.close(fig)
        return name

    def write_metrics(self, metrics: Dict[str, float]) -> None:
        (self.path / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")

    def write_report(self, title: str, methods: str, cfg, metrics: Dict[str, float],
                     tables: Sequence["Table"] = (), figures: Sequence[str] = ()) -> Path:
        """``report.md``: the title, the metrics, ``tables`` in order, the figures, the
        configuration and ``methods`` (the app's docstring, its reStructuredText markup
        turned into Markdown)."""
        lines = [f"# {title}"]
        lines += Table("Results", ("metric", "value"), sorted(metrics.items())).markdown()
        for table in tables:
            lines += table.markdown()
        if figures:
            lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figures]
        lines += ["", "## Configuration", "", "```json", to_json(cfg), "```", "",
                  "## Methods", "", markdown(methods.strip()), ""]
        path = self.path / "report.md"
        path.write_text("\n".join(lines))
        return path


@dataclasses.dataclass(frozen=True)
class Table:
    """A section of ``report.md``: a title, a sentence or two, and a table whose cells are
    written with :func:`fmt` (a ``str`` cell as it is)."""

    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    note: str = ""

    def markdown(self) -> List[str]:
        lines = ["", f"## {self.title}", ""] + ([self.note, ""] if self.note else [])
        lines += ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in self.rows]
        return lines


def curve(history: Sequence[Mapping[str, Any]], columns: Sequence[Tuple[str, str]],
          max_rows: Optional[int] = None, title: str = "Training curve", note: str = ""
          ) -> Table:
    """The training curve as a :class:`Table`: ``columns`` are ``(header, history key)``; a
    record without the key gets an empty cell. With ``max_rows``, every k-th record (and the
    last) so that about ``max_rows`` rows remain (the whole curve is in ``log.jsonl``)."""
    rows = list(history)
    if max_rows is not None and len(rows) > max_rows:
        stride = -(-len(rows) // (max_rows - 1))
        rows = rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])
    return Table(title, [h for h, _ in columns], [[r.get(k) for _, k in columns] for r in rows],
                 note)


def epoch_curve(history: Sequence[Mapping[str, Any]], first: Sequence[Tuple[str, str]] = ()
                ) -> Table:
    """:func:`curve` of a classifier: ``first`` columns, the epoch, the training loss and
    every ``*accuracy`` key any record has."""
    keys = dict.fromkeys(k for r in history for k in r if k.endswith("accuracy"))
    return curve(history, list(first) + [("epoch", "epoch"), ("train loss", "train_loss")]
                 + [(k, k) for k in keys])


def markdown(rst: str) -> str:
    """Docstring markup as Markdown: ````code```` and Sphinx roles (``:class:`x```) become
    code spans, ``**bold**`` stays."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", rst)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def fmt(v) -> str:
    """A value for a report table: floats to 4 significant digits, None as an empty cell."""
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return "" if v is None else str(v)
