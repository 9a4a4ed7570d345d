#!/usr/bin/env python
"""Writes the configuration reference, docs/config.md, from the comments of s3d_det/config.py.

    python tools/gen_config_docs.py > docs/config.md

Every default is an assignment ``_C.SECTION.KEY = value`` in s3d_det/config.py with a comment right above it;
keys that follow one another without a blank line or a comment of their own share the comment above the first
(``# Learning rate, momentum, weight decay ...`` above ``SOLVER.BASE_LR``, ``MOMENTUM``, ...). A ``CfgNode()``
assignment opens a section, and the comment above it, if any, describes the section. The default shown is the
value as written in the source; the words of ``CHOICES`` are listed with their key.

The page is made from the source text only (``ast`` and the comment lines), so it says exactly what config.py
says. Before printing, the keys found are compared with those of ``s3d_det.config.get_cfg()``: a key the walk
cannot see (set another way than ``_C.X = value``), or a key without a comment, is an error naming it (exit 2).
tests/test_config_docs.py fails when docs/config.md is not this script's output.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_PY = os.path.join(ROOT, "s3d_det", "config.py")
COMMAND = "python tools/gen_config_docs.py > docs/config.md"

INTRO = """\
Every key of the defaults in [`s3d_det/config.py`](../s3d_det/config.py), with its default and the comment
that config.py gives it. A config file (YAML) holds only the keys that differ from these and may name a file
it inherits from with `_BASE_`; the tools take further `KEY VALUE` pairs after their options, e.g.
`python tools/train_det.py --config-file configs/synthetic/s3dg_tiny.yaml SOLVER.MAX_ITER 100`. A key the
defaults do not have, or a value outside a key's choices, is an error naming the key. See
[training.md](training.md) for how the configs are organised."""


class ConfigDocsError(ValueError):
    """config.py cannot be documented as it stands (a key without a comment, a key the walk cannot see)."""


def _dotted(node: ast.AST) -> Optional[str]:
    """``SECTION.KEY`` for an attribute chain ``_C.SECTION.KEY``, else None."""
    parts: List[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "_C" and parts:
        return ".".join(reversed(parts))
    return None


def _comment_above(lines: Sequence[str], lineno: int) -> List[str]:
    """The ``#`` comment lines right above line ``lineno`` (1-based), without the ``#``, top first."""
    out: List[str] = []
    i = lineno - 2
    while i >= 0 and lines[i].lstrip().startswith("#"):
        out.append(lines[i].lstrip()[1:].strip())
        i -= 1
    return list(reversed(out))


def parse(source: str, filename: str = "config.py") -> Tuple[List[Tuple[str, str]], List[dict], Dict[str, tuple]]:
    """Walks a config.py source.

    Returns:
        sections: (name, comment) in source order, ``""`` for the top level.
        groups: ``{"section", "keys": [(key, default source)], "comment"}`` in source order; keys that follow one
            another without a comment of their own form one group.
        choices: the ``CHOICES`` dict literal, key -> words (empty when the source has none).

    Raises:
        ConfigDocsError: a key with no comment above it or above the run of keys (or the section) it follows,
            naming it and the line.
    """
    lines = source.splitlines()
    tree = ast.parse(source, filename=filename)
    sections: List[Tuple[str, str]] = [("", "")]
    groups: List[dict] = []
    choices: Dict[str, tuple] = {}
    previous_end = None  # last line of the key or section assignment just before, if it was one
    previous_section = False  # whether that assignment opened a section
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id == "CHOICES":
            choices = {k: tuple(v) for k, v in ast.literal_eval(node.value).items()}
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        key = _dotted(target) if target is not None else None
        if key is None:
            previous_end, previous_section = None, False
            continue
        comment = " ".join(_comment_above(lines, node.lineno))
        if isinstance(node.value, ast.Call) and getattr(node.value.func, "id", None) == "CfgNode":
            sections.append((key, comment))
            previous_end, previous_section = node.end_lineno, True
            continue
        section = key.rpartition(".")[0]
        default = ast.get_source_segment(source, node.value)
        if comment:
            groups.append({"section": section, "keys": [(key, default)], "comment": comment})
        elif previous_end == node.lineno - 1 and previous_section and sections[-1][1]:
            groups.append({"section": section, "keys": [(key, default)], "comment": sections[-1][1]})
        elif previous_end == node.lineno - 1 and not previous_section and groups:
            if groups[-1]["section"] == section:
                groups[-1]["keys"].append((key, default))
            else:
                groups.append({"section": section, "keys": [(key, default)], "comment": groups[-1]["comment"]})
        else:
            raise ConfigDocsError(f"{filename}:{node.lineno}: _C.{key} has no comment above it (every key needs "
                                  "one, or must follow a key or section that has one without a blank line)")
        previous_end, previous_section = node.end_lineno, False
    return sections, groups, choices


def _cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|")


def render(source: str, filename: str = "config.py") -> str:
    """The Markdown page for a config.py source: a title, the introduction, then a table a section."""
    sections, groups, choices = parse(source, filename)
    out = ["# Configuration reference", "",
           f"<!-- Generated from s3d_det/config.py by `{COMMAND}`: do not edit by hand. -->", "", INTRO]
    for name, comment in sections:
        rows = [g for g in groups if g["section"] == name]
        if not rows:
            continue
        out += ["", f"## `{name}`" if name else "## Top level", ""]
        if comment:
            out += [comment, ""]
        out += ["| key | default | meaning |", "|---|---|---|"]
        for group in rows:
            keys = "<br>".join(f"`{k}`" for k, _ in group["keys"])
            defaults = "<br>".join(f"`{_cell(d)}`" for _, d in group["keys"])
            meaning = _cell(group["comment"])
            for k, _ in group["keys"]:
                if k in choices:
                    meaning += f" Choices for `{k}`: " + ", ".join(f'`"{_cell(str(c))}"`' for c in choices[k]) + "."
            out.append(f"| {keys} | {defaults} | {meaning} |")
    return "\n".join(out) + "\n"


def _default_keys() -> List[str]:
    """Every leaf key of ``s3d_det.config.get_cfg()``, dotted."""
    sys.path.insert(0, ROOT)
    from s3d_det.config import CfgNode, get_cfg

    def walk(node, prefix):
        for k, v in node.items():
            if isinstance(v, CfgNode):
                yield from walk(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"

    return list(walk(get_cfg(), ""))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-py", default=CONFIG_PY, help="the config source (default: s3d_det/config.py)")
    args = parser.parse_args(argv)
    try:
        with open(args.config_py, encoding="utf-8") as f:
            source = f.read()
        text = render(source, args.config_py)
        if os.path.abspath(args.config_py) == CONFIG_PY:
            walked = {k for g in parse(source, args.config_py)[1] for k, _ in g["keys"]}
            missing = [k for k in _default_keys() if k not in walked]
            if missing:
                raise ConfigDocsError(f"{args.config_py}: keys of get_cfg() that are not assigned as `_C.KEY = value` "
                                      f"with a comment, so the reference cannot show them: {', '.join(missing)}")
    except (OSError, SyntaxError, ConfigDocsError) as e:
        print(f"gen_config_docs: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
