"""Run a compiled kernel's thread slices on torch's OpenMP team without the GIL.

:func:`spikegrad.kernels.parallel.run_slices` hands each slice to a Python callback on the
team's threads. Each callback takes the GIL, gets a Python thread state (created and destroyed
on every call in a thread Python did not start) and dispatches the numba kernel from Python.
The threads take turns at the GIL, so the second slice starts 100-200 us after the first, and
the region ends ~70 us after the last slice: a split region costs ~65 us more than its slices
(``benchmarks/launch.py``), most of the cost of a chunked pass (``Sequential(recompute=True)``
makes ~60 regions per step on workload A512).

Here the team runs a numba ``cfunc`` instead, a trampoline per argument layout: it reads the
arguments (array addresses and shapes, scalars) and the kernel's address from an int64 block,
takes its slices (thread ``j`` of ``k``: slices ``j, j + k, ...``) and calls the kernel through
its address with numba's calling convention, all in compiled code. Each thread also notes its
CPU time, for the split's efficiency test (:class:`spikegrad.kernels.parallel._Payoff`), and an
exception raised in the kernel (e.g. an index out of bounds under ``NUMBA_BOUNDSCHECK=1``) is
flagged there and raised here as a RuntimeError.

The kernel is the one numba compiled (or loaded from its cache) for the same argument types
as a call from Python, so both paths compute the same thing. A trampoline does not depend on
the kernel; the C functions it calls (OpenMP's thread number, ``clock_gettime``) come through
the block too, so its machine code holds no addresses and numba caches it on disk: its source
is written once to a file in the trampoline cache (:func:`cache_dir`), named by a hash of the
layout and of this module's source. Compiling one takes ~0.3 s; loading it, milliseconds.

Only C-contiguous arrays, int, bool and float scalars and ctypes functions travel this way;
:func:`launch` returns None for anything else (and without an OpenMP runtime that exports
``GOMP_parallel``, or in a forked child), and the caller runs the Python path. If a
trampoline cannot be built (say, a numba release moved the internals it uses), a
RuntimeWarning says so and the process keeps to the Python path.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
import time
import warnings
from typing import Optional, Sequence, Tuple

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.callconv import excinfo_t
from numba.extending import intrinsic

_CLOCK_THREAD_CPUTIME_ID = 3  # Linux
# The block: a header, the arguments' slots, the slice bounds (two per slice), the CPU
# nanoseconds per thread, and clock scratch (two per thread). Header: total length, slices,
# error flag, offset of the bounds, of the CPU times, of the scratch, addresses of the kernel,
# omp_get_thread_num, omp_get_num_threads and clock_gettime.
_HEADER = 10


# --------------------------------------------------------------------------------------------
# intrinsics the trampolines use
# --------------------------------------------------------------------------------------------

@intrinsic
def _vp(typingctx, addr):
    """An int64 address as a ``void*``."""
    sig = types.voidptr(addr)

    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], context.get_value_type(types.voidptr))
    return sig, codegen


@intrinsic
def _i64p(typingctx, p):
    """``void*`` as ``int64*``."""
    sig = types.CPointer(types.int64)(p)

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(sig.return_type))
    return sig, codegen


@intrinsic
def _f64(typingctx, bits):
    """The float64 whose bits an int64 holds."""
    sig = types.float64(bits)

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))
    return sig, codegen


@intrinsic
def _int_call(typingctx, addr):
    """``int f(void)`` at ``addr``, widened to int64."""
    sig = types.int64(addr)

    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.IntType(32), [])
        r = builder.call(builder.inttoptr(args[0], fnty.as_pointer()), [])
        return builder.sext(r, ir.IntType(64))
    return sig, codegen


@intrinsic
def _clock(typingctx, addr, block, index):
    """``clock_gettime(CLOCK_THREAD_CPUTIME_ID, &block[index])`` (``clock_gettime`` at
    ``addr``; a timespec is two int64 on Linux x86-64 and aarch64)."""
    sig = types.void(addr, block, index)

    def codegen(context, builder, sig, args):
        i32, vp = ir.IntType(32), context.get_value_type(types.voidptr)
        fnty = ir.FunctionType(i32, [i32, vp])
        base = builder.bitcast(args[1], context.get_value_type(types.CPointer(types.int64)))
        ts = builder.bitcast(builder.gep(base, [args[2]]), vp)
        builder.call(builder.inttoptr(args[0], fnty.as_pointer()),
                     [ir.Constant(i32, _CLOCK_THREAD_CPUTIME_ID), ts])
        return context.get_dummy_value()
    return sig, codegen


def _caller(argtys: tuple):
    """An intrinsic ``call(address, (args...)) -> 1 if it raised, else 0`` that calls the
    numba-compiled function at ``address`` (numba's calling convention, no return value)
    with arguments of types ``argtys``; ``args`` holds int64 addresses where ``argtys`` has
    ctypes functions. Through the address, the kernel is not compiled into the trampoline."""
    @intrinsic
    def call(typingctx, addr, packed):
        sig = types.int64(addr, packed)

        def codegen(context, builder, sig, args):
            cc = context.call_conv
            fnty = cc.get_function_type(types.none, list(argtys))
            fn = builder.inttoptr(args[0], fnty.as_pointer())
            values = []
            for n, ty in enumerate(argtys):
                v = builder.extract_value(args[1], n)
                if isinstance(ty, types.ExternalFunctionPointer):
                    v = builder.inttoptr(v, context.get_value_type(ty))
                values.append(v)
            ret = cgutils.alloca_once(builder, cc.get_return_type(types.none).pointee)
            builder.store(cgutils.get_null_value(ret.type.pointee), ret)
            exc = cgutils.alloca_once(builder, ir.PointerType(excinfo_t))
            real = list(cc._get_arg_packer(list(argtys)).as_arguments(builder, values))
            code = builder.call(fn, [ret, exc] + real)
            status = cc._get_return_status(builder, code, builder.load(exc))
            return builder.zext(status.is_error, ir.IntType(64))
        return sig, codegen
    return call


# --------------------------------------------------------------------------------------------
# argument layouts
# --------------------------------------------------------------------------------------------

_ND = np.ndarray
_DTYPES = {np.dtype(t).num: np.dtype(t).name for t in
           (np.float32, np.float64, np.int64, np.int32, np.int16, np.int8, np.uint64,
            np.uint32, np.uint16, np.uint8, np.bool_)}
_fn_types: dict = {}  # a ctypes function's signature key -> its numba type


def _pack(args, kinds: list, slots: list) -> bool:
    """Appends each argument's kind and block slots; False if one cannot travel. Kinds:
    ``("a", dtype, ndim)`` a C-contiguous array (slots: address, shape), ``("b",)``,
    ``("i", dtype)``, ``("f", dtype)`` scalars (a float's bits as int64) and ``("c", key)`` a
    ctypes function (slot: its address)."""
    for a in args:
        t = type(a)
        if t is _ND:
            name = _DTYPES.get(a.dtype.num)
            if name is None or not a.flags.c_contiguous:
                return False
            kinds.append(("a", name, a.ndim))
            slots.append(a.ctypes.data)
            slots.extend(a.shape)
        elif t is bool or t is np.bool_:
            kinds.append(("b",))
            slots.append(int(a))
        elif t is int:
            kinds.append(("i", "int64"))
            slots.append(a)
        elif isinstance(a, np.integer) and a.dtype.num in _DTYPES:
            kinds.append(("i", a.dtype.name))
            slots.append(int(a))
        elif t is float or (isinstance(a, np.floating) and a.dtype.itemsize <= 8):
            kinds.append(("f", "float64" if t is float else a.dtype.name))
            slots.append(int(np.float64(a).view(np.int64)))
        elif isinstance(a, ctypes._CFuncPtr):
            ty = numba.typeof(a)
            key = str(ty)
            _fn_types.setdefault(key, ty)
            kinds.append(("c", key))
            slots.append(ctypes.cast(a, ctypes.c_void_p).value)
        else:
            return False
    return True


def _numba_type(kind: tuple):
    if kind[0] == "a":
        return types.Array(numba.from_dtype(np.dtype(kind[1])), kind[2], "C")
    if kind[0] == "b":
        return types.boolean
    if kind[0] == "c":
        return _fn_types[kind[1]]
    return numba.from_dtype(np.dtype(kind[1]))


def argtypes(kinds: tuple, n_before: int) -> tuple:
    """The kernel's numba argument types: the kinds' types with ``lo, hi`` (int64) after the
    first ``n_before``."""
    tys = [_numba_type(k) for k in kinds]
    return tuple(tys[:n_before] + [types.int64, types.int64] + tys[n_before:])


def caller_for(kinds: tuple, n_before: int):
    """The kernel-calling intrinsic of a trampoline (used by the generated modules)."""
    return _caller(argtypes(kinds, n_before))


def _source(kinds: tuple, n_before: int) -> str:
    """The source of the trampoline module for these kinds (``lo, hi`` after ``n_before``)."""
    lines = ["from numba import carray, cfunc, types",
             "import numpy as np",
             "from spikegrad.kernels.native import (_HEADER, _clock, _f64, _i64p, _int_call,",
             "                                      _vp, caller_for)",
             f"KINDS = {kinds!r}",
             f"_call = caller_for(KINDS, {n_before})",
             "",
             "",
             "@cfunc(types.void(types.voidptr), cache=True)",
             "def trampoline(data):",
             "    h = carray(_i64p(data), (_HEADER,))",
             "    a = carray(_i64p(data), (h[0],))"]
    names, pos = [], _HEADER
    for n, kind in enumerate(kinds):
        name = f"x{n}"
        if kind[0] == "a":
            dims = ", ".join(f"a[{pos + 1 + d}]" for d in range(kind[2]))
            lines.append(f"    {name} = carray(_vp(a[{pos}]), ({dims},), np.{kind[1]})")
            pos += 1 + kind[2]
        elif kind[0] == "b":
            lines.append(f"    {name} = a[{pos}] != 0")
            pos += 1
        elif kind[0] == "c":
            lines.append(f"    {name} = a[{pos}]")
            pos += 1
        elif kind[0] == "i":
            lines.append(f"    {name} = np.{kind[1]}(a[{pos}])")
            pos += 1
        else:
            lines.append(f"    {name} = np.{kind[1]}(_f64(a[{pos}]))")
            pos += 1
        names.append(name)
    packed = ", ".join(names[:n_before] + ["a[so + 2 * s]", "a[so + 2 * s + 1]"]
                       + names[n_before:])
    lines += [
        "    j = _int_call(a[7])",
        "    k = _int_call(a[8])",
        "    so, co, ko = a[3], a[4], a[5] + 2 * j",
        "    _clock(a[9], data, ko)",
        "    c0 = a[ko] * 1000000000 + a[ko + 1]",
        "    s = j",
        "    while s < a[1]:",
        f"        if _call(a[6], ({packed},)):",
        "            a[2] = 1",
        "        s += k",
        "    _clock(a[9], data, ko)",
        "    a[co + j] = a[ko] * 1000000000 + a[ko + 1] - c0",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# the trampoline cache
# --------------------------------------------------------------------------------------------

def _module_hash() -> str:
    with open(__file__, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:12]


def cache_dir() -> str:
    """Where trampoline sources (and, beside them, numba's cache of their code) go:
    ``$SPIKEGRAD_TRAMPOLINE_DIR``, else ``$NUMBA_CACHE_DIR/spikegrad-trampolines``, else
    ``$XDG_CACHE_HOME/spikegrad/trampolines`` (``~/.cache`` by default)."""
    d = os.environ.get("SPIKEGRAD_TRAMPOLINE_DIR")
    if d:
        return d
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.path.join(os.environ["NUMBA_CACHE_DIR"], "spikegrad-trampolines")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "spikegrad", "trampolines")


def _write(path: str, text: str) -> None:
    """``text`` to ``path`` atomically (processes writing the same file race harmlessly)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _load(kinds: tuple, n_before: int):
    """The trampoline cfunc for these kinds: its module from the cache directory (written
    first if missing), compiled or loaded from numba's cache on import. If the directory
    cannot be written, a private temporary one (compiled every process)."""
    src = _source(kinds, n_before)
    name = "spikegrad_trampoline_" + hashlib.sha256(
        (_MODULE_HASH + src).encode()).hexdigest()[:20]
    for d in (cache_dir(), None):
        try:
            if d is None:
                d = _private_dir()
            os.makedirs(d, exist_ok=True)
            path = os.path.join(d, name + ".py")
            if not os.path.exists(path):
                _write(path, src)
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # numba's cache locator looks the module up
            spec.loader.exec_module(module)
            return module.trampoline
        except OSError:
            continue
    raise OSError("no writable directory for the compiled trampolines")


_private: Optional[str] = None


def _private_dir() -> str:
    global _private
    if _private is None:
        _private = tempfile.mkdtemp(prefix="spikegrad-trampolines-")
    return _private


_MODULE_HASH = _module_hash()


# --------------------------------------------------------------------------------------------
# launching
# --------------------------------------------------------------------------------------------

class _Runtime:
    """``GOMP_parallel`` and the addresses of the C functions the trampolines call."""

    def __init__(self, lib: ctypes.CDLL):
        self.proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
        self.parallel = lib.GOMP_parallel
        self.parallel.argtypes = [self.proto, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        self.parallel.restype = None
        libc = ctypes.CDLL(None)
        addr = lambda f: ctypes.cast(f, ctypes.c_void_p).value  # noqa: E731
        self.addresses = (addr(lib.omp_get_thread_num), addr(lib.omp_get_num_threads),
                          addr(libc.clock_gettime))


_runtime: Optional[_Runtime] = None
_lock = threading.Lock()
_trampolines: dict = {}   # (kinds, n_before) -> (cfunc, ctypes callback)
_entries: dict = {}       # (kernel, kinds, n_before) -> (address, compile result)


def set_runtime(lib: Optional[ctypes.CDLL]) -> None:
    """Called by :mod:`spikegrad.kernels.parallel` with the OpenMP library torch loaded (None:
    no native launches, e.g. in a forked child)."""
    global _runtime
    with _lock:
        _runtime = None if lib is None else _Runtime(lib)


def _trampoline(kinds: tuple, n_before: int):
    key = (kinds, n_before)
    with _lock:
        tramp = _trampolines.get(key)
        if tramp is None:
            compiled = _load(kinds, n_before)
            tramp = _trampolines[key] = (compiled, _runtime.proto(compiled.address))
    return tramp


def _entry(kernel, kinds: tuple, n_before: int) -> int:
    """The address of ``kernel`` compiled for these argument types (compiled, or loaded from
    numba's cache, on first use)."""
    key = (kernel, kinds, n_before)
    with _lock:
        entry = _entries.get(key)
        if entry is None:
            sig = argtypes(kinds, n_before)
            kernel.compile(sig)
            cres = kernel.overloads[sig]
            if cres.signature.return_type != types.none:
                raise TypeError(f"{kernel}: a kernel run in slices must return nothing")
            entry = _entries[key] = (
                cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name), cres)
    return entry[0]


def launch(kernel, before: tuple, slices: Sequence[Tuple[int, int]], after: tuple = ()
           ) -> Optional[Tuple[float, int, float]]:
    """``kernel(*before, lo, hi, *after)`` for every slice on a team of ``len(slices)``
    threads, GIL-free (``kernel``: a numba dispatcher). Returns ``(cpu_s, threads, wall_s)``
    for the efficiency test, or None when the arguments or the process cannot take this path
    (then nothing has run)."""
    rt = _runtime
    if rt is None:
        return None
    kinds: list = []
    slots: list = []
    if not _pack(before, kinds, slots) or not _pack(after, kinds, slots):
        return None
    kinds = tuple(kinds)
    nb = len(before)
    tramp = _trampolines.get((kinds, nb))
    entry = _entries.get((kernel, kinds, nb))
    if tramp is None or entry is None:
        try:
            tramp = tramp or _trampoline(kinds, nb)
            entry = entry or (_entry(kernel, kinds, nb), None)
        except Exception as e:  # e.g. a numba whose internals moved: the Python path works
            warnings.warn(f"spikegrad: thread slices go through Python callbacks from now on "
                          f"(the compiled trampoline failed: {type(e).__name__}: {e})",
                          RuntimeWarning, stacklevel=3)
            set_runtime(None)
            return None
    addr = entry[0]
    n = len(slices)
    so = _HEADER + len(slots)
    co = so + 2 * n
    ko = co + n
    block = np.zeros(ko + 2 * n, np.int64)
    block[:_HEADER] = (block.size, n, 0, so, co, ko, addr, *rt.addresses)
    block[_HEADER:so] = slots
    block[so:co] = [b for sl in slices for b in sl]
    t0 = time.perf_counter()
    # ctypes releases the GIL for the call; ``before`` and ``after`` hold the arrays behind
    # the addresses until it returns
    rt.parallel(tramp[1], block.ctypes.data, n, 0)
    wall = time.perf_counter() - t0
    if block[2]:
        raise RuntimeError(
            f"{getattr(kernel, '__name__', 'kernel')}: the compiled kernel raised an exception "
            "in a thread slice (e.g. an index out of bounds under NUMBA_BOUNDSCHECK=1); set "
            "SPIKEGRAD_NATIVE_THREADS=0 to run the slices from Python and see it raised")
    cpu = block[co:ko]
    return float(cpu.sum()) * 1e-9, max(1, int(np.count_nonzero(cpu))), wall
