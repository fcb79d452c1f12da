"""Wire protocol between an adaptive plan and an agent: subjects, messages, codec.

Every request names its plan (a uuid per ``adaptive_plan`` call) and a sequence number
(the decision index: ``batch_count`` per run, or the event index per event). A reply
carries the same pair, so the plan can drop anything stale, duplicated or meant for
another plan. Pure data and pure functions: tested without sockets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack

from beampod.errors import BeampodError

#: First word of the line the agent service logs once it serves (the supervisor waits for it).
READY_WORD = "AGENT-READY"

PROTOCOL_VERSION = 1

Point = dict[str, float]
ReplyKind = Literal["point", "stop", "resync", "error"]


class ProtocolError(BeampodError):
    """A message that is not a valid adaptive request or reply."""


def request_subject(instrument: str, agent: str) -> str:
    """Plans publish requests here; the agent service subscribes (queue group)."""
    return f"{instrument}.adaptive.{agent}.request"


def reply_subject(instrument: str, agent: str, client: str) -> str:
    """Replies go to a subject under the instrument's own prefix rather than to an
    ``_INBOX``: the per-instrument bus user may publish under ``<instrument>.>`` only."""
    return f"{instrument}.adaptive.{agent}.reply.{client}"


def ping_subject(instrument: str, agent: str) -> str:
    return f"{instrument}.adaptive.{agent}.ping"


@dataclass(frozen=True)
class Observation:
    """One measured point: independent values ``x`` (motor positions) and dependent
    values ``y`` (detector readings), both keyed by event data key."""

    x: Point
    y: Point

    def to_wire(self) -> dict[str, Any]:
        return {"x": self.x, "y": self.y}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Observation:
        return cls(x=_floats(data["x"]), y=_floats(data["y"]))


Batch = tuple[Observation, ...]


@dataclass(frozen=True)
class Request:
    """ "Here is what the measurement at decision ``seq`` gave; what next?"

    ``n_seen`` is how many decisions the plan already got for this plan id, so an agent
    that lost its state (restarted) notices and asks for a ``resync``; the plan then
    re-sends the same request with the whole ``history`` (one batch per decision).
    """

    plan: str
    seq: int
    batch: Batch
    reply_to: Mapping[str, str]
    mode: str = "per_run"
    history: tuple[Batch, ...] | None = None
    kind: Literal["observe", "done"] = "observe"
    reason: str = ""

    def to_wire(self) -> bytes:
        body: dict[str, Any] = {
            "v": PROTOCOL_VERSION,
            "kind": self.kind,
            "plan": self.plan,
            "seq": self.seq,
            "batch": [o.to_wire() for o in self.batch],
            "reply_to": dict(self.reply_to),
            "mode": self.mode,
            "reason": self.reason,
        }
        if self.history is not None:
            body["history"] = [[o.to_wire() for o in b] for b in self.history]
        return pack(body)

    @classmethod
    def from_wire(cls, data: bytes) -> Request:
        body = unpack(data)
        try:
            history = body.get("history")
            return cls(
                plan=str(body["plan"]),
                seq=int(body["seq"]),
                batch=tuple(Observation.from_wire(o) for o in body["batch"]),
                reply_to={str(k): str(v) for k, v in body["reply_to"].items()},
                mode=str(body.get("mode", "per_run")),
                history=None
                if history is None
                else tuple(tuple(Observation.from_wire(o) for o in b) for b in history),
                kind=body.get("kind", "observe"),
                reason=str(body.get("reason", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProtocolError(f"bad adaptive request: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class Reply:
    plan: str
    seq: int
    kind: ReplyKind
    point: Point = field(default_factory=dict)
    reason: str = ""
    agent: str = ""

    def to_wire(self) -> bytes:
        return pack(
            {
                "v": PROTOCOL_VERSION,
                "plan": self.plan,
                "seq": self.seq,
                "kind": self.kind,
                "point": self.point,
                "reason": self.reason,
                "agent": self.agent,
            }
        )

    @classmethod
    def from_wire(cls, data: bytes) -> Reply:
        body = unpack(data)
        try:
            kind = body["kind"]
            if kind not in ("point", "stop", "resync", "error"):
                raise ValueError(f"unknown reply kind {kind!r}")
            return cls(
                plan=str(body["plan"]),
                seq=int(body["seq"]),
                kind=kind,
                point=_floats(body.get("point") or {}),
                reason=str(body.get("reason", "")),
                agent=str(body.get("agent", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProtocolError(f"bad adaptive reply: {type(exc).__name__}: {exc}") from None


def pack(body: Mapping[str, Any]) -> bytes:
    return msgpack.packb(body, use_bin_type=True)


def unpack(data: bytes) -> dict[str, Any]:
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise ProtocolError(f"not msgpack: {type(exc).__name__}") from None
    if not isinstance(body, dict):
        raise ProtocolError(f"expected a mapping, got {type(body).__name__}")
    if body.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {body.get('v')!r}")
    return body


def _floats(values: Mapping[str, Any]) -> Point:
    out: Point = {}
    for key, value in values.items():
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{key} is not a finite number")
        out[str(key)] = number
    return out
