"""Small I/O helpers: atomic writes, so that a crash never leaves a half-written output, and the clean-up of the
temporaries a killed process left. Reading files from elsewhere without running code: ``s3d_det.checkpoint.io``."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from typing import Iterator, List

__all__ = ["atomic_write", "write_json", "available_cores", "remove_stale_temporaries",
           "NO_SPACE_ERRNOS"]

# Our temporaries: ``.tmp_<pid>_<8 characters of mkstemp><suffix>``; before the pid was part of the name,
# ``.tmp_<8 characters><suffix>``. Nothing else is ever removed as a temporary.
_TEMP_PREFIX = ".tmp_"
_TEMP = re.compile(r"\.tmp_(?:(?P<pid>\d+)_)?[a-z0-9_]{8}(?P<suffix>\.\w+)?")
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def atomic_write(path: str, suffix: str = "") -> Iterator[str]:
    """Yields a temporary path beside ``path``; on success it is renamed onto ``path``, on any error it
    is removed and ``path`` is left as it was. A full disk (or quota) is an OSError(ENOSPC) saying
    "no space left" and naming ``path``.

    Example::

        with atomic_write("model.pth", ".pth") as tmp:
            with open(tmp, "wb") as f:  # through a Python file: a failed write is an OSError, not torch's RuntimeError
                torch.save(state, f)
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{_TEMP_PREFIX}{os.getpid()}_", suffix=suffix)
        os.close(fd)
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would have
        os.replace(tmp, path)
    except OSError as e:
        if e.errno not in NO_SPACE_ERRNOS:
            raise
        raise OSError(e.errno, f"no space left on the device to write {path} (it is unchanged; nothing "
                      "half-written was kept): free some space and run again") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def remove_stale_temporaries(folder: str) -> List[str]:
    """Removes the temporaries of :func:`atomic_write` that a killed process left directly in ``folder`` (those
    naming a process that no longer runs, and those of the older naming without a process id) and returns their
    paths. Only our own naming pattern is touched; call it before this run writes anything there."""
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in sorted(os.listdir(folder)):
        found = _TEMP.fullmatch(name)
        path = os.path.join(folder, name)
        if not found or not os.path.isfile(path) or os.path.islink(path):
            continue
        if found.group("pid") is not None and _pid_alive(int(found.group("pid"))):
            continue
        os.remove(path)
        removed.append(path)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


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
