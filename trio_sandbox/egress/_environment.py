"""The environment that points a sandboxed command's tools at the egress proxy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

LOOPBACK_NAMES: Final = ("localhost", "127.0.0.1", "::1")


def proxy_environment(
    port: int,
    *,
    host: str = "127.0.0.1",
    socks: bool = False,
    no_proxy: Sequence[str] = LOOPBACK_NAMES,
) -> dict[str, str]:
    """Variables for a command in the sandbox whose proxy listens on ``host:port`` there.

    Both cases of the conventional names are set: libcurl (curl, git) reads only the lowercase
    ``http_proxy``, most others read either. ``NO_PROXY`` keeps the sandbox's own loopback direct
    (the proxy would resolve ``localhost`` on the host, and refuse it). ``NODE_USE_ENV_PROXY=1``
    makes Node 22.21+/24.5+ honour the variables in ``fetch`` and ``http``; the ``npm_config_*``
    and ``YARN_*`` names are npm's, Yarn 1's (which reads ``npm_config_*`` too) and Yarn 2+'s own.
    ``ALL_PROXY=socks5h://...`` is added only with ``socks=True``: some clients (httpx without
    its SOCKS extra) refuse to start at all when it is set.
    """
    authority = f"[{host}]" if ":" in host else host
    http_url = f"http://{authority}:{port}"
    bypass = ",".join(no_proxy)
    environment = {
        "HTTP_PROXY": http_url,
        "HTTPS_PROXY": http_url,
        "http_proxy": http_url,
        "https_proxy": http_url,
        "NO_PROXY": bypass,
        "no_proxy": bypass,
        "NODE_USE_ENV_PROXY": "1",
        "npm_config_proxy": http_url,
        "npm_config_https_proxy": http_url,
        "YARN_HTTP_PROXY": http_url,
        "YARN_HTTPS_PROXY": http_url,
    }
    if socks:
        environment["ALL_PROXY"] = environment["all_proxy"] = f"socks5h://{authority}:{port}"
    return environment
