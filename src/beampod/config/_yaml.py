"""Reading YAML without losing anything: duplicate keys are problems, not silently dropped.

``yaml.safe_load`` keeps the last of two equal keys in a mapping, so a second ``bl02:``
entry would quietly replace the first. :func:`read_yaml` walks the composed node tree
first and reports every duplicate key of every mapping, with its dotted path and lines.
"""

from __future__ import annotations

from typing import Any

import yaml

#: libyaml's parser where PyYAML has it (the wheels do): the same documents, ~10x less
#: CPU than the pure-Python one, in every process that reads the pod's config.
SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(text: str) -> tuple[Any, list[str]]:
    """Parse ``text``; return the data and one problem per duplicate key.

    Raises :class:`yaml.YAMLError` for text that is not YAML (the caller reports it).
    """
    loader = SafeLoader(text)
    try:
        root = loader.get_single_node()  # parsed once: checked, then constructed
        problems: list[str] = []
        if root is None:
            return None, problems
        _find_duplicates(root, "", problems, set())
        return loader.construct_document(root), problems
    finally:
        loader.dispose()


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with :data:`SafeLoader`."""
    return yaml.load(text, Loader=SafeLoader)


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
