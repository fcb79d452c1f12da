"""Deferred and skipped imports (beampod._lazy): a deferred module is bound by ``import``
without running, runs once on first use, and works as if imported normally -- also when
a submodule is imported first, or the deferred module is itself a submodule.

Each case runs in a fresh interpreter: deferring changes ``sys.modules`` for good.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


@pytest.fixture
def packages(tmp_path: Path) -> Path:
    """``heavypkg`` (its ``__init__`` imports its own submodule, as numpy's does) and
    ``host`` with a submodule ``host.heavy``; every module counts its executions."""
    count = "import builtins; builtins.RUNS = getattr(builtins, 'RUNS', []) + [__name__]\n"
    files = {
        "heavypkg/__init__.py": count + "from heavypkg import core\nVALUE = core.VALUE\n",
        "heavypkg/core.py": count + "VALUE = 42\n",
        "heavypkg/extra.py": count + "EXTRA = 7\n",
        "host/__init__.py": count,
        "host/heavy.py": count + "def answer():\n    return 'real'\n",
        "user.py": count + "import heavypkg\nimport host.heavy\n",
    }
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    return tmp_path


def run(packages: Path, code: str) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(packages), *sys.path])
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


def test_deferred_module_runs_on_first_use_only(packages: Path) -> None:
    run(
        packages,
        """
        import builtins, sys
        from beampod._lazy import defer_imports, is_loaded
        defer_imports(["heavypkg", "host.heavy"])
        import user  # imports both: bound, not run
        assert builtins.RUNS == ["host", "user"], builtins.RUNS
        import inspect
        inspect.getmodule((lambda: None).__code__)  # asks every module for its file
        assert not is_loaded("heavypkg") and not is_loaded("host.heavy")
        assert user.heavypkg.VALUE == 42  # first use: runs, once
        assert user.host.heavy.answer() == "real"
        assert sorted(builtins.RUNS) == sorted(
            ["host", "user", "heavypkg", "heavypkg.core", "host.heavy"]), builtins.RUNS
        assert is_loaded("heavypkg") and is_loaded("host.heavy")
        import heavypkg  # later imports get the real module
        assert type(heavypkg).__name__ == "module" and heavypkg.VALUE == 42
        """,
    )


def test_submodule_of_a_deferred_package_runs_once(packages: Path) -> None:
    # heavypkg's __init__ imports heavypkg.core: importing heavypkg.core first loads
    # heavypkg for real, which imports heavypkg.core -- it must not run twice.
    run(
        packages,
        """
        import builtins
        from beampod._lazy import defer_imports
        defer_imports(["heavypkg"])
        import heavypkg.core
        import heavypkg.extra
        from heavypkg import core
        assert heavypkg.core.VALUE == 42 and core is heavypkg.core
        assert heavypkg.extra.EXTRA == 7
        assert sorted(builtins.RUNS) == ["heavypkg", "heavypkg.core", "heavypkg.extra"], (
            builtins.RUNS)
        """,
    )


def test_a_package_init_runs_on_the_first_name_asked_of_it(packages: Path) -> None:
    # bluesky-tiled-plugins' case: a submodule is wanted, the package's __init__ (which
    # imports a heavy sibling) is not, until someone asks the package for a name.
    run(
        packages,
        """
        import builtins, threading
        from beampod._lazy import defer_package_init
        defer_package_init("heavypkg")
        import heavypkg.extra
        assert heavypkg.extra.EXTRA == 7
        assert builtins.RUNS == ["heavypkg.extra"], builtins.RUNS  # no __init__, no core
        seen = []
        threads = [threading.Thread(target=lambda: seen.append(heavypkg.VALUE)) for _ in "ab"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert seen == [42, 42]
        assert sorted(builtins.RUNS) == ["heavypkg", "heavypkg.core", "heavypkg.extra"], (
            builtins.RUNS)  # the __init__ once; it found heavypkg.extra imported
        from heavypkg import VALUE
        assert VALUE == 42
        try:
            heavypkg.MISSING
        except AttributeError as exc:
            assert "MISSING" in str(exc)
        else:
            raise AssertionError("no AttributeError")
        """,
    )


def test_an_absent_package_fails_to_import_as_if_not_installed(packages: Path) -> None:
    run(
        packages,
        """
        import sys
        from beampod._lazy import absent_imports, is_loaded
        absent_imports(["heavypkg"])
        absent_imports(["heavypkg"])  # twice: one finder
        assert sum(type(f).__name__ == "_Absent" for f in sys.meta_path) == 1
        for name in ("heavypkg", "heavypkg.core"):
            try:
                __import__(name)
            except ModuleNotFoundError as exc:
                assert exc.name == "heavypkg", exc  # a submodule: its package first
            else:
                raise AssertionError(f"{name} imported")
        assert not is_loaded("heavypkg") and "heavypkg" not in sys.modules
        assert "colorsys" not in sys.modules
        import colorsys  # anything else imports as before
        assert colorsys.rgb_to_hsv(1, 0, 0) == (0.0, 1.0, 1)
        """,
    )


def test_skipped_module_raises_import_error_and_missing_ones_are_ignored(
    packages: Path,
) -> None:
    run(
        packages,
        """
        import importlib
        from beampod._lazy import defer_imports, is_loaded, skip_imports
        skip_imports(["heavypkg"])
        defer_imports(["beampod_no_such_module"])  # not installed: left alone
        try:
            import heavypkg
        except ImportError:
            pass
        else:
            raise AssertionError("a skipped module imported")
        assert not is_loaded("heavypkg")
        try:
            importlib.import_module("beampod_no_such_module")
        except ModuleNotFoundError:
            pass
        else:
            raise AssertionError("a missing module imported")
        """,
    )


def test_queue_http_reads_a_spreadsheet_with_pandas_deferred(packages: Path) -> None:
    # The HTTP server's policy: pandas and numpy are not loaded by building the app's
    # imports, and the one route that needs them (a spreadsheet upload) still works.
    run(
        packages,
        """
        import io
        from beampod.queue._http_main import lean_imports
        lean_imports()
        import bluesky_httpserver.app, bluesky_httpserver.config
        from beampod._lazy import is_loaded
        assert not is_loaded("pandas") and not is_loaded("numpy")
        from bluesky_queueserver.manager.conversions import spreadsheet_to_plan_list
        sheet = io.BytesIO(b"plan_name,num\\ncount,3\\n")
        plans = spreadsheet_to_plan_list(
            spreadsheet_file=sheet, file_name="plans.csv", data_type=None, user="u")
        assert plans == [{"name": "count", "item_type": "plan", "args": [3]}], plans
        assert is_loaded("pandas")
        """,
    )


def test_beampod_reads_its_version_on_first_use() -> None:
    # Every process of a pod imports beampod: importlib.metadata (with the email
    # package) is loaded only by one that asks for the version (ADR 0031).
    code = (
        "import sys, beampod\n"
        "assert 'importlib.metadata' not in sys.modules, 'imported on import'\n"
        "from importlib.metadata import version\n"
        "assert beampod.__version__ == version('beampod'), beampod.__version__\n"
        "assert 'from beampod import __version__' and beampod.__dict__['__version__']\n"
        "try:\n"
        "    beampod.no_such_name\n"
        "except AttributeError:\n"
        "    print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


PLUGINS = """
    import json, os, sys
    from beampod._lazy import without_pydantic_plugins
    without_pydantic_plugins()
    import pydantic

    class Model(pydantic.BaseModel):
        x: int

    assert Model(x="1").x == 1
    loader = sys.modules["pydantic.plugin._loader"]
    print(json.dumps({
        "env": os.environ["PYDANTIC_DISABLE_PLUGINS"],
        "pydantic's loader": hasattr(loader, "__file__"),
        "metadata read": "importlib.metadata" in sys.modules,
    }))
"""


def run_plugins(env: dict[str, str]) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PLUGINS)],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"} | env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert isinstance(got, dict)
    return got


def test_pydantic_plugins_are_not_looked_for_unless_asked_for() -> None:
    """Looking for them read every installed distribution's metadata in every process."""
    assert run_plugins({}) == {
        "env": "__all__",  # and so in every process started from this one
        "pydantic's loader": False,
        "metadata read": False,
    }
    # pydantic's own switch: empty loads them all, as pydantic does.
    wanted = run_plugins({"PYDANTIC_DISABLE_PLUGINS": ""})
    assert wanted == {"env": "", "pydantic's loader": True, "metadata read": True}
