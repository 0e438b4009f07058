"""The ``regression`` app: sequence regression with a recurrent spiking network.

:mod:`.config` holds the configuration, :mod:`.core` the task, the model, the objective and
the training (by (T)BPTT or an online rule's learner), :mod:`.bptt` the (T)BPTT run and its
comparisons, :mod:`.rules` the online rules as learners, :mod:`.online` the online-rule run
with its rule and memory comparisons (:mod:`.memory`), :mod:`.report` the figures and
reports. :func:`run` sends a config to the one its ``learning`` and comparisons
need.
"""

from __future__ import annotations

from pathlib import Path

from ..report import Result
from . import bptt, config, core, online
from .bptt import *  # noqa: F401,F403 - the app's public names
from .config import *  # noqa: F401,F403
from .core import *  # noqa: F401,F403
from .config import Config, validate

__doc__ = core.__doc__  # the app's methods, as the reports and `spikegrad list` show them
__all__ = list(config.__all__) + list(core.__all__) + list(bptt.__all__) + ["Result", "run"]


def run(cfg: Config, out_dir: Path, resume: bool = False) -> Result:
    """Train and evaluate ``cfg`` into ``out_dir`` (see :func:`.bptt.run_bptt` and
    :func:`.online.run_online` for what each writes)."""
    c = validate(cfg)
    if c.learning != "bptt" or c.compare or c.memory_lengths:
        return online.run_online(c, out_dir, resume=resume)
    return bptt.run_bptt(c, out_dir, resume=resume)
