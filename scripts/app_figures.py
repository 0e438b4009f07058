"""The figure of each app's documentation page, copied from a real run of its default command.

    spikegrad run classification --out figruns/classification   # ... one folder per app
    python scripts/app_figures.py --runs figruns                # or --runs results/<sweep>

For each app in :data:`FIGURES` this script takes ``<runs>/<app>/<figure>`` (a folder written
by ``spikegrad run APP --out <runs>/<app>`` with the default config; ``<runs>/<app>/seed0``
is accepted too, as ``make results`` lays sweeps out), checks that the run used the config the
default command runs today, shrinks the PNG to at most ``MAX_WIDTH`` pixels wide, writes it to
``docs/apps/img/<app>-<figure>`` and rewrites the block between ``<!-- figure:begin -->`` and
``<!-- figure:end -->`` in ``docs/apps/<app>.md``: the image, its caption and the run it came
from (command, seed, commit, date). Apps whose run is missing or was made with another config
are left as they are and listed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "apps"
MAX_WIDTH = 1100

#: app -> (figure file of its run, caption)
FIGURES: Dict[str, Tuple[str, str]] = {
    "classification": ("membrane.png", "Output membranes of the trained digits network for one "
                                       "test digit: the neuron of its class (bold) crosses the "
                                       "threshold most often."),
    "regression": ("output.png", "The readout of the trained recurrent network against the "
                                 "target pattern."),
    "vision": ("feature_maps.png", "Spike maps of the convolutional blocks for one test "
                                   "sample."),
    "coding": ("error_profile.png", "Where in time the output error signal arrives under the "
                                    "rate and the first-spike loss."),
    "constraints": ("sparsity.png", "Accuracy against spikes per sample over the sparsity "
                                    "penalty's weights."),
    "biophysics": ("traces_cue_alif.png", "Membrane potentials and adaptive thresholds of the "
                                          "ALIF network in the cue-accumulation task, one "
                                          "test sample."),
    "conversion": ("accuracy.png", "Test accuracy against time steps: converted, QCFS, hybrid "
                                   "and directly trained."),
    "onchip": ("accuracy.png", "Test accuracy of BPTT and of the local three-factor rule on "
                                "float weights and on crossbar devices."),
    "robust": ("accuracy_vs_eps.png", "Accuracy under PGD-20 against the L-inf budget, per "
                                      "training objective."),
    "molecules": ("sa_vs_oracle_calls.png", "True SA of the top-100 and of all valid samples "
                                            "against oracle calls and agent updates: arm A "
                                            "(proxy gradient) and arm B (REINVENT)."),
    "bci": ("disruption.png", "Decoding R² in a sliding window (pooled over 8 independent "
                              "streams) before and after a disruption mid-stream: preferred "
                              "directions rotate by 45° (left) or 30 % of the channels fall "
                              "silent (right)."),
}

BEGIN, END = "<!-- figure:begin -->", "<!-- figure:end -->"


def _run_dir(runs: Path, app: str) -> Optional[Path]:
    for d in (runs / app, runs / app / "seed0"):
        if (d / "config.json").exists():
            return d
    return None


def _default_config(app: str) -> dict:
    from spikegrad.apps import get_app
    from spikegrad.apps.config import resolve_config

    mod = get_app(app)
    return json.loads(json.dumps(dataclasses.asdict(resolve_config(mod, mod.Config()))))


def _config_changes(measured: dict, expected: dict) -> List[str]:
    volatile = {"seed", "progress", "log"}  # the figure shows seed 0's run; the rest is output
    keys = (set(measured) | set(expected)) - volatile
    return sorted(k for k in keys if measured.get(k) != expected.get(k))


def _shrink(src: Path, dst: Path) -> Tuple[int, int]:
    from PIL import Image

    with Image.open(src) as im:
        if im.width > MAX_WIDTH:
            im = im.resize((MAX_WIDTH, round(im.height * MAX_WIDTH / im.width)),
                           Image.LANCZOS)
        im.save(dst, optimize=True)
        return im.size


def figure_block(app: str, run: Path, image: str, caption: str) -> str:
    cfg = json.loads((run / "config.json").read_text())
    env = {}
    if (run / "environment.json").exists():
        env = json.loads((run / "environment.json").read_text())
    commit = str(env.get("git_commit", "unknown"))[:7]
    date = datetime.datetime.fromtimestamp((run / "config.json").stat().st_mtime,
                                           datetime.timezone.utc).strftime("%Y-%m-%d")
    return (f"{BEGIN}\n![{caption}](img/{image})\n\n*{caption} From `spikegrad run {app}` "
            f"(the default config, seed {cfg.get('seed', 0)}) at commit {commit}, {date}; "
            f"the run's `report.md` holds this figure with the others. Remade by "
            f"`scripts/app_figures.py`.*\n{END}")


def replace_block(text: str, block: str, page: Path) -> str:
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(f"{page} needs exactly one {BEGIN} ... {END} pair")
    head, rest = text.split(BEGIN, 1)
    return head + block + rest.split(END, 1)[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, required=True,
                    help="folder holding one `spikegrad run APP --out` folder per app")
    ap.add_argument("--only", default="", help="comma-separated apps (default: all)")
    args = ap.parse_args(argv)
    apps = [a for a in args.only.split(",") if a] or list(FIGURES)
    unknown = sorted(set(apps) - set(FIGURES))
    if unknown:
        ap.error(f"no figure is chosen for {', '.join(unknown)}; apps: {', '.join(FIGURES)}")
    (DOCS / "img").mkdir(exist_ok=True)
    skipped = []
    for app in apps:
        figure, caption = FIGURES[app]
        run = _run_dir(args.runs, app)
        if run is None or not (run / figure).exists():
            skipped.append(f"{app}: no {args.runs / app / figure}")
            continue
        changed = _config_changes(json.loads((run / "config.json").read_text()),
                                  _default_config(app))
        if changed:
            skipped.append(f"{app}: {run} was run with another config ({', '.join(changed[:5])})")
            continue
        image = f"{app}-{figure}"
        size = _shrink(run / figure, DOCS / "img" / image)
        page = DOCS / f"{app}.md"
        page.write_text(replace_block(page.read_text(), figure_block(app, run, image, caption),
                                      page))
        print(f"app_figures: {app}: {image} {size[0]}x{size[1]} from {run}")
    for line in skipped:
        print(f"app_figures: left as it is: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
