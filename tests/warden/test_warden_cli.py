"""Parsing the contract's command line, and the seccomp program's shape."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_sandbox.contract import Volume, VolumeError
from trio_sandbox.sandbox._launcher import environment_fd
from trio_sandbox.warden import PortSpec, WrapRequestError, deny_list_program, parse_wrap_args
from trio_sandbox.warden._spec import parse_port, read_env_fd


def test_contract_command_line() -> None:
    spec = parse_wrap_args(
        [
            *["wrap", "--volume", "~/work:/work", "--volume", "cache:/cache:ro"],
            *["-p", "127.0.0.1:4242:8080", "--env", "A=1=2", "--env", "STAKPAK_MCP_PORT=8080"],
            *["--workdir", "/work", "--network", "none", "host", "--", "cmd", "--flag", "--"],
        ]
    )
    assert spec.image == "host"
    assert spec.command == ("cmd", "--flag", "--")
    assert spec.env == (("A", "1=2"), ("STAKPAK_MCP_PORT", "8080"))
    assert spec.ports == (PortSpec("127.0.0.1", 4242, 8080),)
    assert spec.volumes[1] == Volume("cache", "/cache", read_only=True)
    assert (spec.workdir, spec.backend, spec.network) == ("/work", "auto", "none")


def test_default_command_is_the_tool_server() -> None:
    spec = parse_wrap_args(["wrap", "host"])
    assert spec.command == (sys.executable, "-m", "trio_sandbox.tools")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("data:/data", Volume("data", "/data", read_only=False)),
        ("/srv:/srv:ro", Volume("/srv", "/srv", read_only=True)),
        ("~/x:/x", Volume("/home/me/x", "/x", read_only=False)),
        ("~:/home", Volume("/home/me", "/home", read_only=False)),
        (".cfg:/cfg", Volume("/srv/.cfg", "/cfg", read_only=False)),
        ("./rel:/rel", Volume("/srv/rel", "/rel", read_only=False)),
    ],
)
def test_volume_rules(text: str, expected: Volume, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/srv")
    assert Volume.parse(text).resolved(home="/home/me") == expected


@pytest.mark.parametrize("text", ["nocolon", "a:relative", "../x:/x:maybe", "bad name!:/x"])
def test_bad_volumes(text: str) -> None:
    with pytest.raises(VolumeError):
        Volume.parse(text)


@pytest.mark.parametrize("text", ["0.0.0.0:1:2", "127.0.0.1:0:2", "127.0.0.1:x:2", "1:2:3:4"])
def test_bad_ports(text: str) -> None:
    with pytest.raises(WrapRequestError):
        parse_port(text)


def test_short_port_form_defaults_to_loopback() -> None:
    assert parse_port("4242:8080") == PortSpec("127.0.0.1", 4242, 8080)


def test_seccomp_program_is_well_formed() -> None:
    program = deny_list_program("x86_64")
    assert len(program) % 8 == 0
    instructions = [struct.unpack("=HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]
    assert len(instructions) < 4096
    for index, (code, jt, jf, _k) in enumerate(instructions):
        if code & 0x07 == 0x05:  # a jump stays inside the program
            assert index + 1 + max(jt, jf) < len(instructions)
    assert instructions[-1] == (0x06, 0, 0, 0x7FFF0000)  # default: allow


def test_seccomp_refuses_unknown_architectures() -> None:
    from trio_sandbox.warden._errors import SeccompUnsupportedError

    with pytest.raises(SeccompUnsupportedError):
        deny_list_program("riscv64")


def _descriptor(data: bytes) -> int:
    fd = os.memfd_create("test-env")
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def test_env_fd_variables_come_before_the_command_lines() -> None:
    fd = _descriptor(b"A=from fd\0MULTI=line one\nline=two\0EMPTY=\0")
    spec = parse_wrap_args(["wrap", "--env-fd", str(fd), "--env", "A=from argv", "host"])
    assert spec.env == (
        ("A", "from fd"),
        ("MULTI", "line one\nline=two"),
        ("EMPTY", ""),
        ("A", "from argv"),  # later wins, as with repeated --env
    )
    with pytest.raises(OSError, match="Bad file descriptor"):  # read and closed: not inherited
        os.fstat(fd)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"A=1", "the last record is not ended by a NUL byte"),
        (b"NOEQUALS\0", "a record is not K=V"),
        (b"=value\0", "a record is not K=V"),
        (b"A=\xff\0", "a record is not UTF-8"),
    ],
)
def test_bad_env_fd_records_are_usage_errors(data: bytes, message: str) -> None:
    fd = _descriptor(data)
    with pytest.raises(WrapRequestError, match=message):
        read_env_fd(str(fd))


@pytest.mark.parametrize("text", ["x", "1", "99999"])
def test_bad_env_fd_numbers_are_usage_errors(text: str) -> None:
    with pytest.raises(WrapRequestError, match="--env-fd"):
        read_env_fd(text)


@given(
    st.dictionaries(
        st.text(st.characters(exclude_characters="=\0", exclude_categories=["Cs"]), min_size=1),
        st.text(st.characters(exclude_characters="\0", exclude_categories=["Cs"])),
        max_size=8,
    )
)
def test_the_hosts_env_fd_is_what_the_warden_reads(variables: dict[str, str]) -> None:
    assert read_env_fd(str(environment_fd(variables))) == tuple(variables.items())


def test_the_warden_reaches_its_launch_on_the_standard_library_alone() -> None:
    """Everything the warden runs before bubblewrap starts (its command line, every back end's
    options, the bubblewrap launch) imports no third-party package: each would delay every
    sandbox start (attrs alone took ~20 ms there)."""
    probe = (
        "import sys, trio_sandbox.warden._cli, trio_sandbox.warden.bwrap._start\n"
        "third = {'attr', 'attrs', 'trio', 'cryptography', 'kr8s', 'hypercorn', 'outcome',"
        " 'opentelemetry', 'google', 'requests'}\n"
        "print(','.join(sorted({m.split('.')[0] for m in sys.modules} & third)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
