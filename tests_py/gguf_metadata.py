"""GGUF metadata as a plain dict, read once per file and cached for the test run."""
from __future__ import annotations

import functools

import orcd


@functools.lru_cache(maxsize=4)
def read_metadata(path: str) -> dict:
    """key -> value: str/int/float/bool scalars, lists of str, numpy arrays of numbers.

    orcd's reader is itself checked against the gguf package in test_gguf_file.py.
    """
    with orcd.GGUFFile(str(path)) as f:
        return dict(f.metadata)
