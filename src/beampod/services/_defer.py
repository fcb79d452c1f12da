"""What the supervisor's process does not import until used (ADR 0013, 0031)."""

#: nats-py imports aiohttp at module level for websocket (``ws://``) servers only; the
#: supervisor probes the bus over ``nats://``. Imported, aiohttp's connector made two
#: TLS contexts (loading the system's CA bundle twice): 0.3-0.7 CPU-s of the
#: supervisor's event loop, spent while Tiled imports. Deferred, it loads if ever used.
SUPERVISOR_DEFERRED_IMPORTS = ("aiohttp",)
