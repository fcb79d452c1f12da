"""A real nats-server for tests: generated config, readiness polled with a deadline,
SIGKILL-able, and checked to be gone on teardown."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from beampod.bus import ensure_streams_sync, nats_server_binary, write_nats_config
from beampod.config import LoadedPod, NatsBus


class NatsProcess:
    def __init__(self, pod: LoadedPod) -> None:
        self.pod = pod
        bus = pod.config.bus
        assert isinstance(bus, NatsBus)
        self.bus = bus
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path = pod.home.logs_dir / "nats-test.log"

    def start(self, deadline_s: float = 20.0, streams: bool = True) -> None:
        assert self.proc is None or self.proc.poll() is not None
        conf = write_nats_config(self.pod)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [nats_server_binary(), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.wait_ready(deadline_s)
        if streams:
            ensure_streams_sync(self.pod)

    def start_without_jetstream(self, deadline_s: float = 20.0) -> None:
        """The same server (port, users) with JetStream off: clients connect, and every
        JetStream request is answered 503 "no responders" -- what a client sees while a
        server or cluster has no JetStream to offer."""
        import re

        assert self.proc is None or self.proc.poll() is not None
        conf = write_nats_config(self.pod)
        no_js = conf.with_name("nats-server-no-jetstream.conf")
        no_js.write_text(re.sub(r"jetstream \{[^}]*\}\n", "", conf.read_text()))
        no_js.chmod(0o600)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [nats_server_binary(), "-c", str(no_js)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.wait_ready(deadline_s, jetstream=False)

    def wait_ready(self, deadline_s: float, jetstream: bool = True) -> None:
        """Ready when the client port greets with nats-server's INFO line, saying whether
        JetStream is on (the pod runs no HTTP monitoring port by default)."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log_path.read_text()[-2000:]}")
            info = _server_info(self.bus.port)
            if info is not None and bool(info.get("jetstream")) == jetstream:
                return
            time.sleep(0.02)  # poll interval, not a fixed wait: bounded by the deadline
        raise TimeoutError(f"nats-server not ready within {deadline_s}s")

    def kill(self) -> None:
        """SIGKILL and wait until the process is reaped."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        assert self.proc is None or self.proc.poll() is not None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        assert self.proc is None or self.proc.poll() is not None, "nats-server still running"


def _server_info(port: int) -> dict[str, Any] | None:
    """The INFO document nats-server sends every new client, or None if none came."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            line = sock.makefile("rb").readline(1 << 16)
    except OSError:
        return None
    if not line.startswith(b"INFO "):
        return None
    info = json.loads(line[5:])
    return info if isinstance(info, dict) else None
