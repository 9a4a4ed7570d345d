"""Small I/O helpers: atomic writes, so that a crash never leaves a half-written output."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Iterator

__all__ = ["atomic_write", "write_json", "available_cores"]


@contextlib.contextmanager
def atomic_write(path: str, suffix: str = "") -> Iterator[str]:
    """Yields a temporary path beside ``path``; on success it is renamed onto ``path``, on any error it
    is removed and ``path`` is left as it was.

    Example::

        with atomic_write("model.pth", ".pth") as tmp:
            torch.save(state, tmp)
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would have
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str, payload: object) -> None:
    """Writes ``payload`` as indented JSON, atomically."""
    with atomic_write(path, ".json") as tmp:
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")


def available_cores() -> int:
    """Number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
