"""Tiny wheels written on the spot, so the tests never touch the network.

No build backend that works offline is installed (setuptools here needs ``wheel``),
so the wheel is written as PEP 427 says: a zip with the package, METADATA, WHEEL and
a RECORD of sha256 hashes. uv and pip install it like any other wheel.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()},{len(data)}"


_INIT = """\
import sys

VERSION = "{version}"


def where():
    print(VERSION, sys.prefix)
"""


def make_wheel(out: Path, name: str, version: str, init: str | None = None) -> Path:
    """``<name>-<version>-py3-none-any.whl``: ``<name>.VERSION`` is ``version`` and the
    console script ``<name>-where`` prints it and the interpreter's prefix."""
    out.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": init if init is not None else _INIT.format(version=version),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: beampod-tests\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}/top_level.txt": f"{name}\n",
        f"{dist}/entry_points.txt": f"[console_scripts]\n{name}-where = {name}:where\n",
    }
    record = [f"{path},{_record_hash(text.encode())}" for path, text in files.items()]
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    wheel = out / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            info = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
            zf.writestr(info, text)
    return wheel
