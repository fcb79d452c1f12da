"""Where the RE Manager's info socket lives: a 0700 directory, short enough for a unix
socket path, never a directory another user controls."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from beampod.config import PodHome
from beampod.errors import BeampodError
from beampod.queue import QueueFiles, info_socket_path, make_info_socket_dir
from beampod.queue._files import UNIX_PATH_MAX


def test_short_home_keeps_the_socket_in_the_pod_home(tmp_path: Path) -> None:
    home = PodHome(tmp_path / "pod")
    assert info_socket_path(home) == QueueFiles.of(home).root / "info.sock"
    made = make_info_socket_dir(home)
    assert stat.S_IMODE(made.stat().st_mode) == 0o700


def test_long_home_falls_back_to_a_short_private_dir(tmp_path: Path) -> None:
    home = PodHome(tmp_path / ("x" * 120))
    path = info_socket_path(home, environ={})
    assert len(str(path).encode()) <= UNIX_PATH_MAX
    assert path.parent.name.startswith(f"beampod-{os.getuid()}-")
    assert path.parent.parent == Path("/tmp")
    # Another long home gets another directory.
    other = info_socket_path(PodHome(tmp_path / ("y" * 120)), environ={})
    assert other != path
    runtime = tmp_path / "run-user"
    runtime.mkdir(mode=0o700)
    in_runtime = info_socket_path(home, environ={"XDG_RUNTIME_DIR": str(runtime)})
    assert in_runtime.parent.parent == runtime
    runtime.chmod(0o755)  # not private: not used
    assert info_socket_path(home, environ={"XDG_RUNTIME_DIR": str(runtime)}) == path


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make a directory of another user")
def test_refuses_a_directory_someone_else_owns(tmp_path: Path) -> None:
    home = PodHome(tmp_path / ("z" * 120))
    squatted = info_socket_path(home).parent
    squatted.mkdir(mode=0o777)
    try:
        os.chown(squatted, 65534, 65534)
        with pytest.raises(BeampodError, match="not a directory owned by uid"):
            make_info_socket_dir(home)
    finally:
        squatted.rmdir()
