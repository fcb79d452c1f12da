"""Generated credentials of a pod: written once at init, mode 0600, never logged.

Every value is a ``SecretStr`` so that printing a model or a traceback shows
``**********`` instead of the key.
"""

from __future__ import annotations

import os
import secrets as _rng
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from beampod.errors import ConfigError


def _token() -> SecretStr:
    # Hex, not url-safe base64: tiled's client (and other tools) accept only ``\\w+``
    # API keys and silently ignore a key containing "-".
    return SecretStr(_rng.token_hex(32))


class InstrumentSecrets(BaseModel):
    """Per-instrument credentials, so one bus and one store can serve many instruments."""

    model_config = ConfigDict(extra="forbid")
    bus_password: SecretStr = Field(default_factory=_token)


class Secrets(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bus_admin_password: SecretStr = Field(default_factory=_token)
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


def generate(instruments: list[str]) -> Secrets:
    import zmq

    public, private = zmq.curve_keypair()
    return Secrets(
        queue_zmq_public_key=public.decode(),
        queue_zmq_private_key=SecretStr(private.decode()),
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
        return {k: _plain(getattr(value, k)) for k in type(value).model_fields}
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


def read(path: Path) -> Secrets:
    if not path.exists():
        raise ConfigError(path, ["secrets file is missing: run `beampod init`"])
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(
            path, [f"secrets file is readable by others (mode {mode:o}); run: chmod 600 {path}"]
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
        return Secrets.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(path, [f"secrets file is corrupt: {type(exc).__name__}"]) from None
