"""A fake warden that keeps the CLI contract (``WARDEN MODE wrap [options] IMAGE -- CMD...``)
and misbehaves on cue. Standard library only, so that it starts in a few milliseconds.

Modes:
  ok              run CMD on the host (like the ``process`` back end) with the --env variables,
                  publishing its port as the -p host port on 127.0.0.1
  slow            sleep $FAKE_WARDEN_DELAY seconds (default 0.5), then like ok
  die             write to stderr, exit 3 at once
  exit-before-ca  print some lines, write to stderr, exit 2
  garbage         print binary garbage and very long lines, 6 KiB of stderr, exit 4
  empty-block     print the markers with nothing between, exit 5
  truncated       print BEGIN and half a certificate, exit 6
  stop            SIGSTOP itself before printing anything (a hung warden)
  silent          print nothing, sleep forever
  no-server       print the valid CA block of $FAKE_WARDEN_CA but serve nothing, sleep forever
When $FAKE_WARDEN_PIDFILE is set, the warden's pid is written there first.
"""

from __future__ import annotations

import os
import signal
import sys
import time

BEGIN = "---BEGIN STAKPAK SERVER CA---"
END = "---END STAKPAK SERVER CA---"


def parse(argv: list[str]) -> tuple[dict[str, str], int, list[str]]:
    assert argv[0] == "wrap", argv
    env: dict[str, str] = {}
    port = 0
    index = 1
    while argv[index].startswith("-"):
        option, value = argv[index], argv[index + 1]
        if option == "--env":
            key, _, val = value.partition("=")
            env[key] = val
        elif option == "--env-fd":  # K=V records ended by NUL bytes, read to the end
            with os.fdopen(int(value), "rb") as records:
                for record in records.read().split(b"\0")[:-1]:
                    key, _, val = record.decode().partition("=")
                    env[key] = val
        elif option == "-p":
            port = int(value.split(":")[1])
        index += 2
    index += 1  # IMAGE
    assert argv[index] == "--", argv
    return env, port, argv[index + 1 :]


def run_ok(env: dict[str, str], port: int, command: list[str]) -> None:
    child_env = dict(os.environ)
    child_env.update(env)
    child_env["STAKPAK_MCP_PORT"] = str(port)
    child_env.pop("STAKPAK_SKIP_WARDEN", None)  # on the host: bind 127.0.0.1, not 0.0.0.0
    os.execvpe(command[0], command, child_env)


def say(text: str, stream: object = sys.stdout) -> None:
    print(text, file=stream, flush=True)  # type: ignore[call-overload]


def main() -> None:
    mode = sys.argv[1]
    pidfile = os.environ.get("FAKE_WARDEN_PIDFILE")
    if pidfile:
        with open(pidfile, "w") as out:
            out.write(str(os.getpid()))
    env, port, command = parse(sys.argv[2:])
    if mode == "ok":
        run_ok(env, port, command)
    elif mode == "slow":
        time.sleep(float(os.environ.get("FAKE_WARDEN_DELAY", "0.5")))
        run_ok(env, port, command)
    elif mode == "die":
        say("fake warden: cannot create the sandbox: permission denied", sys.stderr)
        sys.exit(3)
    elif mode == "exit-before-ca":
        say("starting the tool server")
        say("fake warden: the tool server exited with status 1", sys.stderr)
        sys.exit(2)
    elif mode == "garbage":
        sys.stdout.buffer.write(bytes(range(256)) * 64 + b"\n" + b"x" * 100_000 + b"\n")
        sys.stdout.flush()
        for number in range(200):
            say(f"stderr line {number:04d} " + "-" * 20, sys.stderr)
        say("LAST STDERR LINE", sys.stderr)
        sys.exit(4)
    elif mode == "empty-block":
        say(BEGIN)
        say("")
        say(END)
        say("fake warden: printed an empty block", sys.stderr)
        sys.exit(5)
    elif mode == "truncated":
        say(BEGIN)
        say("-----BEGIN CERTIFICATE-----")
        say("MIIBdzCCAR2gAwIBAgIUY29ycnVwdGVk")
        say("fake warden: cut short", sys.stderr)
        sys.exit(6)
    elif mode == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
        time.sleep(3600)
    elif mode == "silent":
        time.sleep(3600)
    elif mode == "no-server":
        say(BEGIN)
        say(os.environ["FAKE_WARDEN_CA"].strip())
        say(END)
        say("MCP server started at https://0.0.0.0:8080/mcp")
        time.sleep(3600)
    else:
        sys.exit(f"fake warden: unknown mode {mode!r}")


if __name__ == "__main__":
    main()
