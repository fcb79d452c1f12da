"""One agent process per instrument (or per pool of instruments), given only those
instruments' credentials.

The supervisor starts ``agent`` (a pod of one instrument), ``agent-<instrument>`` (a
pod of several) or, with ``pod.agent_pool_size`` > 1, ``agent-pool-<k>`` for the
instruments whose agent is enabled. The process never reads the pod's ``secrets.yaml``:
it gets its instruments' ``agent`` bus passwords in its environment (and, in a pod of
one instrument, the Redis password for the bluesky-pods demo's Redis replies), so a
process of instrument A holds nothing of B's unless A and B share a pool (ADR 0025).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import SecretStr

from beampod._podhome import PodHome
from beampod.config._facility import instrument_agent
from beampod.config._load import load_config
from beampod.config._model import PodConfig
from beampod.config._pod import LoadedPod
from beampod.config._secrets import InstrumentSecrets, Secrets
from beampod.errors import ConfigError

AGENT_SERVICE = "agent"
#: The instrument's ``agent`` bus password, given to its agent process only.
AGENT_PASSWORD_ENV = "BEAMPOD_AGENT_PASSWORD"
#: A pool's members' ``agent`` bus passwords (a JSON object, instrument -> password),
#: given to that pool's process only (``pod.agent_pool_size``, ADR 0025).
AGENT_PASSWORDS_ENV = "BEAMPOD_AGENT_PASSWORDS"
#: Redis's password for the demo's Redis replies: a pod of one instrument only (the
#: ``default`` Redis user reaches every key, so no facility instrument gets it).
AGENT_REDIS_PASSWORD_ENV = "BEAMPOD_AGENT_REDIS_PASSWORD"


def agent_service_name(config: PodConfig, instrument: str) -> str:
    """The agent service that serves ``instrument``: ``agent`` in a pod of one instrument
    (as always), else ``agent-<instrument>`` or, pooled, ``agent-pool-<k>``."""
    if len(config.instruments) == 1:
        return AGENT_SERVICE
    for service, members in agent_services(config).items():
        if instrument in members:
            return service
    return f"{AGENT_SERVICE}-{instrument}"  # its agent is disabled: the name it would have


def agent_services(config: PodConfig) -> dict[str, list[str]]:
    """Agent service name -> the instruments that one process serves, per
    ``pod.agent_pool_size`` (like the writers' pools, ADR 0020): ``agent`` (a pod of one
    instrument), ``agent-<instrument>`` (a process each, or a pool of one),
    ``agent-pool-<k>`` (several; only instruments of one host and environment cycle
    share a process). Only instruments whose agent is enabled."""
    served = agent_instruments(config)
    if len(config.instruments) == 1:
        return {AGENT_SERVICE: served} if served else {}
    return config.pooled(AGENT_SERVICE, served, config.pod.agent_pool_size)


def agent_instruments(config: PodConfig) -> list[str]:
    """The instruments whose agent is enabled, in the config's order."""
    return [n for n in config.instruments if instrument_agent(config, n) is not None]


def agent_env(pod: LoadedPod, instrument: str | Sequence[str]) -> dict[str, str]:
    """The environment that carries the agent process's credentials (its only ones): one
    instrument's ``agent`` password, or for a pool each member's, by instrument."""
    members = [instrument] if isinstance(instrument, str) else list(instrument)
    if len(members) > 1:
        own = {m: pod.secrets.for_instrument(m).agent_password.get_secret_value() for m in members}
        return {AGENT_PASSWORDS_ENV: json.dumps(own)}
    env = {
        AGENT_PASSWORD_ENV: pod.secrets.for_instrument(members[0]).agent_password.get_secret_value()
    }
    if len(pod.config.instruments) == 1:
        env[AGENT_REDIS_PASSWORD_ENV] = pod.secrets.redis_password.get_secret_value()
    return env


def _passwords(instruments: Sequence[str], env: Mapping[str, str]) -> dict[str, str]:
    if len(instruments) == 1 and env.get(AGENT_PASSWORD_ENV):
        return {instruments[0]: env[AGENT_PASSWORD_ENV]}
    try:
        given = json.loads(env.get(AGENT_PASSWORDS_ENV) or "{}")
    except ValueError:
        raise ConfigError("environment", [f"{AGENT_PASSWORDS_ENV} is not a JSON object"]) from None
    if not isinstance(given, dict):
        raise ConfigError("environment", [f"{AGENT_PASSWORDS_ENV} is not a JSON object"])
    missing = [i for i in instruments if not isinstance(given.get(i), str) or not given[i]]
    if missing:
        var = AGENT_PASSWORD_ENV if len(instruments) == 1 else AGENT_PASSWORDS_ENV
        raise ConfigError("environment", [f"{var} has no agent password for {i}" for i in missing])
    return {i: given[i] for i in instruments}


def _blank(model: type[Secrets] | type[InstrumentSecrets]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, f in model.model_fields.items():
        if f.annotation is SecretStr:
            out[name] = SecretStr("")
        elif f.annotation is str:
            out[name] = ""
        else:
            out[name] = None
    return out


def load_agent_pod(
    home: PodHome, instrument: str | Sequence[str], env: Mapping[str, str]
) -> LoadedPod:
    """The pod as the agent process of ``instrument`` (or of a pool's instruments) sees
    it: the config, and secrets that are empty except what ``env`` gives it
    (:func:`agent_env`)."""
    config = load_config(home.config_file)
    members = [instrument] if isinstance(instrument, str) else list(instrument)
    for name in members:
        config.instrument(name)  # an unknown name: one-line usage error
    own = {
        name: InstrumentSecrets.model_construct(
            **{**_blank(InstrumentSecrets), "agent_password": SecretStr(password)}
        )
        for name, password in _passwords(members, env).items()
    }
    top = {**_blank(Secrets), "instruments": own}
    top["redis_password"] = SecretStr(env.get(AGENT_REDIS_PASSWORD_ENV, ""))
    return LoadedPod(home=home, config=config, secrets=Secrets.model_construct(**top))
