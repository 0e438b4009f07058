"""The ``molecules`` app: de novo design for synthetic accessibility, a learned proxy's
gradient through straight-through Gumbel-softmax (arm A) against REINVENT's policy gradient on
the true oracle (arm B), from one pretrained SMILES prior, with the GIN-vs-fingerprint proxy
comparison. :mod:`.config` holds the configuration, :mod:`.models` the networks, :mod:`.arms`
the steps, :mod:`.run` the run (its docstring is the report's Methods), :mod:`.report` the
tables and figures. Needs the ``molecules`` extra (``pip install 'spikegrad[molecules]'``) and
the MOSES SMILES (``pip install --no-deps molsets``)."""

from __future__ import annotations

from ..report import Result
from . import run as _run_module
from .config import PROXY_SETS, Config, validate
from .run import run

__doc__ = _run_module.__doc__
__all__ = ["Config", "PROXY_SETS", "validate", "run", "Result"]
