"""Preloading imports at low priority: the modules end up imported, the calling thread
keeps its priority, and an import error reaches the caller."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from beampod._preload import preload


def test_preload_imports_and_leaves_the_callers_priority_alone() -> None:
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    sys.modules.pop("colorsys", None)
    preload(["colorsys"])
    assert "colorsys" in sys.modules
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


def test_preload_raises_the_import_error_in_the_caller() -> None:
    with pytest.raises(ModuleNotFoundError, match="beampod_no_such_module"):
        preload(["beampod_no_such_module"])
