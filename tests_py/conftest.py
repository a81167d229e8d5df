"""Shared fixtures: the real default model (fetched once, cached) and scratch paths."""
import os

import pytest


@pytest.fixture(scope="session")
def default_model_path():
    """Path of the default model: $ORCD_TEST_MODEL, or pulled into the cache on first use."""
    path = os.environ.get("ORCD_TEST_MODEL")
    if path:
        return path
    import orcd.models

    return str(orcd.models.pull())
