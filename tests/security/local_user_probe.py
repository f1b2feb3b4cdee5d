"""What another local user can get from a running sandbox: run as that user (uid 61000 in the
tests) with the system's python3, standard library only, printing one JSON report.

    python3 -c "$(cat local_user_probe.py)" '{"secret": ..., "bundle": DIR, "proxy_port": N,
                                              "cert": PEM, "key": PEM}'

(The source is passed with -c: the prober may not be able to read the test tree.)

For every process: whether its command line or (where readable) its environment holds the
secret. For each file of the client bundle: whether it can be read. For each port (the proxy's,
the sandbox's published one, found here from the warden's command line): what an HTTPS request
gets without a client certificate and with one from a CA of the prober's own.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import sys
import tempfile

REQUEST = (
    b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Accept: application/json, text/event-stream\r\nContent-Length: 2\r\n\r\n{}"
)


def processes_holding(secret: bytes) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {"cmdline": [], "environ": []}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():  # its own plan names the secret
            continue
        for part in found:
            try:
                with open(f"/proc/{name}/{part}", "rb") as file:
                    if secret in file.read():
                        found[part].append(int(name))
            except OSError:
                continue
    return found


def _parents() -> dict[int, int]:
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as file:
                    stat = file.read()
            except OSError:
                continue
            parents[int(name)] = int(stat[stat.rfind(b")") + 2 :].split()[1])
    return parents


def published_ports(owner: int) -> list[int]:
    """The ports published by the wardens below ``owner`` (their command lines name them)."""
    parents = _parents()
    below, pending = set(), [owner]
    while pending:
        parent = pending.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        below.update(children)
        pending += children
    ports = []
    for pid in below:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                argv = file.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        ports += [int(m[1]) for a in argv if (m := re.fullmatch(r"127\.0\.0\.1:(\d+):8080", a))]
    return sorted(set(ports))


def https_request(port: int, cert: str | None, key: str | None) -> str:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the prober trusts anything: only its own access counts
    if cert is not None:
        context.load_cert_chain(cert, key)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw) as tls,
        ):
            tls.sendall(REQUEST)
            answer = tls.recv(64)
    except (OSError, ssl.SSLError) as exc:
        return f"refused: {type(exc).__name__}"
    return f"served: {answer[:12]!r}" if answer else "refused: closed"


def main() -> None:
    plan = json.loads(sys.argv[1])
    own = tempfile.mkdtemp()
    cert, key = os.path.join(own, "client.pem"), os.path.join(own, "client.key")
    for path, text in ((cert, plan["cert"]), (key, plan["key"])):
        with open(path, "w") as file:
            file.write(text)
    bundle = {}
    for name in sorted(os.listdir(plan["bundle"])) if os.access(plan["bundle"], os.R_OK) else []:
        try:
            with open(os.path.join(plan["bundle"], name), "rb") as file:
                file.read()
            bundle[name] = "read"
        except OSError as exc:
            bundle[name] = type(exc).__name__
    try:
        os.listdir(plan["bundle"])
        listing = "listed"
    except OSError as exc:
        listing = type(exc).__name__
    published = published_ports(plan["owner"])
    ports = [plan["proxy_port"], *published]
    report = {
        "uid": os.getuid(),
        "holding": processes_holding(plan["secret"].encode()),
        "bundle": bundle,
        "bundle_listing": listing,
        "published": published,
        "no_cert": {str(port): https_request(port, None, None) for port in ports},
        "own_ca": {str(port): https_request(port, cert, key) for port in ports},
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
