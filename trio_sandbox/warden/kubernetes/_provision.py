"""A warm Pod's first program: it waits for its sandbox's variables, then becomes the command.

``python3 -m trio_sandbox.warden.kubernetes._provision --port PORT -- COMMAND...`` is the
command of the Pods of a warm pool (a SandboxWarmPool starts them before any warden claims
one). The contract's variables (the client CA above all) belong to one sandbox and are not
known when the pool starts its Pods, so they cannot be in the template; the warden that claims
the Pod hands them over through the port-forward instead:

- the stub listens on ``127.0.0.1:PORT`` inside the Pod (never the Pod network);
- the first connection that sends one line ``{"env": {NAME: VALUE, ...}}`` (at most
  ``MAX_REQUEST`` bytes, within ``REQUEST_SECONDS``) is answered ``ok NONCE`` where NONCE is what
  the request carried in ``"nonce"``; the listener is closed and the stub execs COMMAND with
  those variables added. A connection that sends anything else, or nothing in time, is closed
  and the stub waits on: nothing but a whole request hands the Pod over.
- when COMMAND is ``PYTHON -m PACKAGE ...`` with this same interpreter, PACKAGE is imported while
  the Pod waits (before the line that says it listens) and run in this process with ``runpy``
  once the variables came: the claimed sandbox does not pay the interpreter's start and the
  tool server's imports again. Variables that change how Python itself starts (``PYTHON*``,
  ``LD_*``) make it exec instead, as does a module that cannot be imported.
- it is one-shot: once handed over, the port belongs to COMMAND (the tool server, mutual TLS).
  A second warden that tries (someone provisioned the Pod first) meets the tool server's TLS,
  gets no ``ok``, and fails with a clear error; it never shares that sandbox.

Standard library only (it runs in the image, before anything else).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import runpy
import shutil
import socket
import sys
from collections.abc import Sequence

MAX_REQUEST = 1 << 20
REQUEST_SECONDS = 10.0
READY_LINE = "trio-sandbox-provision: waiting for the sandbox's variables"


def parse_request(data: bytes) -> tuple[dict[str, str], str] | None:
    """The variables and nonce of one request line, or None if it is not one."""
    try:
        request = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(request, dict):
        return None
    env, nonce = request.get("env"), request.get("nonce")
    if not isinstance(env, dict) or not isinstance(nonce, str) or not nonce.isalnum():
        return None
    if not all(
        isinstance(k, str) and k and "=" not in k and isinstance(v, str) for k, v in env.items()
    ):
        return None
    return env, nonce


def _read_line(conn: socket.socket) -> bytes | None:
    conn.settimeout(REQUEST_SECONDS)
    data = b""
    try:
        while b"\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
            if len(data) > MAX_REQUEST:
                return None
    except OSError:
        return None
    return data.partition(b"\n")[0]


def wait_for_request(listener: socket.socket) -> dict[str, str]:
    """Accept until one connection sends a whole request; answer it and return its variables."""
    while True:
        conn, _ = listener.accept()
        with conn:
            line = _read_line(conn)
            parsed = parse_request(line) if line is not None else None
            if parsed is None:
                continue
            env, nonce = parsed
            try:
                conn.sendall(f"ok {nonce}\n".encode())
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                continue  # the warden went away: wait for the next one
            return env


def preload(command: Sequence[str]) -> str | None:
    """The package of ``PYTHON -m PACKAGE ...`` run by this interpreter, imported now (it
    is then run in this process); else None."""
    if len(command) < 3 or command[1] != "-m":
        return None
    found = shutil.which(command[0])
    if found is None or os.path.realpath(found) != os.path.realpath(sys.executable):
        return None
    try:
        # Only a package: its __init__ is an import; a plain module's body is the program.
        spec = importlib.util.find_spec(command[2])
        if spec is None or spec.submodule_search_locations is None:
            return None
        importlib.import_module(command[2])
    except Exception:  # any failure: the command runs as a program instead
        return None
    return command[2]


def _starts_python(env: dict[str, str]) -> bool:
    return any(name.startswith(("PYTHON", "LD_")) for name in env)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trio_sandbox.warden.kubernetes._provision")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a command is needed after --")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(4)
    module = preload(command)
    print(READY_LINE, flush=True)
    env = wait_for_request(listener)
    listener.close()
    if module is None or _starts_python(env):
        os.execvpe(command[0], command, {**os.environ, **env})
    os.environ.update(env)
    sys.argv = [command[0], *command[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
