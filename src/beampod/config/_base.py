"""What every part of the configuration tree shares: strict models, names, ports."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
_NAME_RE = re.compile(NAME_PATTERN)

Port = Annotated[int, Field(ge=1, le=65535)]
_IMPORT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            "must be lower case letters, digits and '_', starting with a letter, at most 32 "
            "characters (it becomes a bus subject, a Tiled container and a user name)"
        )
    return value


def _check_import_path(value: str) -> str:
    if not _IMPORT_RE.match(value):
        raise ValueError("must be a dotted Python import path such as 'beampod.demo'")
    return value


InstrumentName = Annotated[str, AfterValidator(_check_name)]
ImportPath = Annotated[str, AfterValidator(_check_import_path)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
