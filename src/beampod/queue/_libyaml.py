"""The queue server's own YAML files read and written with libyaml (ADR 0031).

bluesky-queueserver keeps the instrument's existing plans and devices in a YAML file
(``run/queue/existing_plans_and_devices.yaml``, ~60 KB for the demo) and reads and
writes it with PyYAML's pure-Python loader and dumper: the manager reads it when it
starts (0.18 CPU-s), the worker reads it again to compare and writes it when it changed
(0.18 + 0.09 CPU-s), every time the environment opens, next to Tiled's start. With
libyaml the same work takes ~0.05 CPU-s; what is read back is equal (checked on the
demo's file, and by tests/queue/test_libyaml.py).

Only the module that reads and writes those files gets the libyaml functions (its
``yaml`` name is rebound); the ``yaml`` module itself, which plans and startup code in
the worker may use, is untouched. Without libyaml (PyYAML built without it) nothing
changes.
"""

from __future__ import annotations

import types
from typing import Any


def libyaml_namespace() -> types.SimpleNamespace | None:
    """A ``yaml`` stand-in whose ``load``, ``safe_load`` and ``dump`` use libyaml; every
    other name is PyYAML's. None when PyYAML has no libyaml."""
    import yaml

    if not getattr(yaml, "__with_libyaml__", False):
        return None
    c_loaders = {yaml.FullLoader: yaml.CFullLoader, yaml.SafeLoader: yaml.CSafeLoader}

    def load(stream: Any, Loader: Any = None) -> Any:
        return yaml.load(stream, Loader=c_loaders.get(Loader, Loader))

    def safe_load(stream: Any) -> Any:
        return yaml.load(stream, Loader=yaml.CSafeLoader)

    def dump(data: Any, stream: Any = None, Dumper: Any = None, **kwds: Any) -> Any:
        dumper = yaml.CDumper if Dumper in (None, yaml.Dumper) else Dumper
        return yaml.dump(data, stream, Dumper=dumper, **kwds)

    names = {n: getattr(yaml, n) for n in dir(yaml) if not n.startswith("__")}
    return types.SimpleNamespace(**{**names, "load": load, "safe_load": safe_load, "dump": dump})


def use_libyaml(module: types.ModuleType) -> bool:
    """Rebind ``module.yaml`` to :func:`libyaml_namespace`; True if it was."""
    namespace = libyaml_namespace()
    if namespace is None or not hasattr(module, "yaml"):
        return False
    module.yaml = namespace  # type: ignore[attr-defined]
    return True
