"""The ``nir`` package (an optional extra, imported lazily) and spikegrad's hints in NIR metadata.

A NIR node's fields define what it computes; its free-form ``metadata`` dict may carry more.
spikegrad writes there, under keys prefixed ``spikegrad_``, only what NIR has no field for and
what does not change the forward dynamics: which constants are trained (``learn_tau``...), the
surrogate, ``detach_reset``, backends, whether a conv had a bias, ``autapses``, and on the graph
the ``dt`` and discretisation of the export. Other tools ignore them; :func:`from_nir` uses them
to rebuild the same modules (and falls back to plain ones without them).
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np

PREFIX = "spikegrad_"


def require_nir():
    """The ``nir`` module, or an ImportError that names the extra to install."""
    try:
        import nir
    except ImportError as e:
        raise ImportError("spikegrad's NIR export/import needs the 'nir' extra: "
                          "pip install 'spikegrad[nir]' (nir>=1.0)") from e
    return nir


def _plain(value: Any) -> Any:
    """A metadata value as a Python scalar (HDF5 gives numpy scalars and bytes back)."""
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.str_):
        return str(value)
    return value


def read_hints(node) -> Dict[str, Any]:
    """spikegrad's hints on a NIR node (or graph), without the prefix; ``{}`` if none."""
    meta = getattr(node, "metadata", None)
    if not isinstance(meta, dict):
        return {}
    return {k[len(PREFIX):]: _plain(v) for k, v in meta.items()
            if isinstance(k, str) and k.startswith(PREFIX)}


def write_hints(node, **hints: Any):
    """Adds ``hints`` (those not None) to ``node.metadata``; returns ``node``."""
    if not isinstance(getattr(node, "metadata", None), dict):
        node.metadata = {}
    node.metadata.update({PREFIX + k: v for k, v in hints.items() if v is not None})
    return node
