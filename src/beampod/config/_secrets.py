"""Generated credentials of a pod: written once at init, mode 0600, never logged.

Every value is a ``SecretStr`` so that printing a model or a traceback shows
``**********`` instead of the key.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets as _rng
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from beampod.config._yaml import load_yaml
from beampod.errors import ConfigError


def _token() -> SecretStr:
    # Hex, not url-safe base64: tiled's client (and other tools) accept only ``\\w+``
    # API keys and silently ignore a key containing "-".
    return SecretStr(_rng.token_hex(32))


BusRole = Literal["reader", "publisher", "writer", "agent"]
# Least privilege first: a caller that does not say which role it needs gets the reader.
BUS_ROLES: tuple[BusRole, ...] = ("reader", "publisher", "writer", "agent")


class InstrumentSecrets(BaseModel):
    """Per-instrument credentials, so one bus and one store can serve many instruments.

    One bus password per role (docs/bus.md "Users and roles"): the session's publisher,
    the writer, read-only consumers and the adaptive agent each get only what their job
    needs. ``bus_password`` is the single credential of pods initialised before roles
    existed; it is read (so such a file still loads) and no longer used.

    Two Tiled keys per instrument (docs/facility.md "What is isolated"): its writer key
    writes only its own container, its reader key reads only its own container. The
    pod-wide ``tiled_*_key`` of :class:`Secrets` reach every container (staff, admin).

    Its queue server's keys (docs/queue.md "A queue server per instrument"): the HTTP
    control and observer keys and the 0MQ CURVE key pair are used when the pod has more
    than one instrument (a pod of one keeps the pod-wide ``queue_*`` keys); the Redis
    password is its queue manager's Redis user's, which may touch only its own keys.
    """

    model_config = ConfigDict(extra="forbid")
    reader_password: SecretStr = Field(default_factory=_token)
    publisher_password: SecretStr = Field(default_factory=_token)
    writer_password: SecretStr = Field(default_factory=_token)
    agent_password: SecretStr = Field(default_factory=_token)
    tiled_writer_key: SecretStr = Field(default_factory=_token)
    tiled_reader_key: SecretStr = Field(default_factory=_token)
    queue_control_key: SecretStr = Field(default_factory=_token)
    queue_observer_key: SecretStr = Field(default_factory=_token)
    queue_zmq_public_key: str = ""
    queue_zmq_private_key: SecretStr = SecretStr("")
    queue_redis_password: SecretStr = Field(default_factory=_token)
    bus_password: SecretStr | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _zmq_key_pair(self) -> InstrumentSecrets:
        # A pair cannot come from two default factories: generate both together.
        if not self.queue_zmq_private_key.get_secret_value():
            public, private = _curve_keypair()
            self.queue_zmq_public_key = public
            self.queue_zmq_private_key = SecretStr(private)
        return self

    def bus_role_password(self, role: BusRole) -> SecretStr:
        value = getattr(self, f"{role}_password", None)
        if not isinstance(value, SecretStr):
            raise ConfigError("secrets.yaml", [f"unknown bus role {role!r}"])
        return value


class Secrets(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bus_admin_password: SecretStr = Field(default_factory=_token)
    # nats-server's system account: node health requests instead of an HTTP port.
    bus_system_password: SecretStr = Field(default_factory=_token)
    redis_password: SecretStr = Field(default_factory=_token)
    tiled_writer_key: SecretStr = Field(default_factory=_token)
    tiled_reader_key: SecretStr = Field(default_factory=_token)
    tiled_admin_key: SecretStr = Field(default_factory=_token)
    queue_control_key: SecretStr = Field(default_factory=_token)
    queue_observer_key: SecretStr = Field(default_factory=_token)
    queue_zmq_public_key: str = ""
    queue_zmq_private_key: SecretStr = SecretStr("")
    postgres_password: SecretStr = Field(default_factory=_token)
    instruments: dict[str, InstrumentSecrets] = Field(default_factory=dict)

    def for_instrument(self, name: str) -> InstrumentSecrets:
        try:
            return self.instruments[name]
        except KeyError:
            raise ConfigError(
                "secrets.yaml", [f"no credentials for instrument {name!r}: run `beampod init`"]
            ) from None


def _curve_keypair() -> tuple[str, str]:
    import zmq

    public, private = zmq.curve_keypair()
    return public.decode(), private.decode()


def generate(instruments: list[str]) -> Secrets:
    public, private = _curve_keypair()
    return Secrets(
        queue_zmq_public_key=public,
        queue_zmq_private_key=SecretStr(private),
        instruments={name: InstrumentSecrets() for name in instruments},
    )


def ensure_instruments(secrets: Secrets, instruments: list[str]) -> tuple[Secrets, bool]:
    """Add credentials for instruments that have none yet; report whether anything changed."""
    missing = [n for n in instruments if n not in secrets.instruments]
    if not missing:
        return secrets, False
    merged = dict(secrets.instruments) | {n: InstrumentSecrets() for n in missing}
    return secrets.model_copy(update={"instruments": merged}), True


def _plain(value: object) -> object:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        return {k: _plain(getattr(value, k)) for k, f in fields.items() if not f.exclude}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def write(path: Path, secrets: Secrets) -> None:
    """Write atomically with mode 0600 from the first byte (no window where it is readable)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# beampod generated credentials. Keep private (mode 0600). Never commit.\n")
        yaml.safe_dump(_plain(secrets), fh, sort_keys=False)
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive lock beside the secrets file, so two processes that complete the same
    file at once do not each persist different generated values."""
    fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _parse(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(path, ["secrets file is missing: run `beampod init`"])
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(
            path, [f"secrets file is readable by others (mode {mode:o}); run: chmod 600 {path}"]
        )
    try:
        data = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(path, [f"secrets file is corrupt: {type(exc).__name__}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(path, ["secrets file is corrupt: not a mapping"])
    return data


def _validate(path: Path, data: dict[str, Any]) -> Secrets:
    try:
        return Secrets.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, [f"secrets file is corrupt: {type(exc).__name__}"]) from None


def _incomplete(data: dict[str, Any]) -> bool:
    """Fields a newer beampod generates that this file lacks (e.g. per-role bus
    passwords of a pod initialised before they existed)."""
    top = set(Secrets.model_fields) - {"queue_zmq_public_key", "queue_zmq_private_key"}
    if not top <= set(data):
        return True
    inst_fields = {k for k, f in InstrumentSecrets.model_fields.items() if not f.exclude}
    instruments = data.get("instruments") or {}
    return any(isinstance(v, dict) and not inst_fields <= set(v) for v in instruments.values())


def read(path: Path) -> Secrets:
    """Load the pod's secrets. A file that lacks credentials a newer beampod needs is
    completed and persisted (atomically, 0600, under a lock) before it is returned, so
    every process of the pod agrees on the generated values."""
    data = _parse(path)
    if not _incomplete(data):
        return _validate(path, data)
    with _locked(path):
        data = _parse(path)  # another process may have completed it meanwhile
        secrets = _validate(path, data)
        if _incomplete(data):
            write(path, secrets)
    return secrets


# Keys every client accepts: tiled's client ignores an API key that is not ``\w+``;
# URLs, shells and config files need no quoting for these.
_CLIENT_SAFE = re.compile(r"^[A-Za-z0-9_]+$")
_API_KEYS = (
    "tiled_writer_key",
    "tiled_reader_key",
    "tiled_admin_key",
    "queue_control_key",
    "queue_observer_key",
)


# Per instrument (docs/facility.md): its own Tiled and queue HTTP keys, named
# ``instruments.<name>.<key>``.
_INSTRUMENT_API_KEYS = (
    "tiled_writer_key",
    "tiled_reader_key",
    "queue_control_key",
    "queue_observer_key",
)


#: How ``rotate_keys`` names an instrument's queue 0MQ key pair (two fields, one name).
_ZMQ_PAIR = "queue_zmq_key_pair"


def _api_keys(secrets: Secrets) -> dict[str, str]:
    """Every API key by its name in secrets.yaml (dotted for an instrument's own)."""
    keys = {k: getattr(secrets, k).get_secret_value() for k in _API_KEYS}
    for inst, inst_secrets in secrets.instruments.items():
        for k in _INSTRUMENT_API_KEYS:
            keys[f"instruments.{inst}.{k}"] = getattr(inst_secrets, k).get_secret_value()
    return keys


def unusable_keys(secrets: Secrets) -> list[str]:
    """Names of the API keys (Tiled, queue HTTP) that some client cannot use: they
    contain characters outside ``[A-Za-z0-9_]`` (older pods generated url-safe base64)."""
    return [k for k, v in _api_keys(secrets).items() if not _CLIENT_SAFE.match(v)]


def rotate_keys(path: Path, *, every: bool = False) -> list[str]:
    """Regenerate the API keys that some client cannot use (all API keys, the
    instruments' own included, with ``every``), keep every other secret, write
    atomically with mode 0600. Returns the names of the keys replaced (never their
    values)."""
    with _locked(path):
        secrets = _validate(path, _parse(path))
        names = list(_api_keys(secrets)) if every else unusable_keys(secrets)
        if every:  # each instrument's queue 0MQ key pair too (generated, so always usable)
            names += [f"instruments.{inst}.{_ZMQ_PAIR}" for inst in secrets.instruments]
        if names:
            write(path, _replaced(secrets, names))
    return names


def _replaced(secrets: Secrets, names: list[str]) -> Secrets:
    top = {n: _token() for n in names if "." not in n}
    instruments = dict(secrets.instruments)
    for name in names:
        if "." in name:
            _, inst, key = name.split(".")
            if key == _ZMQ_PAIR:
                public, private = _curve_keypair()
                update: dict[str, object] = {
                    "queue_zmq_public_key": public,
                    "queue_zmq_private_key": SecretStr(private),
                }
            else:
                update = {key: _token()}
            instruments[inst] = instruments[inst].model_copy(update=update)
    return secrets.model_copy(update={**top, "instruments": instruments})
