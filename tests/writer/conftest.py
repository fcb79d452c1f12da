"""The writer tests use the bus tests' real nats-server fixtures."""

from tests.bus.conftest import bus_pod, nats_proc, nats_server

__all__ = ["bus_pod", "nats_proc", "nats_server"]
