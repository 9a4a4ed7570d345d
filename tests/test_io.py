"""atomic_write: the file appears whole or not at all, with the mode a plain open() would give it."""
import os
import stat

import pytest

from s3d_det.utils.io import atomic_write


def test_atomic_write_success_gives_the_usual_mode(tmp_path):
    path = tmp_path / "out.txt"
    with atomic_write(str(path), ".txt") as tmp:
        with open(tmp, "w") as f:
            f.write("done")
    assert path.read_text() == "done" and os.listdir(tmp_path) == ["out.txt"]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_atomic_write_failure_leaves_the_old_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(str(path)) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]
