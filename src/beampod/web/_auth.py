"""Who is asking: login with an instrument's queue keys, in-memory sessions, CSRF tokens.

- an instrument's ``queue_observer_key`` -> role ``observer`` of that instrument (reads
  its pages, changes nothing); its ``queue_control_key`` -> role ``control``. A session
  is for that one instrument.
- A session is a random id in an HttpOnly, SameSite=Strict cookie; the sessions live in
  this process's memory only (a restart logs everybody out).
- A request without a session from a loopback socket owned by the pod owner's uid is an
  observer (the queue's owner-only loopback rule); anybody else must log in.
- Every state-changing request carries the session's CSRF token (form field ``csrf`` or
  header ``X-CSRF-Token``); the login form uses a double-submit cookie.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["observer", "control"]
SESSION_COOKIE = "beampod_session"
LOGIN_CSRF_COOKIE = "beampod_login_csrf"
SESSION_MAX_AGE_S = 12 * 3600
_LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}

PeerUid = Callable[[tuple[str, int], tuple[str, int]], "int | None"]


@dataclass
class Session:
    role: Role
    csrf: str
    created: float
    # A loopback owner without login: no cookie, nothing to log out of.
    implicit: bool = False
    # The instrument whose key logged in; None: every instrument (the implicit owner).
    instrument: str | None = None

    @property
    def can_control(self) -> bool:
        return self.role == "control"

    def may_see(self, instrument: str) -> bool:
        return self.instrument is None or self.instrument == instrument


@dataclass
class Keys:
    control: str
    observer: str

    def role_of(self, key: str) -> Role | None:
        key = key.strip()
        if not key:
            return None
        # Compare against both every time (no early exit on the first).
        is_control = secrets.compare_digest(key, self.control)
        is_observer = secrets.compare_digest(key, self.observer)
        if is_control:
            return "control"
        if is_observer:
            return "observer"
        return None


@dataclass
class Sessions:
    """Session id -> Session, in memory."""

    max_age_s: float = SESSION_MAX_AGE_S
    clock: Callable[[], float] = time.monotonic
    _by_id: dict[str, Session] = field(default_factory=dict)

    def create(self, role: Role, instrument: str | None = None) -> tuple[str, Session]:
        self._expire()
        sid = secrets.token_urlsafe(32)
        session = Session(
            role=role, csrf=secrets.token_urlsafe(32), created=self.clock(), instrument=instrument
        )
        self._by_id[sid] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        session = self._by_id.get(sid)
        if session is not None and self.clock() - session.created > self.max_age_s:
            del self._by_id[sid]
            return None
        return session

    def drop(self, sid: str | None) -> None:
        if sid:
            self._by_id.pop(sid, None)

    def __len__(self) -> int:
        return len(self._by_id)

    def _expire(self) -> None:
        now = self.clock()
        for sid in [s for s, v in self._by_id.items() if now - v.created > self.max_age_s]:
            del self._by_id[sid]


def loopback_owner(
    client: tuple[str, int] | None,
    server: tuple[str, int] | None,
    peer_uid: PeerUid,
    owner_uid: int | None = None,
) -> bool:
    """True when the request comes from a loopback socket owned by the pod owner."""
    if client is None or server is None or client[0] not in _LOOPBACK:
        return False
    uid = peer_uid(client, server)
    return uid is not None and uid == (os.getuid() if owner_uid is None else owner_uid)


def csrf_ok(session: Session, presented: str | None) -> bool:
    return bool(presented) and secrets.compare_digest(str(presented), session.csrf)
