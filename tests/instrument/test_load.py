"""load_instrument and the CA client environment (no IOCs, no ophyd in this process)."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from beampod.config import PodHome, init_pod, load_pod
from beampod.errors import UsageError
from beampod.instrument import ca_client_env, load_instrument


@pytest.fixture
def pkg_dir(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("fake_inst_")]:
        del sys.modules[name]


def write_pkg(root: Path, name: str, body: str) -> str:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text(textwrap.dedent(body))
    return name


def test_loads_devices_and_plans(pkg_dir: Path) -> None:
    name = write_pkg(
        pkg_dir,
        "fake_inst_ok",
        """
        def devices():
            return {"det": "a device", "motor": "another"}
        def plans():
            def count(dets): yield from ()
            return {"count": count}
    """,
    )
    inst = load_instrument(name)
    assert inst.package == name
    assert inst.devices == {"det": "a device", "motor": "another"}
    assert list(inst.plans) == ["count"]


def test_iocs_are_passed_when_devices_accepts_them(pkg_dir: Path) -> None:
    name = write_pkg(
        pkg_dir,
        "fake_inst_iocs",
        """
        def devices(iocs=None):
            return {"d_" + i["prefix"].strip(":"): i["family"] for i in iocs or []}
        def plans():
            return {}
    """,
    )
    inst = load_instrument(name, iocs=[{"family": "simple", "prefix": "s1:"}])
    assert inst.devices == {"d_s1": "simple"}


def test_import_failure_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="cannot import instrument package 'no_such_pkg_x'"):
        load_instrument("no_such_pkg_x")


def test_missing_convention_is_a_usage_error(pkg_dir: Path) -> None:
    name = write_pkg(pkg_dir, "fake_inst_bare", "X = 1\n")
    with pytest.raises(UsageError, match=r"lacks devices\(\) and plans\(\)"):
        load_instrument(name)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("def devices(): return [1]\ndef plans(): return {}\n", "must return a dict"),
        ("def devices(): return {'a-b': 1}\ndef plans(): return {}\n", "not Python identifiers"),
        ("def devices(): return {}\ndef plans(): return {'scan': 3}\n", "non-callable plans: scan"),
        (
            "def devices(): return {'scan': 1}\ndef plans(): return {'scan': print}\n",
            "both a device and a plan: scan",
        ),
    ],
)
def test_bad_returns_are_usage_errors(pkg_dir: Path, body: str, message: str) -> None:
    name = write_pkg(pkg_dir, f"fake_inst_bad{abs(hash(body)) % 10**6}", body)
    with pytest.raises(UsageError, match=message):
        load_instrument(name)


def test_ca_client_env_names_exactly_the_pod_iocs(tmp_path: Path) -> None:
    home = PodHome(tmp_path / "pod")
    init_pod(home, free_ports=True)
    config = load_pod(home).config
    env = ca_client_env(config)
    ports = sorted(config.ioc_ports().values())
    assert env["EPICS_CA_ADDR_LIST"].split() == [f"127.0.0.1:{p}" for p in ports]
    assert env["EPICS_CA_AUTO_ADDR_LIST"] == "NO"
    assert int(env["EPICS_CA_MAX_ARRAY_BYTES"]) >= 8 * 120 * 160


def test_demo_package_creates_nothing_at_import() -> None:
    # Importing the demo must not import ophyd (that would start pyepics' CA context
    # before the session sets the pod's CA environment).
    import subprocess

    code = (
        "import sys, beampod.demo as d; p = d.plans(); "
        "assert 'ophyd' not in sys.modules and 'epics' not in sys.modules, "
        "sorted(m for m in sys.modules if 'epics' in m or 'ophyd' in m); "
        "assert {'scan', 'count', 'align_peak', 'thermo_ramp'} <= set(p)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
