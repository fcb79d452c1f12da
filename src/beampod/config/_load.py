"""Read, validate and explain a pod configuration file."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from beampod.config._facility import (
    facility_problems,
    fold_default_problems,
    package_problems,
)
from beampod.config._model import PodConfig
from beampod.config._yaml import read_yaml
from beampod.errors import ConfigError


def format_validation_error(exc: ValidationError) -> list[str]:
    """One line per problem: the dotted key, what is wrong, and the value given."""
    problems = []
    for err in exc.errors():
        parts = [str(p) for p in err["loc"]]
        if len(parts) > 1 and parts[1] in _union_tags().get(parts[0], ()):
            del parts[1]  # pydantic puts the union member's tag in the path: hide it
        loc = ".".join(parts).replace(".[key]", " (name)") or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        ctx = err.get("ctx") or {}
        if err["type"] == "union_tag_invalid":
            problems.append(
                f"{loc}.{ctx.get('discriminator', '').strip(chr(39))}: must be one "
                f"of {ctx.get('expected_tags')} (got {ctx.get('tag')!r})"
            )
        elif err["type"] == "extra_forbidden":
            problems.append(f"{loc}: unknown key (typo?)")
        elif err["type"] == "missing":
            problems.append(f"{loc}: required key is missing")
        else:
            given = err.get("input")
            shown = json.dumps(given, default=str) if not isinstance(given, dict) else "{...}"
            if len(shown) > 60:
                shown = shown[:57] + "..."
            problems.append(f"{loc}: {msg} (got {shown})")
    return problems


def _union_tags() -> dict[str, set[str]]:
    """Tags of the config's discriminated unions (``bus: nats|zmq|kafka``, ``store``)."""
    tags: dict[str, set[str]] = {}
    for name, field in PodConfig.model_fields.items():
        members = typing.get_args(field.annotation)
        for member in members:
            if not (isinstance(member, type) and issubclass(member, BaseModel)):
                continue
            for sub in member.model_fields.values():
                if typing.get_origin(sub.annotation) is typing.Literal:
                    tags.setdefault(name, set()).update(map(str, typing.get_args(sub.annotation)))
    return tags


def parse_config(data: Any, source: object = "<config>") -> PodConfig:
    if not isinstance(data, dict):
        raise ConfigError(source, ["the file must hold a mapping of keys (it is empty or a list)"])
    try:
        config = PodConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, fold_default_problems(format_validation_error(exc))) from None
    problems = facility_problems(config)
    if problems:
        raise ConfigError(source, problems)
    return config


def load_config(path: Path, *, check_packages: bool = False) -> PodConfig:
    """Read, validate and cross-check ``path``; every problem in one :class:`ConfigError`.

    Duplicate keys in any mapping are problems. With ``check_packages`` an instrument
    package that cannot be found in this environment is one too (``beampod config check``).
    """
    if not path.exists():
        raise ConfigError(path, ["file not found: run `beampod init` first"])
    try:
        data, found = read_yaml(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(path, [f"{where}not valid YAML ({problem})"]) from None
    if check_packages:
        found += package_problems(data)
    try:
        config = parse_config(data, path)
    except ConfigError as exc:
        raise ConfigError(path, [*found, *exc.problems]) from None
    if found:
        raise ConfigError(path, found)
    return config


def json_schema() -> dict[str, Any]:
    schema = PodConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "beampod pod configuration"
    return schema
