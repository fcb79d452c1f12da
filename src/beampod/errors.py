"""Every exception beampod raises on purpose, in one place.

The CLI translates these into one readable line and an exit code; anything else
that escapes is a bug and is shown with its traceback.
"""

from __future__ import annotations


class BeampodError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(BeampodError):
    """The user asked for something malformed (bad argument, unknown name)."""

    exit_code = 2


class ConfigError(BeampodError):
    """The configuration file is missing, unreadable or invalid.

    ``problems`` lists every problem found, one line each, so a user can fix them
    all in one go instead of one per run.
    """

    exit_code = 2

    def __init__(self, path: object, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration in {path}:\n{lines}")


class PodNotRunningError(BeampodError):
    """A command needs a running pod and there is none."""


class PodAlreadyRunningError(BeampodError):
    """``beampod up`` found a supervisor already running for this home."""

    def __init__(self, root: object) -> None:
        self.root = root
        super().__init__(f"a pod is already running from {root} (see `beampod status`)")


class PortInUseError(BeampodError):
    """A service's port is taken by something else."""

    def __init__(self, service: str, host: str, port: int) -> None:
        self.service, self.host, self.port = service, host, port
        super().__init__(
            f"port {port} on {host} is already in use; service '{service}' needs it "
            f"(free it, or change the port in the config)"
        )


class ServiceStartError(BeampodError):
    """A service did not become ready; the message carries the tail of its log."""

    def __init__(self, service: str, reason: str, log_tail: str = "") -> None:
        self.service, self.reason, self.log_tail = service, reason, log_tail
        msg = f"service '{service}' failed to start: {reason}"
        if log_tail:
            msg += f"\n--- last lines of {service}.log ---\n{log_tail.rstrip()}"
        super().__init__(msg)


class BusError(BeampodError):
    """The document bus refused or failed an operation."""


class BusUnavailableError(BusError):
    """The bus cannot be reached, or JetStream is not answering, right now: the same
    operation may succeed later (a long-running service waits and retries)."""


class DeliveryGapError(BusUnavailableError):
    """A durable consumer's messages were delivered but never reached its reader (a
    cluster node or route lost them): re-open the consumer at its ack floor."""


class StoreError(BeampodError):
    """The data store (Tiled) refused or failed an operation."""


class PlanError(UsageError):
    """A plan expression or submission is invalid (unknown plan/device, bad args)."""


class CycleEnvError(BeampodError):
    """A cycle environment or overlay cannot be locked, built, checked or used."""

    exit_code = 2
