"""docs/config.md is generated from s3d_det/config.py (tools/gen_config_docs.py) and must not drift from it."""
import importlib.util
import os
import re
import subprocess
import sys

import pytest

from s3d_det.config import CfgNode, get_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "config.md")
COMMAND = "python tools/gen_config_docs.py > docs/config.md"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_config_docs", os.path.join(ROOT, "tools", "gen_config_docs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _leaf_keys(node, prefix=""):
    for k, v in node.items():
        if isinstance(v, CfgNode):
            yield from _leaf_keys(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def test_docs_config_md_is_the_generators_output():
    with open(os.path.join(ROOT, "s3d_det", "config.py"), encoding="utf-8") as f:
        expected = _generator().render(f.read())
    assert os.path.isfile(DOC), f"docs/config.md is missing: run `{COMMAND}` from the repository root"
    with open(DOC, encoding="utf-8") as f:
        actual = f.read()
    assert actual == expected, (f"docs/config.md differs from what s3d_det/config.py's comments give: run `{COMMAND}` "
                                "from the repository root and commit the result")


def test_every_default_key_is_in_docs_config_md():
    """Independent of the generator: every leaf of get_cfg() has a row whose first cell names it."""
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    first_cells = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            first_cells.update(re.findall(r"`([A-Z0-9_.]+)`", line.split(" | ")[0]))
    missing = [k for k in _leaf_keys(get_cfg()) if k not in first_cells]
    assert not missing, f"keys missing from docs/config.md: {missing}; run `{COMMAND}`"


SMALL = '''\
from fvcore.common.config import CfgNode
_C = CfgNode()

# Seed | of everything.
_C.SEED = 0

_C.A = CfgNode()
# Rate and steps.
_C.A.LR = 0.1
_C.A.STEPS = [1, 2]
# One of "x", "y".
_C.A.MODE = "x"

# Section B's comment.
_C.B = CfgNode()
_C.B.K = 1e-3

CHOICES = {"A.MODE": ("x", "y")}
'''


def test_render_small_source():
    text = _generator().render(SMALL)
    body = text[text.index("## Top level"):]
    assert body == (
        "## Top level\n"
        "\n"
        "| key | default | meaning |\n"
        "|---|---|---|\n"
        "| `SEED` | `0` | Seed \\| of everything. |\n"
        "\n"
        "## `A`\n"
        "\n"
        "| key | default | meaning |\n"
        "|---|---|---|\n"
        "| `A.LR`<br>`A.STEPS` | `0.1`<br>`[1, 2]` | Rate and steps. |\n"
        '| `A.MODE` | `"x"` | One of "x", "y". Choices for `A.MODE`: `"x"`, `"y"`. |\n'
        "\n"
        "## `B`\n"
        "\n"
        "Section B's comment.\n"
        "\n"
        "| key | default | meaning |\n"
        "|---|---|---|\n"
        "| `B.K` | `1e-3` | Section B's comment. |\n"
    )
    assert text.startswith("# Configuration reference\n")


def test_key_without_comment_is_an_error_naming_it():
    source = SMALL.replace("# Seed | of everything.\n", "")
    gen = _generator()
    with pytest.raises(gen.ConfigDocsError, match=r"cfg\.py:4: _C\.SEED has no comment"):
        gen.render(source, "cfg.py")


@pytest.mark.slow
def test_tool_exits_2_with_one_line_on_an_uncommented_key(tmp_path):
    bad = tmp_path / "config.py"
    bad.write_text(SMALL.replace("# Rate and steps.\n", ""))
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_config_docs.py"), "--config-py",
                             str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "_C.A.LR has no comment" in result.stderr
