"""The ``robust`` app: adversarial robustness and the information bottleneck of a spiking
encoder trained through surrogate gradients (standard, PGD-AT, TRADES, VIB and robust-IB
objectives), attacked white-box, by AutoAttack and by transfer, with gradient-masking checks
and the information plane. :mod:`.config` holds the configuration, :mod:`.network` the models
and objectives, :mod:`.evaluate` the attacks and checks, :mod:`.run` the run (its docstring is
the report's Methods), :mod:`.report` the tables and figures."""

from __future__ import annotations

from ..report import Result
from . import run as _run_module
from .config import OBJECTIVES, Config, validate
from .run import ib_plan, run, train

__doc__ = _run_module.__doc__
__all__ = ["Config", "OBJECTIVES", "validate", "run", "train", "ib_plan", "Result"]
