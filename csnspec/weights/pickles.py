"""Pickles read without running code, and without crashing or hanging on a hostile one.

Two guards. `scan` walks a pickle's opcodes without building anything and refuses one whose
objects nest deeper than MAX_DEPTH or whose objects, with every memo reference expanded, hold
more than MAX_NODES parts: hashing a dict key nested 200,000 deep overflows the C stack, and a
600-byte key built from memo references to depth 60 takes 2**60 steps to hash. Both are
refused in time proportional to the file. Then `NumpyOnly` builds dicts, lists, numbers,
strings and numpy arrays of plain numbers, and nothing else.
"""

from __future__ import annotations

import codecs
import io
import math
import pickle
import pickletools
from collections import OrderedDict

MAX_DEPTH = 100  # real checkpoints nest a few levels (dict of dicts of arrays)
MAX_NODES = 10_000_000  # parts of the pickle's objects, memo references expanded

# opcodes that add to the container below them rather than build a new object
_EXTEND = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}
_MARK = object()


class PickleRefused(ValueError):
    """A pickle csnspec will not load; the message says why, in words for the user."""


def scan(data) -> None:
    """Refuse (PickleRefused) a pickle too deep or too big once expanded; `data` is bytes or a
    binary file (read up to the pickle's STOP, so several pickles in a row scan one by one)."""
    stack: list = []
    memo: dict = {}
    try:
        for op, arg, _ in pickletools.genops(data):
            name = op.name
            if name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo[arg])
            elif name == "MARK":
                stack.append(_MARK)
            elif name == "DUP":
                stack.append(stack[-1])
            elif name == "POP":
                stack.pop()
            elif name == "POP_MARK":
                _pop_to_mark(stack)
            elif name == "STOP":
                return
            else:
                _apply(op, stack)
    except PickleRefused:
        raise
    except (ValueError, KeyError, IndexError, TypeError, EOFError) as err:
        raise PickleRefused(f"not a pickle ({err})") from None
    raise PickleRefused("not a pickle (no STOP opcode)")


def _apply(op, stack: list) -> None:
    """Pop what `op` consumes, push what it makes as (depth, nodes)."""
    popped: list = []
    for item in reversed(op.stack_before):
        if item is pickletools.stackslice:
            popped.extend(_pop_to_mark(stack))
        elif item is pickletools.markobject:
            continue  # popped with its slice
        else:
            popped.append(stack.pop())
    if not op.stack_after:
        return
    parts = [p for p in popped if p is not _MARK]
    if op.name in _EXTEND and parts:
        base, rest = parts[-1], parts[:-1]  # the container sits lowest on the stack
        depth = max([base[0], *(d + 1 for d, _ in rest)])
        nodes = base[1] + sum(n for _, n in rest)
    else:
        depth = 1 + max((d for d, _ in parts), default=0)
        nodes = 1 + sum(n for _, n in parts)
    if depth > MAX_DEPTH:
        raise PickleRefused(f"its objects nest more than {MAX_DEPTH} levels deep")
    if nodes > MAX_NODES:
        raise PickleRefused(
            f"its objects hold more than {MAX_NODES:,} parts once memo references are expanded"
        )
    stack.append((depth, nodes))


def _pop_to_mark(stack: list) -> list:
    items = []
    while True:
        item = stack.pop()
        if item is _MARK:
            return items
        items.append(item)


def scan_torch_file(path) -> None:
    """Scan the pickles of a torch.save file: the zip format's data.pkl, or the legacy
    format's leading pickles (magic number, protocol, system info, the object)."""
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith(".pkl")]
            if not names:
                raise PickleRefused("a zip file without a pickle in it")
            for n in names:
                with z.open(n) as f:
                    scan(io.BufferedReader(f))
        return
    with open(path, "rb") as f:
        for _ in range(4):
            scan(f)


class NumpyOnly(pickle.Unpickler):
    """Builds dicts, lists, numbers, strings and numpy arrays of plain numbers; nothing else.

    Every global a pickle names goes through `find_class`; only the constructors below exist,
    each checked so that no object, string, date or structured dtype gets through, and no array
    larger than the file it comes from (`max_items`) is allocated.
    """

    def __init__(self, file, *, max_items: int, **kwargs):
        super().__init__(file, **kwargs)
        self._allowed = _allowed_globals(max_items)

    def find_class(self, module: str, name: str):
        fn = self._allowed.get((module, name))
        if fn is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return fn


class _NdarrayClass:
    """Stands for numpy.ndarray in a pickle: an argument of `_reconstruct`, never called."""

    def __repr__(self) -> str:
        return "numpy.ndarray"

    def __call__(self, *args, **kwargs):
        # numpy's own pickles never call it; a call could build an object array unchecked
        raise pickle.UnpicklingError("refusing a direct call of numpy.ndarray")


_NDARRAY = _NdarrayClass()


def _allowed_globals(max_items: int) -> dict:
    import numpy as np

    try:  # numpy >= 2 keeps these in numpy._core; pickles name numpy.core
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar

    def plain(dtype):
        if isinstance(dtype, np.dtype) and dtype.hasobject:
            raise pickle.UnpicklingError("refusing a numpy array of Python objects")
        if (
            not isinstance(dtype, np.dtype)
            or dtype.kind not in "biufc"
            or dtype.fields is not None
            or dtype.subdtype is not None
        ):
            raise pickle.UnpicklingError(
                f"refusing a numpy array of {getattr(dtype, 'name', type(dtype).__name__)} "
                "(csnspec reads arrays of plain numbers only)"
            )
        return dtype

    def make_dtype(obj, align=False, copy=False):
        if not isinstance(obj, str):
            raise pickle.UnpicklingError("refusing a numpy dtype built from a non-string")
        try:
            return plain(np.dtype(obj, align, copy))
        except TypeError as err:
            raise pickle.UnpicklingError(f"refusing numpy dtype {obj!r}: {err}") from None

    def reconstruct(cls, shape, dtype):
        if cls is not _NDARRAY:
            raise pickle.UnpicklingError("refusing a numpy array subclass")
        if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise pickle.UnpicklingError(f"refusing a numpy array of shape {shape!r}")
        if math.prod(shape) > max_items:
            raise pickle.UnpicklingError(
                f"refusing a numpy array of shape {shape}: larger than the file holding it"
            )
        if isinstance(dtype, bytes | str):  # numpy pickles pass a typecode (b'b') here
            try:
                code = dtype.decode("latin1") if isinstance(dtype, bytes) else dtype
                dtype = np.dtype(code)
            except TypeError as err:
                raise pickle.UnpicklingError(f"refusing numpy dtype {dtype!r}: {err}") from None
        return _reconstruct(np.ndarray, shape, plain(dtype))

    def make_scalar(dtype, data=None):
        return scalar(plain(dtype), data) if data is not None else scalar(plain(dtype))

    def encode(text, encoding="latin1"):  # how Python 3 pickles bytes at protocol 2
        if not isinstance(text, str) or encoding != "latin1":
            raise pickle.UnpicklingError("refusing _codecs.encode")
        return codecs.encode(text, encoding)

    out = {("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): make_dtype}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(mod, "_reconstruct")] = reconstruct
        out[(mod, "scalar")] = make_scalar
    out[("_codecs", "encode")] = encode
    out[("collections", "OrderedDict")] = OrderedDict
    return out
