"""inject_secrets in the warden: the request on its command line, the values in a descriptor.

``--inject-secret NAME=HOST[,HOST...]`` (names and hosts: the policy needs them before the
launch) is checked as the command line is read: it needs ``--network allow`` and a back end with
the egress proxy (not kubernetes), and ``--inject-fd N``, which holds the values. That
descriptor is read (:func:`read_injection`) by the back end right after it starts its
namespace helper, which lives in the sandbox's namespaces and inherits no descriptor but its
channel; it is made close-on-exec at once, so that nothing started later inherits it.

The sandbox gets each NAME as its placeholder, never the value; the warden sets it itself, so
a caller's variable of that name is an error. Standard library only (before Trio).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..contract import (
    INJECT_FD_MAX_BYTES,
    INJECT_FD_OPTION,
    INJECT_SECRET_OPTION,
    TRUST_VARIABLES,
    ContractValueError,
    InjectionPayload,
    InjectRequest,
    decode_injection,
)
from ._errors import WrapRequestError
from ._spec import WrapSpec, descriptor_number, read_descriptor
from ._trust import TrustPlan

if TYPE_CHECKING:
    from ..egress import InjectedSecret
    from ._backend import Backend

_NEEDS_ALLOW = (
    "inject_secrets needs network = 'allow': the egress proxy replaces the placeholders"
    " (--network allow)"
)
_NO_PROXY_HERE = (
    "inject_secrets needs the egress proxy, which the {backend} back end does not have (a"
    " NetworkPolicy cannot terminate TLS); use bwrap or podman"
)


def take_inject_fd(text: str) -> int:
    """The descriptor of ``--inject-fd``, made close-on-exec at once (no child inherits it)."""
    fd = descriptor_number(text, INJECT_FD_OPTION)
    try:
        os.set_inheritable(fd, False)
    except OSError as error:
        raise WrapRequestError(f"{INJECT_FD_OPTION} {fd}: {error.strerror}") from None
    return fd


def parse_inject_requests(texts: Sequence[str]) -> tuple[InjectRequest, ...]:
    requests = tuple(InjectRequest.parse(text) for text in texts)
    seen: set[str] = set()
    for request in requests:
        if request.name in seen:
            raise WrapRequestError(
                f"{INJECT_SECRET_OPTION} {request.name}: given twice (list its hosts in one entry)"
            )
        seen.add(request.name)
    return requests


def check_inject_request(spec: WrapSpec, backend: Backend | None, backend_name: str) -> None:
    """The command line's checks of inject_secrets (the egress policy checks the hosts)."""
    if not spec.inject:
        if spec.inject_fd is not None:
            raise WrapRequestError(f"{INJECT_FD_OPTION} without {INJECT_SECRET_OPTION}")
        return
    if spec.network != "allow":
        raise WrapRequestError(_NEEDS_ALLOW)
    if backend is not None and not backend.proxies_egress:
        raise WrapRequestError(_NO_PROXY_HERE.format(backend=backend_name))
    if spec.inject_fd is None:
        raise WrapRequestError(
            f"{INJECT_SECRET_OPTION} needs {INJECT_FD_OPTION} N, the descriptor with the values"
        )
    names = {request.name for request in spec.inject}
    for name, _ in spec.env:
        if name in names:
            raise WrapRequestError(
                f"{INJECT_SECRET_OPTION} {name}: the sandbox's variable {name} is its placeholder;"
                " it cannot be given with --env too"
            )


@dataclass(frozen=True, eq=False, slots=True)
class InjectionMaterial:
    """What the descriptor held, checked against the command line: the CA and each secret's
    value (out of every repr) and placeholder, with the hosts from ``requests``."""

    requests: tuple[InjectRequest, ...]
    payload: InjectionPayload = field(repr=False)
    # The egress proxy's view of each secret (checked as it is made: lengths, shapes, hosts).
    secrets: tuple[InjectedSecret, ...] = field(repr=False)

    def scope_hosts(self) -> tuple[str, ...]:
        """Every host a secret is injected for, as written (the interception CA's scope)."""
        return tuple(dict.fromkeys(host for request in self.requests for host in request.hosts))

    @property
    def ca_certificate_pem(self) -> str:
        return self.payload.ca_certificate

    def placeholders(self) -> tuple[tuple[str, str], ...]:
        """(NAME, placeholder) for the sandbox's environment."""
        return tuple((secret.name, secret.placeholder) for secret in self.payload.secrets)


def read_injection(spec: WrapSpec) -> InjectionMaterial | None:
    """Read and close ``--inject-fd`` (None without inject_secrets); WrapRequestError naming
    the descriptor and key, or the names that differ from the command line's, never a value."""
    if spec.inject_fd is None:
        return None
    fd = spec.inject_fd
    where = f"{INJECT_FD_OPTION} {fd}"
    data = read_descriptor(fd, INJECT_FD_OPTION, INJECT_FD_MAX_BYTES)
    try:
        payload = decode_injection(data, where)
    except ContractValueError as error:
        raise WrapRequestError(str(error)) from None
    wanted = [request.name for request in spec.inject]
    held = list(payload.names())
    if sorted(held) != sorted(wanted):
        missing = sorted(set(wanted) - set(held))
        extra = sorted(set(held) - set(wanted))
        parts = ([f"no value for {', '.join(missing)}"] if missing else []) + (
            [f"values for {', '.join(extra)}, not asked for"] if extra else []
        )
        raise WrapRequestError(f"{where}: {'; '.join(parts)} ({INJECT_SECRET_OPTION})")
    # The proxy's package: imported already by the command line's check of --network allow.
    from ..egress import InjectedSecret, InjectionError

    hosts = {request.name: request.hosts for request in spec.inject}
    try:
        secrets = tuple(
            InjectedSecret(secret.name, secret.value, secret.placeholder, hosts[secret.name])
            for secret in payload.secrets
        )
    except InjectionError as error:
        raise WrapRequestError(f"{where}: {error}") from None
    return InjectionMaterial(spec.inject, payload, secrets)


def warn(spec: WrapSpec, message: str) -> None:
    """One warning on stderr, and on the report channel, which the host trusts."""
    print(f"trio-sandbox-warden: warning: {message}", file=sys.stderr, flush=True)
    spec.report.send("warning", message)


def injected_environment(
    spec: WrapSpec, material: InjectionMaterial, trust: TrustPlan
) -> tuple[tuple[str, str], ...]:
    """The sandbox's variables with inject_secrets: the spec's (proxy variables, then the
    caller's), each NAME as its placeholder, then the trust variables, which win: a caller's
    variable of one of their names is dropped, with one warning naming it."""
    overridden = sorted({name for name, _ in spec.env if name in TRUST_VARIABLES})
    if overridden:
        warn(
            spec,
            f"inject_secrets: {', '.join(overridden)} given by the caller is replaced by"
            f" {trust.path} (the system bundle plus the interception CA)",
        )
    kept = tuple((name, value) for name, value in spec.env if name not in TRUST_VARIABLES)
    return (*kept, *material.placeholders(), *trust.env)
