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


@pytest.fixture(scope="session")
def cpu_llm(default_model_path):
    """One orcd.LLM on the CPU for the generation tests (loading it once keeps the suite quick)."""
    import orcd

    return orcd.LLM(default_model_path, device="cpu", max_context=512)
