"""``beampod new facility DIR --instruments N``: a git-ready facility repository.

One ``config.yaml`` (the pod config model, grown: hosts, central services,
``instrument_defaults`` and one short entry per instrument), a facility package
(``<prefix>_facility``: shared devices, plans, callbacks, session setup), the one
instrument package every instrument uses (``<prefix>_instruments``), their tests, a
README and a ``.gitignore`` that keeps secrets and pod data out of the repository.
docs/facility.md describes the result; docs/adr/0007-facility-repository.md why.
"""

from __future__ import annotations

import contextlib
import datetime
import keyword
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from beampod.config import POD_UMASK, parse_config
from beampod.errors import UsageError
from beampod.instrument import _facility_templates as t

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,15}$")
MAX_INSTRUMENTS = 999


@dataclass(frozen=True)
class FacilityScaffold:
    root: Path
    instruments: tuple[str, ...]
    facility_package: str
    instrument_package: str
    git: str  # what happened about git, one line for the user


def instrument_names(prefix: str, count: int) -> tuple[str, ...]:
    """``bl01`` … ``blNN``: two digits, more when ``count`` needs them."""
    width = max(2, len(str(count)))
    return tuple(f"{prefix}{i:0{width}d}" for i in range(1, count + 1))


def scaffold_facility(dest: Path, instruments: int, prefix: str = "bl") -> FacilityScaffold:
    """Write the facility repository into ``dest`` (absent or empty) and ``git init`` it."""
    _check(prefix, instruments)
    root = Path(dest).expanduser().resolve()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise UsageError(f"{root} already exists and is not an empty directory; choose another")
    names = instrument_names(prefix, instruments)
    cycle = f"{datetime.date.today().year}-1"
    config = t.config_yaml(prefix, names, cycle)
    _self_check(config)
    fac, ins = f"{prefix}_facility", f"{prefix}_instruments"
    files = {
        root / "config.yaml": config,
        root / ".gitignore": t.GITIGNORE,
        root / "README.md": t.readme(prefix, names),
        root / "pyproject.toml": t.pyproject(prefix),
        root / fac / "__init__.py": t.FACILITY_INIT.format(prefix=prefix),
        root / ins / "__init__.py": t.INSTRUMENTS_INIT.format(prefix=prefix),
        root / "tests" / "test_facility.py": t.TEST.format(
            prefix=prefix, first=names[0], cycle=cycle
        ),
    }
    # The repository is the facility's pod home, the owner's alone like every pod home
    # (docs/running.md, "Files and modes"): born so, `init` and `up` have nothing to fix.
    with _umask(POD_UMASK):
        try:
            root.mkdir(parents=True, exist_ok=True)
            root.chmod(0o700)  # an empty directory the user made beforehand
            for path, text in files.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        except OSError as exc:
            raise UsageError(f"cannot write the facility repository into {root}: {exc}") from exc
        git = _git_init(root)
    return FacilityScaffold(root, names, fac, ins, git)


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _check(prefix: str, instruments: int) -> None:
    if not _PREFIX_RE.match(prefix) or keyword.iskeyword(prefix):
        raise UsageError(
            f"--prefix {prefix!r} must be 1-16 lower-case letters and digits, starting with "
            "a letter (it starts every instrument name, e.g. bl01)"
        )
    if not 1 <= instruments <= MAX_INSTRUMENTS:
        raise UsageError(
            f"--instruments must be between 1 and {MAX_INSTRUMENTS} (got {instruments})"
        )


def _self_check(config: str) -> None:
    """The generated config must pass the same checks as the user's will."""
    from beampod.config import read_yaml

    data, duplicates = read_yaml(config)
    if duplicates:
        raise RuntimeError(f"the generated config.yaml has duplicate keys: {duplicates}")
    parse_config(data, "the generated config.yaml")


def _git_init(root: Path) -> str:
    git = shutil.which("git")
    if git is None:
        return "git is not installed: run `git init` in the repository yourself"
    proc = subprocess.run(
        [git, "init", "-q", str(root)], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        return f"`git init` failed ({proc.stderr.strip() or proc.returncode}): run it yourself"
    return "initialised an empty git repository (nothing committed yet)"
