"""The writer loop run in a thread for tests, and an in-memory sink as its seam."""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from typing import Any

from beampod.bus import NatsConnection
from beampod.config import LoadedPod, WriterSettings
from beampod.store import BatchResult, Item
from beampod.writer import Writer
from tests.bus._docs import Doc


class RecordingSink:
    """What a RunSink promises, in memory: idempotent on the message id."""

    def __init__(self) -> None:
        self.stored: dict[str, Doc] = {}  # insertion order = first time stored
        self.duplicates = 0
        self.lock = threading.Lock()

    def write_batch(self, items: list[Item], waiting: object = ()) -> BatchResult:
        result = BatchResult()
        with self.lock:
            for name, doc, msg_id in items:
                if msg_id in self.stored:
                    result.duplicates += 1
                    self.duplicates += 1
                else:
                    self.stored[msg_id] = (name, doc)
                    result.written += 1
        return result

    def ping(self) -> None:
        return None

    def can_store(self) -> bool:
        return True

    def docs(self) -> list[Doc]:
        with self.lock:
            return list(self.stored.values())


class RunningWriter:
    """The real writer loop in a thread, on ``sink`` (default: a RecordingSink)."""

    def __init__(
        self, pod: LoadedPod, sink: Any = None, hold_s: float = 60.0, paced: bool = False
    ) -> None:
        self.sink = RecordingSink() if sink is None else sink
        self.writer = Writer(
            NatsConnection.from_pod(pod, "demo", role="writer", name="test-writer"),
            "demo",
            lambda: self.sink,  # type: ignore[arg-type,return-value]
            WriterSettings(max_wait_ms=50, hold_early_s=hold_s),
            retry_initial_s=0.05,
            retry_max_s=0.5,
            paced=paced,
        )
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.error: BaseException | None = None
        self.error_trace = ""  # where it was raised, for the failure message
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()
        assert self.ready.wait(20), "the writer never became ready"

    def _main(self) -> None:
        try:
            self.loop.run_until_complete(self.writer.run(on_ready=self.ready.set))
        except BaseException as exc:  # noqa: BLE001 - recorded; the test asserts on it
            self.error = exc
            self.error_trace = "".join(traceback.format_exception(exc))

    def wait_docs(self, n: int, deadline_s: float = 30.0) -> list[Doc]:
        deadline = time.monotonic() + deadline_s
        while len(docs := self.sink.docs()) < n:
            assert self.thread.is_alive(), f"the writer stopped: {self.error_trace}"
            assert time.monotonic() < deadline, f"{len(docs)} of {n} documents stored"
            time.sleep(0.02)  # poll interval, bounded by the deadline
        return docs

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.writer.request_stop)
        self.thread.join(20)
