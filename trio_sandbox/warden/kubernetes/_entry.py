"""The kubernetes back end as the core sees it (its Backend value): its ``--k8s-*`` options, its
``pvc:`` volumes and its ``sweep`` subcommand."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING

from .._backend import Backend, Launched, Subcommands
from ._arguments import add_kubernetes_options

if TYPE_CHECKING:
    from .._spec import WrapSpec
    from .._stopping import StopGrace


async def _run(spec: WrapSpec, grace: StopGrace) -> int:
    # Imported here: its client library must not slow the other back ends down.
    from ._in_cluster import run_kubernetes

    return await run_kubernetes(spec, grace)


def _launch(spec: WrapSpec) -> Launched:
    return Launched(_run)


def _configure(spec: WrapSpec, args: argparse.Namespace, volumes: tuple[str, ...]) -> WrapSpec:
    from ._options import kubernetes_options, parse_claim_volume

    claims = tuple(parse_claim_volume(text) for text in volumes)
    return replace(spec, backend_options=kubernetes_options(args, claims))


def _sweep_command(args: argparse.Namespace) -> int:
    from ._sweep import sweep_main

    return sweep_main(args)


def _add_sweep(commands: Subcommands[argparse.ArgumentParser]) -> None:
    sweep = commands.add_parser(
        "sweep",
        help="delete leftover kubernetes Pods of sandboxes whose warden is gone (or overdue)",
    )
    add_kubernetes_options(sweep)
    sweep.add_argument("--dry-run", action="store_true", help="list them, delete nothing")
    sweep.set_defaults(run_command=_sweep_command)


KUBERNETES_BACKEND = Backend(
    launch=_launch,
    # A Pod's egress is its NetworkPolicy: no proxy, no proxy variables.
    proxies_egress=False,
    volume_kinds={"pvc:": "a PersistentVolumeClaim"},
    add_arguments=add_kubernetes_options,
    add_subcommands=_add_sweep,
    configure=_configure,
)
