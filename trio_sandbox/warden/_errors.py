"""Every error of the warden, core and back ends alike (standard library only: a leaf).

A user of ``open_sandbox`` meets :class:`WrapRequestError` (the host checks its settings with
the warden's grammar), so it derives from :class:`trio_sandbox.contract.SandboxError`. The others
happen inside the warden's own process: it prints them on its stderr and exits with status 125.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..contract import SandboxError


class WrapRequestError(SandboxError, ValueError):
    """The wrap request (the warden's command line) asks for something the warden cannot do."""


class KubernetesRequestError(WrapRequestError):
    """A ``--k8s-*`` option or a volume the kubernetes back end cannot use."""


class ReportFdError(ValueError):
    """``--report-fd N`` does not name a pipe or socket this process holds."""


class NamespaceError(OSError):
    """The helper could not enter the sandbox's namespaces or make a socket there."""


class IdmapUnavailableError(OSError):
    """The kernel or a file system cannot give the sandbox id-mapped trees."""


class SeccompUnsupportedError(RuntimeError):
    """No deny-list for this CPU architecture: refuse rather than run unfiltered."""


class KubernetesError(Exception):
    """The cluster refused or failed something; ``reason`` is the API's word for why."""

    def __init__(self, reason: str, message: str, events: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.events = tuple(events)

    def with_events(self, events: Sequence[str]) -> KubernetesError:
        return type(self)(self.reason, self.message, events)

    def __str__(self) -> str:
        text = f"{self.message} (reason: {self.reason})"
        if self.events:
            text += "\n  events of the Pod:\n" + "\n".join(f"    {line}" for line in self.events)
        return text


class ApiUnreachable(KubernetesError):
    """The API server could not be reached (or the connection broke)."""

    def __init__(self, reason: str, message: str, events: Sequence[str] = ()) -> None:
        super().__init__(reason, message, events)


class PortForwardError(Exception):
    """The API server or the kubelet refused or ended a forwarded connection."""
