"""numba's on-disk cache for the specialised kernels, which are closures over other compiled
functions.

The fused kernels are built per specialisation: a factory returns a compiled closure whose
cells hold the options (ints, bools, a dtype) and the compiled step functions it calls. numba
keys a cached closure by a hash of its cells' pickles, and a compiled function pickles with a
random per-process id (``Dispatcher._uuid``). So such a kernel never matched its cache entry
in another process: every process compiled its LIF kernels again (4-5 s before the first
step of a small LIF net, ~10 s for a spiking conv block), and each added an entry to the index.

:func:`njit` compiles with ``cache=True`` and keys a closure by what its compiled cells are:
their module, name, bytecode and the stamp (mtime, size) of their source file, and their own
cells, recursively. An edit of a callee's file (which numba's index, stamped with the caller's
file only, would not see) gives a new key. Plain cells are hashed as numba hashes them.
"""

from __future__ import annotations

import functools
import hashlib
import os

__all__ = ["njit", "closure_key"]


def _describe(value, depth: int = 0):
    """A picklable description of a closure cell that is the same in every process."""
    from numba.core.dispatcher import Dispatcher

    if depth > 32:
        raise RecursionError("closure cells nested deeper than 32 levels")
    if isinstance(value, Dispatcher):
        f = value.py_func
        try:
            st = os.stat(f.__code__.co_filename)
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        cells = tuple(_describe(c.cell_contents, depth + 1) for c in f.__closure__ or ())
        return ("jit", f.__module__, f.__qualname__, f.__code__.co_code, stamp, cells)
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(_describe(v, depth + 1) for v in value))
    return value


def closure_key(py_func) -> bytes:
    """The bytes hashed for the cells of ``py_func`` (empty without a closure)."""
    from numba.core.serialize import dumps

    if py_func.__closure__ is None:
        return b""
    return dumps(tuple(_describe(c.cell_contents) for c in py_func.__closure__))


@functools.lru_cache(maxsize=None)
def _cache_class():
    from numba.core.caching import FunctionCache

    class ClosureCache(FunctionCache):
        def _index_key(self, sig, codegen):
            f = self._py_func
            digest = (hashlib.sha256(f.__code__.co_code).hexdigest(),
                      hashlib.sha256(closure_key(f)).hexdigest())
            return (sig, codegen.magic_tuple(), digest)

    return ClosureCache


def njit(**options):
    """``numba.njit(cache=True, **options)`` with the closure key above."""
    import numba

    def wrap(f):
        d = numba.njit(cache=True, **options)(f)
        d._cache = _cache_class()(d.py_func)
        return d
    return wrap
