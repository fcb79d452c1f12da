"""Reading YAML without losing anything: duplicate keys are problems, not silently dropped.

``yaml.safe_load`` keeps the last of two equal keys in a mapping, so a second ``bl02:``
entry would quietly replace the first. :func:`read_yaml` walks the composed node tree
first and reports every duplicate key of every mapping, with its dotted path and lines.
"""

from __future__ import annotations

from typing import Any

import yaml


def read_yaml(text: str) -> tuple[Any, list[str]]:
    """Parse ``text``; return the data and one problem per duplicate key.

    Raises :class:`yaml.YAMLError` for text that is not YAML (the caller reports it).
    """
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    problems: list[str] = []
    if root is not None:
        _find_duplicates(root, "", problems, set())
    return yaml.safe_load(text), problems


def _find_duplicates(node: yaml.Node, path: str, problems: list[str], seen: set[int]) -> None:
    if id(node) in seen:  # an alias points at a node already walked
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is None or key == "<<":
                continue
            line = key_node.start_mark.line + 1
            where = f"{path}.{key}" if path else key
            if key in first:
                what = "instrument" if path == "instruments" else "key"
                problems.append(
                    f"{where}: duplicate {what} {key!r} at line {line} (first at line "
                    f"{first[key]}); YAML would silently keep only the last one"
                )
            else:
                first[key] = line
            _find_duplicates(value_node, where, problems, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _find_duplicates(item, f"{path}.{i}" if path else str(i), problems, seen)
