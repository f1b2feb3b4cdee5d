"""The house rules of the package's imports, checked on the source (every import, lazy ones in
functions included):

- no module imports another package's private module (``..mcp._client``) or private name;
- packages import downward only, in the order written here and in NOTES.md;
- rooms that must stay apart do: the warden's core and its back ends, MCP's protocol, server and
  client sides.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trio_sandbox"

# Lower numbers are lower layers; a package may import only packages of lower layers. Packages
# of one layer are independent of each other (tools and warden are siblings).
LAYERS = {
    "contract": 0,  # independent roots, stdlib only: the contract's names and SandboxError;
    "program": 0,  # the package as a program: its version, lazy names, exit without teardown
    "concurrency": 1,  # shared Trio helpers: broadcast value, byte relay, signals, processes
    "egress": 2,  # the egress proxy and its policy (stdlib, trio, attrs and concurrency only)
    "redact": 2,  # secret detection and placeholders (stdlib, trio and attrs only)
    "mcp": 3,
    "tls": 4,
    "tools": 5,
    "warden": 5,
    "observe": 5,  # the audit log, metrics and traces the proxy and the sandbox feed
    "oauth": 5,  # OAuth clients of remote MCP servers (the HTTP transport's auth hook)
    "proxy": 6,
    "sandbox": 7,
    "cli": 8,
    "": 9,  # trio_sandbox/__init__.py and __main__.py: the embedding API, the entry point
}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else ""


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, names) of every import in ``path``."""
    name = module_name(path)
    is_package = path.name == "__init__.py"
    found: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((node.lineno, alias.name, []))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((node.lineno, target, [alias.name for alias in node.names]))
    return found


def violations() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = package_of(module_name(path))
        for line, target, names in imports(path):
            if not target.startswith("trio_sandbox"):
                continue
            other = package_of(target)
            where = f"{path.relative_to(PACKAGE.parent)}:{line}"
            if other == own:
                continue
            private = [part for part in target.split(".")[2:] if part.startswith("_")]
            if private:
                problems.append(f"{where}: private module {target}")
            private_names = [n for n in names if n.startswith("_") and n != "__version__"]
            if private_names:
                problems.append(f"{where}: private names {private_names} of {target}")
            if LAYERS[other] >= LAYERS[own]:
                problems.append(f"{where}: {own or 'trio_sandbox'} imports {other}, not below it")
    return problems


def test_every_package_is_in_a_layer() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(LAYERS), packages - set(LAYERS)


def test_no_private_or_upward_imports_across_packages() -> None:
    assert violations() == []


# Rooms of a package that must not reach into each other (importer prefix, imported prefix,
# the modules allowed to anyway, with why).
WARDEN_BACK_ENDS = ("bwrap", "container", "kubernetes", "unisolated")
SEPARATE_ROOMS: list[tuple[str, str, set[str]]] = [
    # The warden's core knows the back ends only as the values of the table in _choice.
    *(
        ("trio_sandbox.warden._", f"trio_sandbox.warden.{room}", {"trio_sandbox.warden._choice"})
        for room in WARDEN_BACK_ENDS
    ),
    # One back end never reaches into another.
    *(
        (f"trio_sandbox.warden.{room}.", f"trio_sandbox.warden.{other}", set())
        for room in WARDEN_BACK_ENDS
        for other in WARDEN_BACK_ENDS
        if other != room
    ),
    # MCP's protocol is what both sides share: it imports neither.
    ("trio_sandbox.mcp.protocol", "trio_sandbox.mcp.server", set()),
    ("trio_sandbox.mcp.protocol", "trio_sandbox.mcp.client", set()),
    # The server side never imports the client's (the tool server loads no client code).
    ("trio_sandbox.mcp.server", "trio_sandbox.mcp.client", set()),
    # The client imports the server only for the in-process transport, which serves in-process.
    ("trio_sandbox.mcp.client", "trio_sandbox.mcp.server", {"trio_sandbox.mcp.client._memory"}),
]


def room_violations() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        for line, target, _names in imports(path):
            for importer, imported, allowed in SEPARATE_ROOMS:
                into = target == imported or target.startswith(imported + ".")
                if name.startswith(importer) and into and name not in allowed:
                    problems.append(f"{name}:{line} imports {target}")
    return problems


def test_rooms_keep_to_themselves() -> None:
    assert room_violations() == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from ..mcp._client import McpClient\n", "private module trio_sandbox.mcp._client"),
        ("from ..mcp import _versions\n", "private names ['_versions']"),
        ("from ..sandbox import open_sandbox\n", "proxy imports sandbox, not below it"),
    ],
)
def test_the_check_catches_what_it_should(
    source: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checker itself, on a fake package laid out like the real one."""
    fake = tmp_path / "trio_sandbox"
    (fake / "proxy").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "proxy" / "__init__.py").write_text("")
    (fake / "proxy" / "_bad.py").write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    [problem] = violations()
    assert expected in problem


def test_the_room_check_catches_what_it_should(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "trio_sandbox"
    for room in ("warden/bwrap", "mcp/server", "mcp/client"):
        (fake / room).mkdir(parents=True)
    (fake / "warden" / "_core.py").write_text("from .bwrap._start import launch_bwrap\n")
    (fake / "warden" / "_choice.py").write_text("from .bwrap import BWRAP_BACKEND\n")
    (fake / "mcp" / "server" / "_bad.py").write_text("from ..client import McpClient\n")
    (fake / "mcp" / "client" / "_memory.py").write_text("from ..server import McpServer\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert room_violations() == [
        "trio_sandbox.mcp.server._bad:1 imports trio_sandbox.mcp.client",
        "trio_sandbox.warden._core:1 imports trio_sandbox.warden.bwrap._start",
    ]
