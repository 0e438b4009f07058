"""The ``onchip`` app: BPTT (smooth surrogate and STE) next to the online three-factor rule in
float and on analog crossbar arrays (4-bit naive, stochastic pulsed and mixed-precision
updates; PCM-like devices with drift). :mod:`.config` holds the configuration,
:mod:`.network` the network, devices and evaluation, :mod:`.rules` the rule and its learners,
:mod:`.run` the run (its docstring is the report's Methods), :mod:`.report` the tables and
figures."""

from __future__ import annotations

from ..report import Result
from . import run as _run_module
from .config import ARRAYS, DATASETS, METHODS, Config, validate
from .run import run, runs

__doc__ = _run_module.__doc__
__all__ = ["Config", "DATASETS", "METHODS", "ARRAYS", "validate", "run", "runs", "Result"]
