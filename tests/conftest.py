"""Shared fixtures. ``shared_data`` is the folder of real annotation files that CI keeps beside the clone
(../shared/data); a user's clone has no such folder, so the tests that read it skip, saying why."""
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real annotation files not found at {SHARED_DATA} (only CI has ../shared beside the clone)")
    return SHARED_DATA
