"""The wire codec: numpy values round-trip; messages without them take the fast path."""

from __future__ import annotations

from typing import Any

import msgpack
import msgpack_numpy
import numpy as np
import pytest

from beampod.bus import DecodeError, decode, encode


def _event(data: dict[str, object]) -> dict[str, object]:
    return {
        "uid": "u1",
        "time": 1.5,
        "seq_num": 3,
        "descriptor": "d1",
        "data": data,
        "timestamps": dict.fromkeys(data, 1.5),
        "filled": {},
    }


def test_plain_event_decodes_as_with_the_numpy_hook() -> None:
    # Strings that contain "nd" and "complex" as text are not the hook's keys.
    doc = _event({"det": 1.25, "random_walk:x": 2, "note": "nd complex and"})
    data = encode("event", doc)
    with_hook = msgpack.unpackb(
        data, object_hook=msgpack_numpy.decode, raw=False, strict_map_key=False
    )
    assert decode(data) == tuple(with_hook) == ("event", doc)


def test_numpy_values_and_complex_round_trip() -> None:
    image = np.arange(6, dtype=np.uint16).reshape(2, 3)
    name, doc = decode(encode("event", _event({"img": image, "det": np.float32(2.5)})))
    assert name == "event"
    got = doc["data"]
    assert isinstance(got["img"], np.ndarray) and got["img"].dtype == np.uint16
    assert np.array_equal(got["img"], image)
    assert isinstance(got["det"], np.float32) and got["det"] == np.float32(2.5)
    _, doc = decode(encode("event", _event({"z": 1 + 2j})))
    assert doc["data"]["z"] == 1 + 2j


def test_bad_messages_are_decode_errors() -> None:
    with pytest.raises(DecodeError, match="not msgpack"):
        decode(b"\xc1")
    with pytest.raises(DecodeError, match="unknown document name"):
        decode(msgpack.packb(("nope", {})))
    with pytest.raises(DecodeError, match="not a mapping"):
        decode(msgpack.packb(("event", [1])))


def test_a_kept_encoder_writes_the_same_bytes_and_survives_a_failed_document() -> None:
    from beampod.bus._codec import make_encoder

    enc = make_encoder()
    docs: list[tuple[str, dict[str, Any]]] = [
        ("event", {"uid": "e", "data": {"det": 1.0, "img": np.arange(6).reshape(2, 3)}}),
        ("start", {"uid": "s", "scan_id": 3, "blob": b"\x00\x01", "n": np.float32(2.5)}),
        ("event", {"uid": "e2", "data": {}}),
    ]
    with pytest.raises(TypeError):
        enc("event", {"uid": "x", "data": {"bad": object()}})  # not encodable
    for name, doc in docs:
        assert enc(name, doc) == encode(name, doc)
        assert decode(enc(name, doc))[0] == name
