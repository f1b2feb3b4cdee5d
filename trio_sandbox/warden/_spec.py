"""The wrap request as values: volumes, ports, environment, back end choice."""

from __future__ import annotations

import contextlib
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..contract import (
    ENV_FD_MAX_BYTES,
    ENV_FD_OPTION,
    InjectRequest,
    NetworkMode,
    ResourceLimits,
    Volume,
)
from ._errors import WrapRequestError
from ._report import Reporter

if TYPE_CHECKING:
    from ..egress import EgressPolicy

# "auto" or a name of the back-end table (:mod:`._choice`).
BackendName = Literal["auto", "bwrap", "podman", "docker", "process", "kubernetes"]

WARDEN_ERROR_STATUS = 125  # like docker/podman: the warden itself failed


@dataclass(frozen=True, slots=True)
class PortSpec:
    """One `-p HOST_IP:HOST_PORT:CONTAINER_PORT`."""

    host_ip: str
    host_port: int
    container_port: int


def _default_limits() -> ResourceLimits:
    from ._limits import default_limits

    return default_limits()


@dataclass(frozen=True, slots=True)
class WrapSpec:
    """Everything `wrap` was asked to do."""

    image: str
    command: tuple[str, ...]
    # Bind sources are absolute here (Volume.resolved).
    volumes: tuple[Volume, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[PortSpec, ...] = ()
    workdir: str | None = None
    backend: BackendName = "auto"
    network: NetworkMode = NetworkMode.NONE
    # The egress policy's entries (network "allow" only), as given: --allow-domain/--deny-domain.
    allow_domains: tuple[str, ...] = ()
    deny_domains: tuple[str, ...] = ()
    # Those entries parsed, once, when the command line is read (None: not network "allow").
    egress: EgressPolicy | None = None
    # The uid and gid the command runs as; None: the workspace owner's (see the back ends).
    user: tuple[int, int] | None = None
    limits: ResourceLimits = field(default_factory=lambda: _default_limits())
    # The chosen back end's own settings (from its own options), set by its ``configure``.
    backend_options: object = None
    # Where the host reads the warden's reports (``--report-fd``), out of the sandbox's reach.
    report: Reporter = field(default_factory=Reporter)
    # inject_secrets (``--inject-secret NAME=HOST[,HOST...]``): names and hosts only. The values
    # wait in the descriptor ``inject_fd`` (``--inject-fd``), which the back end reads once its
    # namespace helper is started (:mod:`._inject`); the helper never holds a copy.
    inject: tuple[InjectRequest, ...] = ()
    inject_fd: int | None = None

    @property
    def reaches_into_netns(self) -> bool:
        """Whether the warden makes sockets in the sandbox's own network namespace (a sandbox on
        this host): to publish a port of a sandbox without network, or to listen there for its
        egress proxy."""
        return self.network != "host" and (bool(self.ports) or self.network == "allow")

    @property
    def image_is_root_fs(self) -> bool:
        """`host` or a directory: something bubblewrap (not a container engine) can run."""
        return self.image == "host" or ("/" in self.image and Path(self.image).is_dir())


def parse_user(text: str) -> tuple[int, int]:
    """``UID`` or ``UID:GID`` (numbers: names mean nothing inside an image)."""
    uid_text, sep, gid_text = text.partition(":")
    try:
        uid = int(uid_text)
        gid = int(gid_text) if sep else uid
    except ValueError:
        raise WrapRequestError(f"--user {text!r}: expected UID or UID:GID (numbers)") from None
    if not (0 <= uid < 2**32 - 1 and 0 <= gid < 2**32 - 1):
        raise WrapRequestError(f"--user {text!r}: ids must be between 0 and 4294967294")
    return uid, gid


def parse_env(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise WrapRequestError(f"--env {text!r}: expected K=V")
    return name, value


def descriptor_number(text: str, option: str) -> int:
    """The descriptor an option such as ``--env-fd`` names (above 2: not a standard stream)."""
    if not text.isdigit() or int(text) <= 2:
        raise WrapRequestError(f"{option} {text!r}: expected a descriptor number above 2")
    return int(text)


def read_descriptor(fd: int, option: str, max_bytes: int) -> bytes:
    """Everything ``fd`` holds, read to its end, and the descriptor closed: what it holds is
    secret, and no child may inherit it. The errors never quote what was read."""
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := os.read(fd, 65536):
            size += len(chunk)
            if size > max_bytes:
                raise WrapRequestError(f"{option} {fd}: more than {max_bytes} bytes")
            chunks.append(chunk)
    except OSError as error:
        raise WrapRequestError(f"{option} {fd}: {error.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return b"".join(chunks)


def read_env_fd(text: str) -> tuple[tuple[str, str], ...]:
    """The variables of ``--env-fd N``: ``K=V`` records ended by NUL bytes, read to the end of
    the descriptor, which is closed (it holds secrets: no child may inherit it)."""
    fd = descriptor_number(text, ENV_FD_OPTION)
    data = read_descriptor(fd, ENV_FD_OPTION, ENV_FD_MAX_BYTES)
    if data and not data.endswith(b"\0"):
        raise WrapRequestError(f"--env-fd {fd}: the last record is not ended by a NUL byte")
    variables = []
    for record in data.split(b"\0")[:-1]:
        try:
            name, sep, value = record.decode().partition("=")
        except UnicodeDecodeError:
            raise WrapRequestError(f"--env-fd {fd}: a record is not UTF-8") from None
        if not sep or not name:
            raise WrapRequestError(f"--env-fd {fd}: a record is not K=V")
        variables.append((name, value))
    return tuple(variables)


def parse_port(text: str) -> PortSpec:
    fields = text.rsplit(":", 2)
    if len(fields) == 2:
        fields.insert(0, "127.0.0.1")
    if len(fields) != 3:
        raise WrapRequestError(f"-p {text!r}: expected 127.0.0.1:HOSTPORT:CONTAINERPORT")
    host_ip = fields[0].strip("[]")
    try:
        loopback = ipaddress.ip_address(host_ip).is_loopback
        host_port, container_port = int(fields[1]), int(fields[2])
    except ValueError as exc:
        raise WrapRequestError(f"-p {text!r}: {exc}") from None
    if not loopback:
        raise WrapRequestError(f"-p {text!r}: only loopback addresses may be published")
    if not (0 < host_port < 65536 and 0 < container_port < 65536):
        raise WrapRequestError(f"-p {text!r}: ports must be 1..65535")
    return PortSpec(host_ip, host_port, container_port)
