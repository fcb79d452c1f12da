"""Embedded PostgreSQL: pgserver's bundled binaries run as a supervised pod service.

pgserver's own ``get_server()`` starts postgres in the background via ``pg_ctl`` and
listens on a unix socket only; a pod service must instead stay in the foreground
(so the supervisor owns and restarts it) and listen on 127.0.0.1:<store.port> with a
password. So only the binaries are reused: ``prepare_postgres`` (the service's
``prepare``) runs ``initdb`` once, and ``python -m beampod.store.postgres`` execs
``postgres`` in the foreground.

PostgreSQL refuses to run as root. Under root the data directory is owned by, and
the server runs as, an unprivileged system user (``pgserver``, the user pgserver
itself creates for this), and the directories above the data get the traverse (x)
bit for others -- not read -- so that user can reach it.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from beampod.config import LoadedPod, PodHome, PostgresStore, load_pod
from beampod.errors import BeampodError, ConfigError, StoreError
from beampod.store._layout import PG_DATABASE, PG_USER, StoreLayout, layout_of
from beampod.store._pools import ConnectionPools

SYSTEM_USER = "pgserver"


def bin_path(name: str) -> Path:
    import warnings

    with warnings.catch_warnings():
        # Importing pgserver makes platformdirs warn about XDG_RUNTIME_DIR (used only
        # by pgserver's own background-server mode, which beampod does not use).
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH) / name


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) to run postgres as, or None to stay the current user."""
    if os.geteuid() != 0:
        return None
    bin_path("postgres")  # imports pgserver quietly
    from pgserver.utils import ensure_user_exists

    entry = ensure_user_exists(SYSTEM_USER)
    if entry is None:
        raise StoreError(f"cannot create system user {SYSTEM_USER!r} for PostgreSQL")
    return entry.pw_uid, entry.pw_gid


def _grant_traverse(path: Path) -> None:
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


def _demote(ids: tuple[int, int] | None) -> None:
    if ids is not None:
        os.setgid(ids[1])
        os.setuid(ids[0])


def initdb(layout: StoreLayout, password: str) -> bool:
    """Create the cluster, role and database once. Returns True if it did anything."""
    pgdata = layout.pgdata
    if (pgdata / "PG_VERSION").exists():
        return False
    ids = _run_as()
    layout.postgres_dir.mkdir(parents=True, exist_ok=True)
    layout.postgres_dir.chmod(0o700)
    # A half-made cluster from an interrupted initdb must not be mistaken for one.
    if pgdata.exists() and any(pgdata.iterdir()):
        raise StoreError(
            f"{pgdata} exists without PG_VERSION (interrupted initdb?): "
            "move it away and start again"
        )
    pgdata.mkdir(exist_ok=True)
    pwfile = layout.postgres_dir / ".initdb-pw"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    try:
        if ids is not None:
            _grant_traverse(layout.postgres_dir)
            _chown_tree(layout.postgres_dir, *ids)
        subprocess.run(
            [
                str(bin_path("initdb")),
                "-D",
                str(pgdata),
                "-U",
                PG_USER,
                "--pwfile",
                str(pwfile),
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "--encoding=UTF8",
                "--no-instructions",
            ],
            check=True,
            capture_output=True,
            text=True,
            preexec_fn=(lambda: _demote(ids)) if ids else None,
        )
    except subprocess.CalledProcessError as exc:
        raise StoreError(f"initdb failed: {exc.stderr.strip()[-500:]}") from None
    finally:
        pwfile.unlink(missing_ok=True)
    # Single-user mode creates the database without opening any network port.
    try:
        subprocess.run(
            [str(bin_path("postgres")), "--single", "-D", str(pgdata), "postgres"],
            input=f"CREATE DATABASE {PG_DATABASE} OWNER {PG_USER};\n",
            check=True,
            capture_output=True,
            text=True,
            preexec_fn=(lambda: _demote(ids)) if ids else None,
        )
    except subprocess.CalledProcessError as exc:
        raise StoreError(
            f"creating database {PG_DATABASE} failed: {exc.stderr.strip()[-500:]}"
        ) from None
    return True


def prepare_postgres(pod: LoadedPod) -> None:
    """The postgres service's ``prepare``: idempotent initdb + permissions."""
    layout = layout_of(pod)
    initdb(layout, pod.secrets.postgres_password.get_secret_value())
    if os.geteuid() == 0:
        # ``init_pod`` resets the pod home to 0700 on every run; re-grant traversal.
        _grant_traverse(layout.postgres_dir)


def postgres_argv(pod: LoadedPod) -> list[str]:
    store = pod.config.store
    if not isinstance(store, PostgresStore):
        raise ConfigError("config.yaml", ["store.backend is not postgres"])
    pools = ConnectionPools.for_instruments(len(pod.config.instruments))
    return [
        str(bin_path("postgres")),
        "-D",
        str(layout_of(pod).pgdata),
        "-c",
        "listen_addresses=127.0.0.1",
        "-p",
        str(store.port),
        # TCP only: unix socket paths under a deep pod home can exceed 107 bytes.
        "-c",
        "unix_socket_directories=",
        # Logs go to stderr, which the supervisor captures into postgres.log.
        "-c",
        "logging_collector=off",
        "-c",
        f"max_connections={pools.postgres_max_connections}",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m beampod.store.postgres", description="Run the pod's embedded PostgreSQL."
    )
    parser.add_argument("--home", required=True)
    args = parser.parse_args(argv)
    try:
        pod = load_pod(PodHome.resolve(args.home))
        prepare_postgres(pod)
        cmd = postgres_argv(pod)
        ids = _run_as()
    except BeampodError as exc:
        print(f"beampod postgres: {exc}", file=sys.stderr)
        return exc.exit_code
    sys.stdout.flush()
    sys.stderr.flush()
    _demote(ids)
    # exec, not a child: the supervisor's signals then reach postgres itself.
    os.execv(cmd[0], cmd)
    return 0  # not reached
