"""The ``regression`` app: sequence regression with a recurrent spiking network.

:mod:`.core` holds the task, the model, the objective and (T)BPTT training;
:mod:`.online` trains the same model with online rules (e-prop, three-factor) and compares
rules and memory. :func:`run` sends a config to the one its ``learning`` and comparisons
need.
"""

from __future__ import annotations

from pathlib import Path

from . import core, online
from .core import *  # noqa: F401,F403 - the app's public names
from .core import __all__ as _core_names
from .core import Config, Result, validate

__doc__ = core.__doc__  # the app's methods, as the reports and `spikegrad list` show them
__all__ = list(_core_names) + ["run"]


def run(cfg: Config, out_dir: Path, resume: bool = False) -> Result:
    """Train and evaluate ``cfg`` into ``out_dir`` (see :func:`.core.run_bptt` and
    :func:`.online.run_online` for what each writes)."""
    c = validate(cfg)
    if c.learning != "bptt" or c.compare or c.memory_lengths:
        return online.run_online(c, out_dir, resume=resume)
    return core.run_bptt(c, out_dir, resume=resume)
