"""inject_secrets on the host: the values read once, their placeholders, and per warden run the
interception CA and the sealed descriptor that carries them to the warden.

The values come from the host's environment when the sandbox starts and live in this process's
memory (:class:`InjectionPlan`, out of every repr) and, per warden run, in one sealed memfd
(``--inject-fd``) the warden reads once. They are never on a command line, in the sandbox's
variables (the env-fd), in the warden's own environment (:func:`without_injected`) or in an
error: errors name the variable and give lengths.

A plan is made once per :func:`~trio_sandbox.open_sandbox` and used by every warden run it starts
(respawns, spares, ephemeral sandboxes): the placeholder a sandbox sees stays the same for the
sandbox's whole life, so a command, a script or a config file in a volume written with it keeps
working after a respawn, and the redactor learns each value once. The CA is new per warden run.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

import attrs

from ..concurrency import memfd_holding
from ..contract import (
    INJECT_FD_OPTION,
    INJECT_SECRET_OPTION,
    INJECT_VALUE_MIN_LENGTH,
    InjectedValue,
    InjectionPayload,
    InjectRequest,
    encode_injection,
    is_injectable_value,
)
from ..egress import INJECT_SETTING, InjectedSecret, InjectionError
from ..redact import MIN_KNOWN_SECRET_LENGTH, PlaceholderError, shaped_placeholder
from ..tls import InterceptionAuthority
from ._config import SandboxConfig
from ._errors import SandboxStartError

# A value goes into header lines (the contract's rule) and is redacted wherever it shows (as
# long as a known secret must be).
MIN_VALUE_LENGTH = max(INJECT_VALUE_MIN_LENGTH, MIN_KNOWN_SECRET_LENGTH)


@attrs.frozen
class InjectionPlan:
    """What every warden run of one sandbox injects: the requests (names and hosts) and each
    secret's value and placeholder (out of the repr)."""

    requests: tuple[InjectRequest, ...]
    secrets: tuple[InjectedValue, ...] = attrs.field(repr=False)

    @classmethod
    def read(
        cls,
        config: SandboxConfig,
        host_env: Mapping[str, str],
        rng: random.Random | None = None,
    ) -> InjectionPlan | None:
        """The plan of ``config`` with the values of ``host_env`` (None without
        inject_secrets); SandboxStartError naming the variable (never its value) for one that
        is unset, too short, or not visible ASCII."""
        if not config.inject_secrets:
            return None
        rng = rng or random.SystemRandom()
        requests = tuple(
            InjectRequest(name, hosts) for name, hosts in config.inject_secrets.items()
        )
        values = {request.name: _value(request.name, host_env) for request in requests}
        taken = set(values.values())
        secrets: list[InjectedValue] = []
        for request in requests:
            name, value = request.name, values[request.name]
            try:
                placeholder = shaped_placeholder(value, rng, avoid=taken)
                # What the warden's egress proxy will check, checked here first.
                InjectedSecret(name, value, placeholder, request.hosts)
            except (PlaceholderError, InjectionError) as error:
                raise SandboxStartError(
                    INJECT_SETTING, f"{INJECT_SETTING} {name}: {error}"
                ) from None
            taken.add(placeholder)
            secrets.append(InjectedValue(name, placeholder, value))
        return cls(requests, tuple(secrets))

    def names(self) -> tuple[str, ...]:
        return tuple(request.name for request in self.requests)

    def placeholders(self) -> dict[str, str]:
        """NAME -> the placeholder the sandbox sees as NAME."""
        return {secret.name: secret.placeholder for secret in self.secrets}

    def scope_hosts(self) -> tuple[str, ...]:
        """Every host entry, as written (the interception CA is limited to exactly these)."""
        return tuple(dict.fromkeys(host for request in self.requests for host in request.hosts))

    def argv(self, inject_fd: int) -> list[str]:
        """The warden's options: ``--inject-fd N`` and one ``--inject-secret`` per name."""
        argv = [INJECT_FD_OPTION, str(inject_fd)]
        for request in self.requests:
            argv += [INJECT_SECRET_OPTION, request.format()]
        return argv

    def descriptor(self) -> int:
        """A sealed memfd for one warden run: a fresh interception CA (its key nowhere else)
        and every value and placeholder. The caller hands it to the warden and closes it."""
        try:
            authority = InterceptionAuthority.generate(self.scope_hosts())
        except Exception as exc:  # pragma: no cover - cryptography failing is not expected
            raise SandboxStartError(
                INJECT_SETTING, f"cannot make the interception CA: {type(exc).__name__}"
            ) from None
        certificate, key = authority.to_pem()
        data = encode_injection(InjectionPayload(certificate, key, self.secrets))
        return memfd_holding("trio-sandbox-inject", data)


def _value(name: str, host_env: Mapping[str, str]) -> str:
    value = host_env.get(name)
    if value is None:
        raise SandboxStartError(
            INJECT_SETTING,
            f"{INJECT_SETTING} {name} is not set on this host: there is no value to inject"
            " (set it in the environment that starts the sandbox)",
        )
    if len(value) < MIN_VALUE_LENGTH or not is_injectable_value(value):
        raise SandboxStartError(
            INJECT_SETTING,
            f"{INJECT_SETTING} {name} has a value of {len(value)} characters: it must be at least"
            f" {MIN_VALUE_LENGTH} visible ASCII characters, no spaces (it goes into header"
            " lines)",
        )
    return value


def without_injected(environment: Mapping[str, str], plan: InjectionPlan | None) -> dict[str, str]:
    """``environment`` without the injected variables: the warden, and podman after it, inherit
    what the host process has, and must not hold a value they are handed in a descriptor."""
    names = set(plan.names()) if plan is not None else set()
    return {key: value for key, value in environment.items() if key not in names}
