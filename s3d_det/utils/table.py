"""Plain-text tables for the tools and benchmarks."""
from __future__ import annotations

from typing import Sequence

__all__ = ["format_table"]


def format_table(header: Sequence[object], rows: Sequence[Sequence[object]]) -> str:
    """Columns separated by `` | ``, a rule under the header; the first column left-aligned, the
    others right-aligned."""
    lines = [[str(c) for c in line] for line in [header, *rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def fmt(line):
        return " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))

    return "\n".join([fmt(lines[0]), "-+-".join("-" * w for w in widths)] + [fmt(line) for line in lines[1:]])
