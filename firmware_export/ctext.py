"""Formatting numpy arrays and scalars as C99 source (const tables, golden vectors)."""

from __future__ import annotations

import numpy as np

_CTYPES = {
    np.dtype(np.int8): "int8_t", np.dtype(np.uint8): "uint8_t", np.dtype(np.int16): "int16_t",
    np.dtype(np.uint16): "uint16_t", np.dtype(np.int32): "int32_t", np.dtype(np.uint32): "uint32_t",
    np.dtype(np.int64): "int64_t", np.dtype(np.float32): "float",
}


def c_float(v: float) -> str:
    """A float32 literal that reads back to exactly the same float32 (9 significant digits)."""
    f = float(np.float32(v))
    if not np.isfinite(f):
        raise ValueError(f"non-finite float {v!r} cannot go into a C table")
    s = f"{f:.9g}"
    if "e" not in s and "." not in s:
        s += ".0"
    return s + "f"


def c_int(v: int, dtype: np.dtype) -> str:
    v = int(v)
    if dtype == np.dtype(np.int64):
        # INT64_C keeps large constants well-typed; the minimum needs the usual -MAX-1 spelling
        return f"INT64_C({v})" if v != -(2**63) else "(-INT64_C(9223372036854775807) - 1)"
    if dtype == np.dtype(np.int32) and v == -(2**31):
        return "(-2147483647 - 1)"
    if dtype in (np.dtype(np.uint32), np.dtype(np.uint16), np.dtype(np.uint8)):
        return f"{v}u"
    return str(v)


def c_values(a: np.ndarray, per_line: int = 12) -> str:
    a = np.asarray(a)
    flat = a.ravel()
    if a.dtype == np.float32:
        items = [c_float(v) for v in flat]
    else:
        items = [c_int(v, a.dtype) for v in flat]
    if not items:
        return "0"  # C forbids empty initializers; the length macro stays 0
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return "\n    " + ",\n    ".join(lines) + "\n"


def c_array(name: str, a: np.ndarray, static: bool = False, length: str | None = None) -> str:
    """`const T name[N] = {...};` for a numpy array (flattened, row-major)."""
    a = np.asarray(a)
    ctype = _CTYPES.get(a.dtype)
    if ctype is None:
        raise TypeError(f"no C type for dtype {a.dtype} ({name})")
    n = length if length is not None else str(max(a.size, 1))
    prefix = "static " if static else ""
    return f"{prefix}const {ctype} {name}[{n}] = {{{c_values(a)}}};\n"
