"""Regenerate the checked-in JSON schema: ``python -m beampod.config.schema --write``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from beampod.config._load import json_schema

SCHEMA_PATH = Path(__file__).with_name("schema.json")


def render() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    if "--write" in sys.argv:
        SCHEMA_PATH.write_text(render())
        print(f"wrote {SCHEMA_PATH}")
    else:
        print(render(), end="")
