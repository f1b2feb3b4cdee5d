"""The root of every error a user of trio_sandbox can see, and the contract's own errors.

It lives at the bottom of the house, beside the contract, because every layer raises errors a
user meets (a bad limit, an MCP error, a sandbox that failed), and each layer may import only
what is below it. Each layer keeps its own errors in one leaf module, deriving from this.
"""

from __future__ import annotations


class SandboxError(Exception):
    """Base of every error trio_sandbox raises for its users to catch."""


class ContractValueError(SandboxError, ValueError):
    """A value that the contract's grammar refuses: ``where`` (an option such as ``--memory``
    or a setting such as ``memory``) was given ``text``, and ``reason`` says what is expected.

    A ValueError too: callers that validate settings catch that."""

    def __init__(self, where: str, text: object, reason: str) -> None:
        super().__init__(f"{where} {text!r}: {reason}")
        self.where = where
        self.text = text
        self.reason = reason

    def __reduce__(self) -> tuple[type[ContractValueError], tuple[str, object, str]]:
        return (type(self), (self.where, self.text, self.reason))


class LimitError(ContractValueError):
    """A resource limit (a size, a number of processes or CPUs) the grammar refuses."""


class VolumeError(ContractValueError):
    """A volume (``HOST:CONTAINER[:ro]``, ``NAME:CONTAINER``) the grammar refuses."""


class NetworkModeError(ContractValueError):
    """A network mode other than none, allow and host."""


class InjectRequestError(ContractValueError):
    """An ``inject_secrets`` entry (``NAME=HOST[,HOST...]``) the grammar refuses."""


class InjectionDataError(ContractValueError):
    """The injection descriptor's contents the contract refuses: ``text`` is the key that is
    wrong (``secrets.NAME.value``; empty for the whole document), never the value it holds."""

    def __str__(self) -> str:
        key = f" {self.text}" if self.text else ""
        return f"{self.where}{key}: {self.reason}"
