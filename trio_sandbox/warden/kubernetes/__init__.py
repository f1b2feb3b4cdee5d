"""The kubernetes back end: one Pod per sandbox, reached only through the API server (kr8s is
imported here and nowhere else, and only once this back end runs).

``_options`` (its ``--k8s-*`` options; standard library only), ``_pod`` (the manifests),
``_api`` (the API client), ``_status`` (reading a Pod's state), ``_logs`` (following its log),
``_portforward`` (a published connection as a port-forward WebSocket), ``_in_cluster`` (one
sandbox's whole run in the cluster), ``_sweep`` (leftovers, and the ``sweep`` subcommand).
"""

from ._entry import KUBERNETES_BACKEND as KUBERNETES_BACKEND
