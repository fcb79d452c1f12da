"""The web console's import policy (``python -m beampod.web``): what it never uses is not
loaded, and what it uses still works. In a fresh interpreter: the policy changes
``sys.modules`` for good."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
from beampod._lazy import defer_imports, is_loaded, skip_imports
from beampod.web.__main__ import DEFERRED_IMPORTS, UNUSED_OPTIONAL_IMPORTS
skip_imports(UNUSED_OPTIONAL_IMPORTS)
defer_imports(DEFERRED_IMPORTS)
import beampod.web._app, beampod.web._pages, beampod.web._streams
import httpx
assert "httpx" in sys.modules
print(sorted(m for m in ("rich", "pygments", "aiohttp") if is_loaded(m)))
# httpx works as a client without its command line (a mock transport: no server).
transport = httpx.MockTransport(lambda request: httpx.Response(200, text="ok"))
print(httpx.Client(transport=transport).get("http://console.invalid/").text)
"""


def test_the_console_loads_neither_httpx_command_line_nor_aiohttp() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120, check=True
    ).stdout.splitlines()
    assert out == ["[]", "ok"], out
