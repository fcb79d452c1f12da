"""Events as pages on the bus (``bus.event_page_ms``): the page logic without sockets,
then the publisher against a real nats-server -- what the stream holds, in what order,
and that every emitted event is in it exactly once."""

from __future__ import annotations

import time
from typing import Any

import pytest
from event_model import unpack_event_page

from beampod.bus import DocumentPublisher, DurablePublisher
from beampod.bus._natsconf import HEADER_ALLOWANCE
from beampod.bus._pages import EventPages
from beampod.config import LoadedPod

from ._docs import Doc, assert_docs_equal, run_plan
from ._natsproc import NatsProcess
from ._stream import read_stream


def _event(seq: int, descriptor: str = "d1", **data: Any) -> dict[str, Any]:
    data = data or {"x": seq}
    return {
        "uid": f"e{descriptor}{seq}",
        "descriptor": descriptor,
        "seq_num": seq,
        "time": 1000.0 + seq,
        "data": data,
        "timestamps": dict.fromkeys(data, 1000.0 + seq),
        "filled": {},
    }


def _seqs(events: list[dict[str, Any]] | None) -> list[int]:
    assert events is not None
    return [e["seq_num"] for e in events]


def _sent(pages: list[list[dict[str, Any]]]) -> list[list[int]]:
    return [_seqs(events) for events in pages]


def test_a_stream_s_consecutive_events_share_a_page_until_its_deadline() -> None:
    pages = EventPages(wait_s=0.2)
    assert pages.add(_event(2), now=10.0) == ([], True)  # a page opened
    assert pages.deadline == pytest.approx(10.2)
    assert pages.add(_event(3), now=10.1) == ([], False)  # held
    assert pages.take_due(10.19) is None
    assert _seqs(pages.take_due(10.2)) == [2, 3]
    assert pages.deadline is None and pages.take() is None


def test_a_stream_s_first_event_goes_at_once() -> None:
    """The writer creates the stream's table with it while the first page fills."""
    pages = EventPages(wait_s=1.0)
    pages.add(_event(7), now=0.0)
    send, opened = pages.add(_event(1, descriptor="d2"), now=0.1)
    assert _sent(send) == [[7], [1]] and not opened  # the open page first, in order
    assert pages.deadline is None
    assert pages.add(_event(2, descriptor="d2"), now=0.2) == ([], True)


def test_another_descriptor_or_other_keys_close_the_page_in_order() -> None:
    pages = EventPages(wait_s=1.0)
    pages.add(_event(2), now=0.0)
    pages.add(_event(3), now=0.0)
    send, opened = pages.add(_event(2, descriptor="d2"), now=0.5)
    assert _sent(send) == [[2, 3]] and opened
    assert pages.deadline == pytest.approx(1.5)  # the new page's own wait
    send, opened = pages.add(_event(3, descriptor="d2", y=1.0), now=0.6)  # other keys
    assert _sent(send) == [[2]] and opened
    assert _seqs(pages.take()) == [3]


def test_a_full_page_goes_at_once() -> None:
    pages = EventPages(wait_s=1.0, max_events=3)
    assert pages.add(_event(2), 0.0) == ([], True)
    assert pages.add(_event(3), 0.0) == ([], False)
    send, opened = pages.add(_event(4), 0.0)
    assert _sent(send) == [[2, 3, 4]] and not opened
    assert pages.deadline is None
    with pytest.raises(ValueError):
        EventPages(wait_s=0.0)
    with pytest.raises(ValueError):
        EventPages(wait_s=1.0, max_events=1)


Stream = list[tuple[str | None, str, dict[str, Any], int]]


def _unpacked(stream: Stream) -> list[Doc]:
    out: list[Doc] = []
    for _mid, name, doc, _size in stream:
        if name == "event_page":
            out.extend(("event", dict(ev)) for ev in unpack_event_page(doc))  # type: ignore[arg-type]
        else:
            out.append((name, doc))
    return out


def _plan_through(pub: DocumentPublisher, pod: LoadedPod, num: int) -> tuple[list[Doc], Stream]:
    """A RunEngine scan of ``num`` points published by ``pub``: what it emitted, and
    then what the documents stream holds."""
    try:
        emitted = run_plan(pub, num=num)
        assert pub.flush(30.0)
    finally:
        pub.close()
    return emitted, read_stream(pod)


def _names(stream: Stream) -> list[str]:
    return [name for _mid, name, _doc, _size in stream]


@pytest.mark.timeout(120)
def test_a_run_s_events_travel_as_one_page_between_its_other_documents(
    bus_pod: LoadedPod, nats_server: NatsProcess
) -> None:
    pub = DurablePublisher.from_pod(bus_pod, event_page_s=30.0)  # only documents close it
    emitted, stream = _plan_through(pub, bus_pod, num=12)
    assert _names(stream) == [
        "start",
        "descriptor",
        "event",  # a stream's first event goes at once
        "event_page",
        "stop",
    ]
    page_id = stream[3][0]
    assert page_id is not None and page_id.endswith(":2-12")  # first..last seq_num
    assert len(stream[3][2]["data"]["img"]) == 11  # the array detector's images, one each
    assert_docs_equal(_unpacked(stream), emitted)


def _wait_stream(pod: LoadedPod, names: list[str], timeout: float = 20.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        stream = read_stream(pod)
        if [name for _mid, name, _doc, _size in stream] == names:
            return stream
        assert time.monotonic() < deadline, [name for _mid, name, _doc, _size in stream]


@pytest.mark.timeout(120)
def test_an_open_page_goes_out_by_itself_when_its_wait_is_over(
    bus_pod: LoadedPod, nats_server: NatsProcess
) -> None:
    """No later document closes it: the publisher's I/O thread sends it on time."""
    pub = DurablePublisher.from_pod(bus_pod, event_page_s=0.3)
    try:
        pub("start", {"uid": "r1", "time": 1000.0})
        desc = {"uid": "d1", "run_start": "r1", "time": 1000.0, "name": "primary"}
        pub("descriptor", {**desc, "data_keys": {"x": {"source": "s", "dtype": "number"}}})
        for seq in (1, 2, 3, 4):
            pub("event", _event(seq))
        stream = _wait_stream(bus_pod, ["start", "descriptor", "event", "event_page"])
        assert stream[3][2]["seq_num"] == [2, 3, 4]
        pub("event", _event(5))
        pub("stop", {"uid": "s1", "run_start": "r1", "time": 1001.0, "exit_status": "success"})
        assert pub.flush(30.0), pub.status()
    finally:
        pub.close()
    stream = read_stream(bus_pod)
    # One event left when the stop came: it goes as the event it was.
    assert [(name, doc.get("seq_num")) for _mid, name, doc, _size in stream][2:] == [
        ("event", 1),
        ("event_page", [2, 3, 4]),
        ("event", 5),
        ("stop", None),
    ]


@pytest.mark.timeout(120)
def test_an_event_too_large_for_a_message_is_reported_alone(
    bus_pod: LoadedPod, nats_server: NatsProcess
) -> None:
    pub = DurablePublisher.from_pod(
        bus_pod, event_page_s=30.0, max_payload=HEADER_ALLOWANCE + 2_000
    )
    try:
        pub("start", {"uid": "r1", "time": 1000.0})
        pub("descriptor", {"uid": "d1", "run_start": "r1", "time": 1000.0, "data_keys": {}})
        for seq in (1, 2, 3, 4):
            pub("event", _event(seq, x="a" * (5_000 if seq == 3 else 10)))
        pub("stop", {"uid": "s1", "run_start": "r1", "time": 1001.0, "exit_status": "success"})
        assert pub.flush(30.0), pub.status()
        assert pub.status().rejected == 1
    finally:
        pub.close()
    stream = read_stream(bus_pod)
    assert [(name, doc.get("seq_num")) for _mid, name, doc, _size in stream] == [
        ("start", None),
        ("descriptor", None),
        ("event", 1),
        ("event", 2),  # the page of 2..4, whose 3 is too large, one by one
        ("event", 4),
        ("stop", None),
    ]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("made_by", ["from_pod", "transport_for"])
def test_the_pod_config_turns_pages_on(
    bus_pod: LoadedPod, nats_server: NatsProcess, made_by: str
) -> None:
    """``bus.event_page_ms`` in config.yaml reaches the publisher whichever way it is
    made (the session and the queue's worker use ``transport_for``)."""
    import yaml

    from beampod.bus import transport_for
    from beampod.config import load_pod

    path = bus_pod.home.config_file
    config = yaml.safe_load(path.read_text())
    config["bus"]["event_page_ms"] = 5_000  # the most allowed: the documents close it
    path.write_text(yaml.safe_dump(config))
    pod = load_pod(bus_pod.home)
    pub: DocumentPublisher
    if made_by == "from_pod":
        pub = DurablePublisher.from_pod(pod)
    else:
        pub = transport_for(pod).publisher()
    emitted, stream = _plan_through(pub, pod, num=5)
    assert _names(stream) == [
        "start",
        "descriptor",
        "event",
        "event_page",
        "stop",
    ]
    assert_docs_equal(_unpacked(stream), emitted)
