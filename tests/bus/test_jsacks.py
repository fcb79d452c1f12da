"""JetStream publish replies -> outcomes, without sockets (the I/O is exercised by the
contract and fault suites against a real nats-server)."""

from __future__ import annotations

import pytest

from beampod.bus._jsacks import parse_puback


@pytest.mark.parametrize(
    ("data", "status", "outcome", "detail_has"),
    [
        (b'{"stream":"DEMO_DOCUMENTS","seq":12}', None, "stored", ""),
        # exactly what nats-server 2.11 sends (with the space)
        (b'{"stream":"DEMO_DOCUMENTS","seq":1,"duplicate": true}', None, "duplicate", ""),
        (b'{"stream":"DEMO_DOCUMENTS","seq":12,"duplicate":true}', None, "duplicate", ""),
        (b'{"stream":"DEMO_DOCUMENTS","seq":12,"duplicate":false}', None, "stored", ""),
        (b'{"stream":"DEMO_DOCUMENTS","domain":"x","seq":3}', None, "stored", ""),
        (b"", "503", "unavailable", "no responders"),
        (b"", "408", "unavailable", "status 408"),
        (
            b'{"error":{"code":503,"err_code":10039,"description":"jetstream not enabled"}}',
            None,
            "unavailable",
            "jetstream not enabled",
        ),
        (
            b'{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum"}}',
            None,
            "refused",
            "message size exceeds maximum",
        ),
        (
            b'{"error":{"code":400,"err_code":10060,'
            b'"description":"expected stream does not match"}}',
            None,
            "refused",
            "expected stream",
        ),
        (
            # a fail-over re-send while the first copy is still being proposed
            b'{"error":{"code":409,"err_code":10158,'
            b'"description":"duplicate message id is in process"}}',
            None,
            "unavailable",
            "still being stored",
        ),
        (
            b'{"error":{"code":429,"err_code":10167,"description":"too many requests"}}',
            None,
            "unavailable",
            "ingest queue is full",
        ),
        (b'{"error": not json', None, "unavailable", "unreadable"),
        (b"+OK", None, "unavailable", "not a JetStream acknowledgement"),
    ],
    ids=[
        "stored",
        "duplicate-as-sent",
        "duplicate",
        "not-duplicate",
        "domain",
        "no-responders",
        "other-status",
        "js-503",
        "too-large",
        "wrong-stream",
        "id-in-process",
        "too-many-requests",
        "garbled-error",
        "not-an-ack",
    ],
)
def test_replies_map_to_outcomes(
    data: bytes, status: str | None, outcome: str, detail_has: str
) -> None:
    got, detail = parse_puback(data, status)
    assert got == outcome
    assert detail_has in detail
