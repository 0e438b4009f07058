"""The ``bci`` app: motor-cortex velocity decoding by a recurrent spiking network trained
offline (SG-BPTT) or online (streaming e-prop), next to Wiener and Kalman decoders, with
costs, latency, memory against stream length and a disruption experiment. :mod:`.config`
holds the configuration, :mod:`.train` the two trainings, :mod:`.stream` latency and the
disruption experiment, :mod:`.memory` the memory probe, :mod:`.run` the run (its docstring is
the report's Methods), :mod:`.report` the tables and figures."""

from __future__ import annotations

from ..report import Result
from . import run as _run_module
from .config import DATA, DISRUPTIONS, Config, validate
from .run import load_data, run

__doc__ = _run_module.__doc__
__all__ = ["Config", "DATA", "DISRUPTIONS", "validate", "run", "load_data", "Result"]
