"""Arrow arrays to and from numpy through their buffers.

`pyarrow.array()` and `.to_numpy()` import pandas (a third of a second) to check their input;
the parse path never needs pandas, so it builds and reads arrays through their buffers instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

_TYPES = {
    np.dtype(np.float64): pa.float64(),
    np.dtype(np.int64): pa.int64(),
    np.dtype(np.int32): pa.int32(),
}


def numeric_array(values: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """An Arrow array over a float64 / int64 / int32 numpy array (zero-copy), nulls where `missing`."""
    values = np.ascontiguousarray(values)
    validity = None
    if missing is not None and missing.any():
        validity = pa.py_buffer(np.packbits(~missing, bitorder="little"))
    return pa.Array.from_buffers(_TYPES[values.dtype], len(values), [validity, pa.py_buffer(values)])


def string_array(values: list[str]) -> pa.Array:
    encoded = [v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return pa.Array.from_buffers(
        pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    )


def float_column(column: Any) -> np.ndarray:
    """A float64 Arrow (chunked) array as numpy, nulls as NaN."""
    if isinstance(column, pa.ChunkedArray):
        chunks = [float_column(chunk) for chunk in column.chunks]
        return np.concatenate(chunks) if len(chunks) != 1 else chunks[0]
    validity, data = column.buffers()[:2]
    values = np.frombuffer(data, dtype=np.float64, count=len(column) + column.offset)[column.offset :]
    if column.null_count:
        bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")[
            column.offset : column.offset + len(column)
        ]
        values = np.where(bits.astype(bool), values, np.nan)
    return values
