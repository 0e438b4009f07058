"""The ``conversion`` app: ANN-to-SNN conversion (plain, QCFS, hybrid) next to direct
surrogate-gradient training. :mod:`.config` holds the configuration, :mod:`.ann` the ANN twin,
:mod:`.measure` the evaluation over T, :mod:`.run` the run (its docstring is the report's
Methods), :mod:`.report` the tables and figures."""

from __future__ import annotations

from ..report import Result
from . import run as _run_module
from .config import ARCHS, DATASETS, METHODS, Config, validate
from .run import fine_tune, run, train_direct

__doc__ = _run_module.__doc__
__all__ = ["Config", "DATASETS", "ARCHS", "METHODS", "validate", "run", "fine_tune",
           "train_direct", "Result"]
