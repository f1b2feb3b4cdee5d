"""The sandbox's network modes: ``none``, ``allow`` and ``host``."""

from __future__ import annotations

import enum

from ._errors import NetworkModeError


class NetworkMode(enum.StrEnum):
    """``none``: the sandbox's own loopback only; ``allow``: that, plus the destinations of the
    egress policy, through the warden's egress proxy; ``host``: the host's network, with no
    isolation of it at all."""

    NONE = "none"
    ALLOW = "allow"
    HOST = "host"

    @classmethod
    def parse(cls, text: str, where: str = "--network") -> NetworkMode:
        """The mode ``text`` names (exactly); NetworkModeError naming ``where`` otherwise."""
        try:
            return cls(text)
        except ValueError:
            choices = ", ".join(mode.value for mode in cls)
            raise NetworkModeError(where, text, f"expected one of {choices}") from None
