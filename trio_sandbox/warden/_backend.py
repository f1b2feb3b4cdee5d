"""The back-end interface: what each way of running a sandbox (bubblewrap, a container engine,
the unisolated process, a Kubernetes Pod) gives the warden's core.

A back end is a :class:`Backend` value of callables, named in one table (:mod:`._choice`). The
core calls ``launch`` before it imports Trio (no thread of the warden's runs yet): a back end
starts there what must start early (bubblewrap itself, a namespace helper) with the standard
library only, and defers everything else to the :class:`Launched` value's ``run``, which the
core awaits under Trio. A back end may add its own ``wrap`` options and subcommands; the core
knows none of them.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._netns import NetnsHelper
    from ._spec import WrapSpec
    from ._stopping import StopGrace

# ``add_subparsers()``'s value, to which a back end adds its own subcommands.
Subcommands = argparse._SubParsersAction


@dataclass(frozen=True, slots=True)
class Launched:
    """A sandbox as its back end started it before Trio (possibly nothing yet)."""

    # Runs the sandbox under Trio until its command exits: the command's status (125: the
    # warden failed); `StopGrace` says how long a stop may take (shortened by the lifeline).
    run: Callable[[WrapSpec, StopGrace], Awaitable[int]]
    # Makes sockets in the sandbox's network namespace; the core stops the sandbox if it dies.
    netns_helper: NetnsHelper | None = None


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def _no_subcommands(commands: Subcommands[argparse.ArgumentParser]) -> None:
    pass


def _unconfigured(spec: WrapSpec, args: argparse.Namespace, volumes: tuple[str, ...]) -> WrapSpec:
    return spec


@dataclass(frozen=True, slots=True)
class Backend:
    """One way of running a sandbox. Every callable but ``Launched.run`` runs before Trio is
    imported: standard library only (a back end imports its heavy modules inside ``run``)."""

    # Starts the sandbox, or what of it must start before Trio.
    launch: Callable[[WrapSpec], Launched]
    # False: NOTHING is isolated (the unisolated process): no --network allow, no host warning.
    isolates: bool = True
    # Whether the warden's egress proxy serves ``--network allow`` (a Pod's is its NetworkPolicy).
    proxies_egress: bool = True
    # ``--volume`` prefixes only this back end understands, and what they name ("pvc:": "a
    # PersistentVolumeClaim"); the core leaves such volumes to ``configure``.
    volume_kinds: Mapping[str, str] = field(default_factory=dict)
    # Adds this back end's own options to ``wrap``.
    add_arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments
    # Adds this back end's own subcommands; each sets ``run_command(args) -> status`` as default.
    add_subcommands: Callable[[Subcommands[argparse.ArgumentParser]], None] = _no_subcommands
    # When chosen by name: the spec with this back end's own settings (``backend_options``),
    # from its options and its own volumes (the ``volume_kinds`` texts).
    configure: Callable[[WrapSpec, argparse.Namespace, tuple[str, ...]], WrapSpec] = _unconfigured
