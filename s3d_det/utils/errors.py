"""How the tools end on bad input: ``error: <one line>`` on stderr and exit status 2, never a traceback.

Every tool's ``__main__`` runs ``sys.exit(run_tool(main))``. What counts as bad input (a file that is missing,
unreadable, refused or does not fit; a config key or value; a full disk; training that diverged) is the tuple
``INPUT_ERRORS``, kept here in one place: a new error type for bad input either derives from one of them
(ValueError is the usual base) or is added to the tuple. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import pickle
import re
import sys
from typing import Callable, TextIO

import yaml

__all__ = ["INPUT_ERRORS", "EXIT_INPUT_ERROR", "error_line", "report_error", "run_tool"]

EXIT_INPUT_ERROR = 2
# OSError: missing/unreadable files, no space left. ValueError: bad values (ConfigError and most data errors
# derive from it). UnpicklingError: pickles and checkpoints refused (UnsafePickleError). YAMLError: config syntax.
# FloatingPointError: training stopped on a non-finite loss or weights.
INPUT_ERRORS = (OSError, ValueError, pickle.UnpicklingError, yaml.YAMLError, FloatingPointError)


# torch.utils.data re-raises a worker's error as the same type with the worker's traceback in its message
_WORKER_ERROR = re.compile(r"Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback \(most recent call")
_EXCEPTION_LINE = re.compile(r"[A-Za-z_][\w.]*: ")


def _original_message(text: str) -> str:
    """The message of the error a DataLoader worker raised (the last ``module.Type: message`` line of the
    traceback its re-raise carries and what follows), or ``text`` as it is."""
    if not _WORKER_ERROR.match(text):
        return text
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines) if i > 1 and _EXCEPTION_LINE.match(line)]
    if not starts:
        return text
    return "\n".join(lines[starts[-1]:]).split(": ", 1)[1]


def error_line(error: BaseException) -> str:
    """``error``'s message on one line (newlines and runs of spaces become one space); KeyError's quotes dropped;
    for an error a DataLoader worker raised, its own message (not the worker's traceback)."""
    text = error.args[0] if isinstance(error, KeyError) and len(error.args) == 1 else error
    return " ".join(_original_message(str(text)).split()) or type(error).__name__


def report_error(error: BaseException, stream: TextIO = None) -> int:
    """Prints ``error: <one line>`` to ``stream`` (stderr) and returns the exit status for bad input, 2."""
    print(f"error: {error_line(error)}", file=stream or sys.stderr)
    return EXIT_INPUT_ERROR


def run_tool(main: Callable[..., object], *args, **kwargs) -> int:
    """Calls ``main(*args, **kwargs)`` and returns its exit status (0 for None; an int as it is); an error of
    ``INPUT_ERRORS`` is reported with ``report_error`` and gives 2."""
    try:
        status = main(*args, **kwargs)
    except INPUT_ERRORS as e:
        return report_error(e)
    return status if isinstance(status, int) else 0
