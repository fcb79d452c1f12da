"""One agent process per instrument, given only that instrument's credentials.

The supervisor starts ``agent`` (a pod of one instrument) or ``agent-<instrument>`` (a
pod of several) for each instrument whose agent is enabled. The process never reads the
pod's ``secrets.yaml``: it gets its instrument's ``agent`` bus password in its
environment (and, in a pod of one instrument, the Redis password for the bluesky-pods
demo's Redis replies), so a process of instrument A holds nothing of B's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from beampod.config._facility import instrument_agent
from beampod.config._home import PodHome
from beampod.config._load import load_config
from beampod.config._model import PodConfig
from beampod.config._pod import LoadedPod
from beampod.config._secrets import InstrumentSecrets, Secrets
from beampod.errors import ConfigError

AGENT_SERVICE = "agent"
#: The instrument's ``agent`` bus password, given to its agent process only.
AGENT_PASSWORD_ENV = "BEAMPOD_AGENT_PASSWORD"
#: Redis's password for the demo's Redis replies: a pod of one instrument only (the
#: ``default`` Redis user reaches every key, so no facility instrument gets it).
AGENT_REDIS_PASSWORD_ENV = "BEAMPOD_AGENT_REDIS_PASSWORD"


def agent_service_name(config: PodConfig, instrument: str) -> str:
    """``agent`` in a pod of one instrument (as always), else ``agent-<instrument>``."""
    return AGENT_SERVICE if len(config.instruments) == 1 else f"{AGENT_SERVICE}-{instrument}"


def agent_instruments(config: PodConfig) -> list[str]:
    """The instruments whose agent is enabled, in the config's order."""
    return [n for n in config.instruments if instrument_agent(config, n) is not None]


def agent_env(pod: LoadedPod, instrument: str) -> dict[str, str]:
    """The environment that carries the agent process's credentials (its only ones)."""
    env = {
        AGENT_PASSWORD_ENV: pod.secrets.for_instrument(instrument).agent_password.get_secret_value()
    }
    if len(pod.config.instruments) == 1:
        env[AGENT_REDIS_PASSWORD_ENV] = pod.secrets.redis_password.get_secret_value()
    return env


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


def load_agent_pod(home: PodHome, instrument: str, env: Mapping[str, str]) -> LoadedPod:
    """The pod as ``instrument``'s agent process sees it: the config, and secrets that
    are empty except what ``env`` gives it (:func:`agent_env`)."""
    config = load_config(home.config_file)
    config.instrument(instrument)  # an unknown name: one-line usage error
    password = env.get(AGENT_PASSWORD_ENV, "")
    if not password:
        raise ConfigError("environment", [f"{AGENT_PASSWORD_ENV} is not set"])
    own = InstrumentSecrets.model_construct(
        **{**_blank(InstrumentSecrets), "agent_password": SecretStr(password)}
    )
    top = {**_blank(Secrets), "instruments": {instrument: own}}
    top["redis_password"] = SecretStr(env.get(AGENT_REDIS_PASSWORD_ENV, ""))
    return LoadedPod(home=home, config=config, secrets=Secrets.model_construct(**top))
