"""From config nodes to constructor keyword arguments: the one rule every ``from_config`` follows.

Each module lists the keys of its own config node (``S3DG.CONFIG_KEYS`` reads ``MODEL.BACKBONE_3D``,
``TubeRoIHead.CONFIG_KEYS`` ``MODEL.ROI_HEAD``, ``rpn.RPN_CONFIG_KEYS`` ``MODEL.RPN``, ...); a key ``FOO_BAR`` is
the keyword argument ``foo_bar``. So a new option is a constructor argument plus a config key of the same name,
and the key's list in the module that reads it.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping

__all__ = ["node_kwargs"]


def node_kwargs(node: Mapping[str, Any], keys: Iterable[str]) -> Dict[str, Any]:
    """``{key.lower(): node[key]}`` for ``keys`` of a config node, leaving out None values (None in a config
    means "the constructor's, or the preset's, default"). Lists stay lists: the constructors take sequences."""
    return {key.lower(): node[key] for key in keys if node[key] is not None}
