"""What a RunSink answers: per-message outcomes of a batch, and its errors, with how an
HTTP failure of Tiled is sorted into "retry later" and "give up"."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from beampod.errors import StoreError

Item = tuple[str, dict[str, Any], str]


class TransientStoreError(StoreError):
    """Tiled is unreachable or failing (5xx): retry the same batch later."""


class StoreAccessError(StoreError):
    """Tiled refused the writer's credentials (401/403): retrying will not help."""


class Rejected(Exception):
    """Internal: this one document is permanently bad."""

    early = False


class Early(Rejected):
    """Internal: this document needs others of its run that are not stored yet."""

    early = True


@dataclass(frozen=True)
class Rejection:
    msg_id: str
    name: str
    reason: str
    # Not storable *yet*: documents it needs have not arrived (module docstring).
    early: bool = False


@dataclass
class BatchResult:
    written: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.rejected


def http_status(exc: BaseException) -> int | None:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code
    return None


def is_transient_http(exc: BaseException) -> bool:
    status = http_status(exc)
    if status is None:
        return isinstance(exc, httpx.TransportError)
    return status >= 500 or status in (408, 429)


def http_detail(exc: httpx.HTTPStatusError) -> str:
    try:
        body = exc.response.json()
    except ValueError:
        return exc.response.text[:200]
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return str(detail)[:300]


def translate(exc: BaseException, what: str) -> StoreError:
    status = http_status(exc)
    if status in (401, 403):
        return StoreAccessError(f"Tiled refused the writer key while {what} ({status})")
    if is_transient_http(exc) or isinstance(exc, OSError):
        return TransientStoreError(f"Tiled unavailable while {what}: {type(exc).__name__}: {exc}")
    return StoreError(f"Tiled error while {what}: {exc}")
