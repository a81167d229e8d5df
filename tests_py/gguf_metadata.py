"""GGUF metadata as a plain dict, read with the `gguf` package (independent of orcd's reader)."""
from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=4)
def read_metadata(path: str) -> dict:
    """key -> value: str/int/float/bool scalars, lists of str, numpy arrays of numbers."""
    import gguf

    reader = gguf.GGUFReader(path)
    out = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        types = field.types
        if types and types[0] == gguf.GGUFValueType.ARRAY:
            if len(types) > 1 and types[1] == gguf.GGUFValueType.STRING:
                out[key] = [bytes(field.parts[i]).decode("utf-8", errors="replace") for i in field.data]
            else:
                out[key] = np.array([field.parts[i][0] for i in field.data])
        else:
            out[key] = field.contents()
    return out
