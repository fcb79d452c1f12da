"""The project's own import-linter contract catches what it promises to catch."""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest

from tests._import_contracts import PrivateModulesContract, private_owner


def test_private_owner_is_the_parent_of_the_first_private_part() -> None:
    assert private_owner("beampod.store._sink") == "beampod.store"
    assert private_owner("beampod.adaptive.agents._step") == "beampod.adaptive.agents"
    assert private_owner("beampod.store._sink.inner") == "beampod.store"
    assert private_owner("beampod.store") is None
    assert private_owner("beampod.writer.__main__") is None


def _package(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_cross_package_private_import_breaks_the_contract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _package(
        tmp_path,
        {
            "pkgx/__init__.py": "",
            "pkgx/a/__init__.py": "from pkgx.a._impl import thing\n",
            "pkgx/a/_impl.py": "thing = 1\n",
            "pkgx/a/_user.py": "from pkgx.a._impl import thing\n",  # inside its package: fine
            "pkgx/b/__init__.py": "from pkgx.a import thing\n",  # through the public API: fine
            "pkgx/b/_bad.py": "def f():\n    from pkgx.a._impl import thing\n    return thing\n",
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("pkgx", cache_dir=None)
    contract = PrivateModulesContract("private", {}, {})

    check = contract.check(graph, verbose=False)

    assert not check.kept
    assert check.metadata["violations"] == [
        {"importer": "pkgx.b._bad", "imported": "pkgx.a._impl", "owner": "pkgx.a", "lines": [2]}
    ]
    graph.remove_module("pkgx.b._bad")
    assert contract.check(graph, verbose=False).kept
