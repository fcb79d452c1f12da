"""A facility with one cycle, three instruments and tiny wheels in a local directory.

Everything installs from that directory (``no_index``): the tests never use the network.
The facility lives in a world-traversable directory so a test can act as ``nobody``.
One facility, locked and built once, serves every module here: a test that changes an
environment, an overlay or the lock puts it back before it ends.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from beampod.config import PodHome, init_pod
from beampod.envs import EnvLayout
from tests.conftest import beampod_cli
from tests.envs._wheels import make_wheel

CYCLE = "2026-1"


@pytest.fixture(scope="package")
def facility() -> Iterator[PodHome]:
    top = Path(tempfile.mkdtemp(prefix="beampod-envs-", dir="/tmp"))
    top.chmod(0o755)
    wheels = top / "wheels"
    make_wheel(wheels, "tiny", "1.0")
    make_wheel(wheels, "tiny", "2.0")
    make_wheel(wheels, "tiny", "3.0", init='raise ImportError("tiny 3.0 is broken")\n')
    make_wheel(wheels, "extra", "1.0")
    home = PodHome(top / "home")
    init_pod(home)
    config = yaml.safe_load(home.config_file.read_text())
    for name in ("bl01", "bl02"):
        config["instruments"][name] = {"package": "beampod.demo"}
    config["environments"] = {
        "staff_groups": {"bl01": "nogroup"},
        "cycles": {
            CYCLE: {
                "requirements": ["tiny>=1,<2"],
                "instruments": {"bl02": ["extra"]},
                "no_index": True,
                "find_links": [str(wheels)],
            }
        },
    }
    home.config_file.write_text(yaml.safe_dump(config))
    init_pod(home)  # credentials for the added instruments
    home.root.chmod(0o755)  # so nobody can reach the environments (secrets stay 0600)
    try:
        yield home
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(top)], check=True)
        shutil.rmtree(top)


@pytest.fixture(scope="package")
def built(facility: PodHome) -> PodHome:
    beampod_cli(facility.root, "env", "lock", CYCLE)
    beampod_cli(facility.root, "env", "build", CYCLE)
    return facility


def layout_of(home: PodHome) -> EnvLayout:
    from beampod.config import load_pod

    return EnvLayout(load_pod(home))
