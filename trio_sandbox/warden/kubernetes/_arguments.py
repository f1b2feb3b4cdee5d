"""The kubernetes back end's ``--k8s-*`` options on the warden's command line, apart from the
values they become (:mod:`._options`): every warden builds its parser with them, and only a
kubernetes warden needs the rest, so this module is all the others import of this room."""

from __future__ import annotations

import argparse
from typing import Literal

KubernetesApi = Literal["pods", "agent-sandbox"]
KUBERNETES_APIS: tuple[KubernetesApi, ...] = ("pods", "agent-sandbox")
Tunnel = Literal["auto", "portforward"]


def add_kubernetes_options(parser: argparse.ArgumentParser) -> None:
    """The ``--k8s-*`` options (all optional; their defaults are filled in later)."""
    group = parser.add_argument_group("kubernetes back end (also TRIO_SANDBOX_K8S_* variables)")
    group.add_argument("--k8s-api", choices=KUBERNETES_APIS, help="Pods (default) or agent-sandbox")
    group.add_argument(
        "--k8s-context", metavar="NAME", help="kubeconfig context (default: current)"
    )
    group.add_argument("--k8s-namespace", metavar="NAME", help="default: the context's")
    group.add_argument(
        "--k8s-kubeconfig", metavar="FILE", help="default: $KUBECONFIG, ~/.kube/config"
    )
    group.add_argument("--k8s-runtime-class", metavar="NAME", help="e.g. gvisor, kata")
    group.add_argument("--k8s-node-selector", action="append", default=[], metavar="KEY=VALUE")
    group.add_argument(
        "--k8s-toleration", action="append", default=[], metavar="KEY[=VALUE][:EFFECT]"
    )
    group.add_argument("--k8s-deadline", metavar="SECONDS", help="activeDeadlineSeconds (24 h)")
    group.add_argument("--k8s-start-timeout", metavar="SECONDS", help="until Running (300)")
    group.add_argument("--k8s-api-grace", metavar="SECONDS", help="API server outage allowed (30)")
    group.add_argument("--k8s-python", metavar="PATH", help="the image's interpreter (python3)")
    group.add_argument(
        "--k8s-tunnel",
        choices=("auto", "portforward"),
        help="auto: port-forward, refused under gVisor; portforward: also under gVisor",
    )
    group.add_argument(
        "--k8s-warm-pool",
        metavar="N|NAME",
        help="agent-sandbox: N: keep N ready Pods of this sandbox's template (a SandboxWarmPool"
        " the warden ensures); NAME: your own SandboxWarmPool (with --k8s-sandbox-template)",
    )
    group.add_argument("--k8s-sandbox-template", metavar="NAME", help="its SandboxTemplate")
    group.add_argument("--k8s-no-sweep", action="store_true", help="no sweep of leftovers at start")
