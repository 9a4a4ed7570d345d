"""Shared fixtures. ``one_thread`` limits torch to one thread for a module; ``shared_data`` is the folder of real
annotation files that CI keeps beside the clone (../shared/data); a user's clone has no such folder, so the tests
that read it skip, saying why. The opencv-contrib folder of the README's optional install (``.opencv-contrib`` in the
clone) serves the TV-L1 tests when ``S3D_DET_OPENCV_CONTRIB`` names none."""
import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OPENCV_CONTRIB = Path(__file__).resolve().parents[1] / ".opencv-contrib"
if not os.environ.get("S3D_DET_OPENCV_CONTRIB") and (OPENCV_CONTRIB / "cv2").is_dir():
    os.environ["S3D_DET_OPENCV_CONTRIB"] = str(OPENCV_CONTRIB)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real annotation files not found at {SHARED_DATA} (only CI has ../shared beside the clone)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): on a
    shared 2-core machine, two spinning OpenMP threads make tiny ops 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
