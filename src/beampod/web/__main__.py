"""``python -m beampod.web``: serve the console of the pod in ``$BEAMPOD_HOME``."""

from __future__ import annotations

import logging
import sys

#: nats-py imports aiohttp at module level for websocket (``ws://``) servers only; the
#: console's live view connects over ``nats://`` (as the agent, ADR 0013).
DEFERRED_IMPORTS = ("aiohttp",)
#: httpx's command line (rich, pygments, click: ~40 ms of the console's start), imported
#: by httpx only because it is installed; the console uses httpx as a client.
UNUSED_OPTIONAL_IMPORTS = ("httpx._main",)


def main() -> int:
    from beampod._gcstart import pause_gc, resume_gc
    from beampod._lazy import defer_imports, skip_imports
    from beampod._preload import preload

    pause_gc()  # until the app is built: the start is imports (beampod._gcstart)
    skip_imports(UNUSED_OPTIONAL_IMPORTS)
    defer_imports(DEFERRED_IMPORTS)
    # Started early (ADR 0014): import the console without slowing Tiled down.
    preload(["uvicorn", "beampod.web._app", "beampod.web._pages", "beampod.web._streams"])
    from beampod import _uvicorn
    from beampod.config import PodHome, instrument_bind, load_pod
    from beampod.instrument import apply_ca_client_env
    from beampod.web import build_app, build_console, web_url

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    pod = load_pod(PodHome.resolve(None))
    # Before ophyd/pyepics create their Channel Access context (the Devices page).
    apply_ca_client_env(pod.config)
    app = build_app(build_console(pod))
    resume_gc()
    logging.getLogger("beampod.web").warning("beampod web: serving %s", web_url(pod))
    # No access log: nothing about requests (cookies, forms) ends up in the pod's logs.
    _uvicorn.run(
        app,
        host=instrument_bind(pod.config),  # the default instrument's host
        port=pod.config.web.port,
        access_log=False,
        log_level="warning",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
