"""kws: an edge wake-word toolkit (DROCC-LF keyword spotting, streaming detection, int8 export)."""

__version__ = "0.1.0"

from kws.errors import KwsError  # noqa: F401  (the one exception type users catch)
