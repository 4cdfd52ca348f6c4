"""Shared fixtures: where the bundled sample and the optional real data live."""

from __future__ import annotations

from pathlib import Path

import pytest

from headline_scorer import SAMPLE_DATA

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The generated sample shipped in the package (``headline_scorer/sample_data``)."""
    return SAMPLE_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data in ``../shared/data``; the test is skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available at {SHARED_DATA}")
    return SHARED_DATA
