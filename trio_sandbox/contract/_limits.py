"""The sandbox's resource limits: what each one's text means, and the values they parse into.

A limit covers the whole sandbox (the tool server and every command). Each kind of limit
(:data:`LIMIT_KINDS`) has a name (the setting, the JSON key, the field below), the warden's
option, and its grammar, parsed once into a number and written back canonically:

- ``memory`` and ``tmp_size``: a size (``2G``, ``512M``: :mod:`._sizes`), in bytes;
- ``pids``: a whole number of processes and threads, 8 to 4194304;
- ``cpus``: a number of CPUs, 0.01 to 4096, fractions allowed (``1.5``, ``.5``);
- any of them ``unlimited`` (or ``none``): no bound, asked for explicitly.

:class:`LimitRequest` is what the host asks for (None: the warden's default), and
:class:`ResourceLimits` the limits the warden decided (None: no bound). :class:`LimitsInForce`
is what the warden tells the tool server of them (the contract's LIMITS_VARIABLE).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from ._errors import LimitError
from ._sizes import format_size, parse_size

V = TypeVar("V", int, float)


class Unlimited(enum.Enum):
    """A limit lifted on purpose (``unlimited``), unlike one left to the warden's default."""

    UNLIMITED = "unlimited"

    def __repr__(self) -> str:
        return "UNLIMITED"


UNLIMITED: Final = Unlimited.UNLIMITED
_UNLIMITED_WORDS = ("unlimited", "none")

_NUMBER = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*", re.ASCII)
_WHOLE = re.compile(r"\s*0*(\d{1,12})\s*", re.ASCII)
MIN_PIDS: Final = 8
MAX_PIDS: Final = 4_194_304
MIN_CPUS: Final = 0.01
MAX_CPUS: Final = 4096.0


def _parse_pids(text: str, where: str) -> int:
    match = _WHOLE.fullmatch(text)
    if match is None or not MIN_PIDS <= int(match[1]) <= MAX_PIDS:
        raise LimitError(where, text, f"expected a whole number from {MIN_PIDS} to {MAX_PIDS}")
    return int(match[1])


def _parse_cpus(text: str, where: str) -> float:
    match = _NUMBER.fullmatch(text)
    if match is None:
        raise LimitError(where, text, "expected a number of CPUs such as 1.5")
    cpus = float(match[1])
    if not MIN_CPUS <= cpus <= MAX_CPUS:
        raise LimitError(where, text, f"must be between {MIN_CPUS:g} and {MAX_CPUS:g}")
    return cpus


def _format_cpus(cpus: float) -> str:
    cpus = float(cpus)
    # repr: the shortest text that reads back as the same float (never an exponent here).
    return str(int(cpus)) if cpus.is_integer() else repr(cpus)


@dataclass(frozen=True)
class LimitKind(Generic[V]):
    """One kind of limit: its name, the warden's option, and its grammar."""

    # The setting, the JSON key and the field of the values below (the option is made of it).
    name: str
    parse_value: Callable[[str, str], V]
    format_value: Callable[[V], str]
    # The types a setting may hold besides text (a number in a TOML file, or in Python).
    number_types: tuple[type, ...]
    # What a setting may hold, for messages.
    expected: str
    # For the command lines' help: the value's placeholder, and what the limit bounds.
    metavar: str
    help: str

    @property
    def option(self) -> str:
        """The warden's option: ``--memory``, ``--tmp-size``."""
        return "--" + self.name.replace("_", "-")

    def parse(self, text: str, where: str | None = None) -> V | Unlimited:
        """The value of ``text``; LimitError naming ``where`` (by default the option)."""
        if text.strip().lower() in _UNLIMITED_WORDS:
            return UNLIMITED
        return self.parse_value(text, self.option if where is None else where)

    def format(self, value: V | Unlimited) -> str:
        """The canonical text of ``value``, which :meth:`parse` reads back as the same."""
        if isinstance(value, Unlimited):
            return value.value
        return self.format_value(value)

    def convert(self, value: object, where: str | None = None) -> V | Unlimited | None:
        """A setting as given (text, a number, UNLIMITED or None) as a value; LimitError
        naming ``where`` (by default the setting's name) if it is not one."""
        where = self.name if where is None else where
        if value is None or isinstance(value, Unlimited):
            return value
        if isinstance(value, self.number_types) and not isinstance(value, bool):
            # A number is checked as its text: the same bounds, the same messages.
            return self.parse(str(value), where)
        if isinstance(value, str):
            return self.parse(value, where)
        raise LimitError(where, value, f"expected {self.expected}")


def _size_limit(name: str, example: str, help: str) -> LimitKind[int]:
    expected = f"a size such as {example!r}, or 'unlimited'"
    return LimitKind(name, parse_size, format_size, (int,), expected, "SIZE", help)


MEMORY: Final = _size_limit(
    "memory", "2G", "memory for the whole sandbox, e.g. 2G (default: 4G or half the RAM)"
)
TMP_SIZE: Final = _size_limit(
    "tmp_size", "1G", "size of the sandbox's /tmp (default 1G; it counts toward the memory)"
)
PIDS: Final = LimitKind[int](
    "pids",
    _parse_pids,
    str,
    (int,),
    "a number of processes, or 'unlimited'",
    "N",
    "processes and threads in the sandbox (default 1024)",
)
CPUS: Final = LimitKind[float](
    "cpus",
    _parse_cpus,
    _format_cpus,
    (int, float),
    "a number of CPUs such as 1.5, or 'unlimited'",
    "N",
    "CPUs the sandbox may use, e.g. 1.5 (default: half of them)",
)
# Every limit, in the order the warden's command line and its reports name them.
LIMIT_KINDS: Final[tuple[LimitKind[Any], ...]] = (MEMORY, PIDS, CPUS, TMP_SIZE)


@dataclass(frozen=True)
class ResourceLimits:
    """What the whole sandbox may use. None: no bound."""

    memory: int | None = None
    pids: int | None = None
    cpus: float | None = None
    tmp_size: int | None = None

    def as_dict(self) -> dict[str, int | float | None]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LimitRequest:
    """The limits the host asks for: a value, UNLIMITED, or None for the warden's default."""

    memory: int | Unlimited | None = None
    pids: int | Unlimited | None = None
    cpus: float | Unlimited | None = None
    tmp_size: int | Unlimited | None = None

    @classmethod
    def parse(cls, texts: Mapping[str, str | None], *, by_option: bool = True) -> LimitRequest:
        """The request ``texts`` (name -> text or None) make; errors name the option
        (``--memory``), or with ``by_option=False`` the setting (``memory``)."""
        values = {
            kind.name: kind.convert(texts.get(kind.name), kind.option if by_option else None)
            for kind in LIMIT_KINDS
        }
        return cls(**values)

    def to_argv(self) -> list[str]:
        """The warden's options for the limits asked for (``--memory 2G``, ...)."""
        argv: list[str] = []
        for kind in LIMIT_KINDS:
            value = getattr(self, kind.name)
            if value is not None:
                argv += [kind.option, kind.format(value)]
        return argv

    def resolve(self, defaults: ResourceLimits) -> ResourceLimits:
        """The limits in force: each asked for, else its default; UNLIMITED is no bound."""
        values: dict[str, Any] = {}
        for kind in LIMIT_KINDS:
            asked = getattr(self, kind.name)
            if asked is None:
                asked = getattr(defaults, kind.name)
            values[kind.name] = None if asked is UNLIMITED else asked
        return ResourceLimits(**values)


# What enforces the memory limit where it binds each command, not the sandbox as a whole: the
# tool server then sets it on each command (``ulimit -v``).
PER_COMMAND_RLIMIT: Final = "rlimit, per command"


@dataclass(frozen=True)
class LimitsInForce:
    """What the warden tells the tool server (the contract's LIMITS_VARIABLE, JSON): the
    limits, what enforces the memory limit, and where the memory cgroup's files are inside."""

    limits: ResourceLimits = ResourceLimits()
    memory_enforced_by: str | None = None
    memory_cgroup: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                **self.limits.as_dict(),
                "memory_enforced_by": self.memory_enforced_by,
                "memory_cgroup": self.memory_cgroup,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> LimitsInForce:
        """The value of the variable; what is missing or malformed is taken as not said (the
        tool server runs all the same, only its messages are vaguer)."""
        try:
            raw = json.loads(text)
        except ValueError:
            return cls()
        if not isinstance(raw, dict):
            return cls()

        def number(name: str, kind: type | tuple[type, ...]) -> Any:
            value = raw.get(name)
            ok = isinstance(value, kind) and not isinstance(value, bool)
            return value if ok else None

        def string(name: str) -> str | None:
            value = raw.get(name)
            return value if isinstance(value, str) else None

        limits = ResourceLimits(
            memory=number("memory", int),
            pids=number("pids", int),
            cpus=None if (cpus := number("cpus", (int, float))) is None else float(cpus),
            tmp_size=number("tmp_size", int),
        )
        return cls(limits, string("memory_enforced_by"), string("memory_cgroup"))
