"""The contract's grammar (limits, sizes, volumes, network modes): every value written back
parses to the same value, every malformed text gives a typed error that names the option or
setting and the text, and the host, the warden and the tool server read the same values."""

from __future__ import annotations

import json
import pickle
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_sandbox.contract import (
    CPUS,
    LIMIT_KINDS,
    MAX_SIZE,
    MEMORY,
    PER_COMMAND_RLIMIT,
    PIDS,
    RUNTIME_ROOT,
    TMP_SIZE,
    UNLIMITED,
    ContractValueError,
    LimitError,
    LimitKind,
    LimitRequest,
    LimitsInForce,
    NetworkMode,
    NetworkModeError,
    ResourceLimits,
    SandboxError,
    Volume,
    VolumeError,
    default_tool_server_command,
    format_size,
    parse_size,
)
from trio_sandbox.sandbox import SandboxConfig
from trio_sandbox.sandbox._launcher import warden_argv
from trio_sandbox.warden import parse_wrap_args
from trio_sandbox.warden._limits import default_limits

UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}

# --- sizes ------------------------------------------------------------------------------------


@given(st.integers(1, MAX_SIZE))
def test_size_round_trip(size: int) -> None:
    text = format_size(size)
    assert parse_size(text, "--memory") == size
    assert format_size(parse_size(text, "--memory")) == text


@given(
    st.integers(1, 10**6),
    st.sampled_from(sorted(UNITS)),
    st.sampled_from(["", "b", "B", "ib", "iB", "IB"]),
    st.booleans(),
    st.sampled_from(["", " ", "\t", "  "]),
)
def test_size_spellings(number: int, unit: str, suffix: str, upper: bool, space: str) -> None:
    text = f"{space}{number}{space}{unit.upper() if upper else unit}{suffix if unit else ''}{space}"
    assert parse_size(text, "--memory") == number * UNITS[unit]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512M", 512 * 2**20),
        ("2G", 2 * 2**30),
        ("1.5GiB", 3 * 2**29),
        ("4096", 4096),
        ("8k", 8192),
        ("1.5K", 1536),
        ("0.5K", 512),
        ("00012M", 12 * 2**20),
        (f"{MAX_SIZE}", MAX_SIZE),
        ("8388607T", 8_388_607 * 2**40),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text, "--memory") == size


@pytest.mark.parametrize(("size", "text"), [(2**31, "2G"), (1536 * 2**20, "1536M"), (4097, "4097")])
def test_sizes_are_written_canonically(size: int, text: str) -> None:
    assert format_size(size) == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "expected a size"),
        ("   ", "expected a size"),
        ("two", "expected a size"),
        ("-1G", "expected a size"),
        ("+1G", "expected a size"),
        ("1Q", "expected a size"),
        ("8E", "expected a size"),
        ("1.G", "expected a size"),
        (".5G", "expected a size"),
        ("1e3", "expected a size"),
        ("1 000", "expected a size"),
        ("1_000", "expected a size"),
        ("\u0662G", "expected a size"),  # ARABIC-INDIC DIGIT TWO
        ("\u00b2", "expected a size"),  # SUPERSCRIPT TWO
        ("\uff12G", "expected a size"),  # FULLWIDTH DIGIT TWO
        ("0", "must be more than 0"),
        ("0G", "must be more than 0"),
        ("0.0001K", "must be more than 0"),
        (f"{MAX_SIZE + 1}", "must be at most"),
        ("8388608T", "must be at most"),
        ("9" * 30 + "T", "must be at most"),
        ("9" * 5000, "must be at most"),
        ("1." + "5" * 31 + "G", "expected a size"),
    ],
)
def test_bad_sizes_name_the_option_and_the_text(text: str, reason: str) -> None:
    with pytest.raises(LimitError) as caught:
        parse_size(text, "--memory")
    message = str(caught.value)
    assert message.startswith(f"--memory {text!r}: "), message
    assert reason in message
    assert caught.value.where == "--memory"
    assert caught.value.text == text


# --- limits -----------------------------------------------------------------------------------


@given(st.integers(8, 4_194_304))
def test_pids_round_trip(pids: int) -> None:
    assert PIDS.parse(PIDS.format(pids)) == pids


@given(st.floats(0.01, 4096.0, allow_nan=False, allow_infinity=False))
def test_cpus_round_trip(cpus: float) -> None:
    text = CPUS.format(cpus)
    assert CPUS.parse(text) == cpus
    assert "e" not in text


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        (PIDS, "8", 8),
        (PIDS, " 4194304 ", 4_194_304),
        (PIDS, "0064", 64),
        (CPUS, "0.01", 0.01),
        (CPUS, "4096", 4096.0),
        (CPUS, ".5", 0.5),
        (CPUS, "2.", 2.0),
        (CPUS, " 1.5 ", 1.5),
        (MEMORY, "unlimited", UNLIMITED),
        (PIDS, " None ", UNLIMITED),
        (CPUS, "UNLIMITED", UNLIMITED),
        (TMP_SIZE, "64M", 64 * 2**20),
    ],
)
def test_limit_values(kind: Any, text: str, value: object) -> None:
    assert kind.parse(text) == value


@pytest.mark.parametrize(
    ("kind", "text", "reason"),
    [
        (PIDS, "7", "from 8 to 4194304"),
        (PIDS, "0", "from 8 to 4194304"),
        (PIDS, "4194305", "from 8 to 4194304"),
        (PIDS, "-8", "from 8 to 4194304"),
        (PIDS, "8.0", "from 8 to 4194304"),
        (PIDS, "", "from 8 to 4194304"),
        (PIDS, "\u00b2\u00b2", "from 8 to 4194304"),
        (PIDS, "\u0668", "from 8 to 4194304"),
        (PIDS, "1e3", "from 8 to 4194304"),
        (PIDS, "9" * 5000, "from 8 to 4194304"),
        (CPUS, "0", "between 0.01 and 4096"),
        (CPUS, "0.001", "between 0.01 and 4096"),
        (CPUS, "4096.5", "between 0.01 and 4096"),
        (CPUS, "9" * 400, "between 0.01 and 4096"),
        (CPUS, "-1", "a number of CPUs"),
        (CPUS, "nan", "a number of CPUs"),
        (CPUS, "inf", "a number of CPUs"),
        (CPUS, "1e1", "a number of CPUs"),
        (CPUS, "", "a number of CPUs"),
        (CPUS, "\u0661", "a number of CPUs"),
        (MEMORY, "unlimitedd", "expected a size"),
        (TMP_SIZE, "1X", "expected a size"),
    ],
)
def test_bad_limits_name_the_option(kind: Any, text: str, reason: str) -> None:
    with pytest.raises(LimitError) as caught:
        kind.parse(text)
    assert str(caught.value).startswith(f"{kind.option} {text!r}: ")
    assert reason in str(caught.value)


def limit_values(kind: Any) -> st.SearchStrategy[Any]:
    values: dict[str, st.SearchStrategy[Any]] = {
        "memory": st.integers(1, MAX_SIZE),
        "tmp_size": st.integers(1, MAX_SIZE),
        "pids": st.integers(8, 4_194_304),
        "cpus": st.floats(0.01, 4096.0),
    }
    return st.none() | st.just(UNLIMITED) | values[kind.name]


requests = st.builds(LimitRequest, **{kind.name: limit_values(kind) for kind in LIMIT_KINDS})


@given(requests)
def test_limit_request_round_trip_through_argv(request: LimitRequest) -> None:
    argv = request.to_argv()
    texts = dict(zip(argv[::2], argv[1::2], strict=True))
    parsed = LimitRequest.parse({kind.name: texts.get(kind.option) for kind in LIMIT_KINDS})
    assert parsed == request


@given(requests)
def test_the_warden_reads_what_the_host_writes(request: LimitRequest) -> None:
    spec = parse_wrap_args(["wrap", *request.to_argv(), "host"])
    assert spec.limits == request.resolve(default_limits())


def test_resolve_fills_defaults_and_lifts_unlimited() -> None:
    defaults = ResourceLimits(memory=2**30, pids=1024, cpus=2.0, tmp_size=2**28)
    request = LimitRequest(memory=UNLIMITED, cpus=1.5)
    assert request.resolve(defaults) == ResourceLimits(None, 1024, 1.5, 2**28)


def test_settings_take_text_or_numbers_and_name_the_setting() -> None:
    assert MEMORY.convert("2G") == 2**31
    assert MEMORY.convert(2**31) == 2**31
    assert CPUS.convert(2) == 2.0
    assert CPUS.convert(1.5) == 1.5
    assert PIDS.convert(None) is None
    assert PIDS.convert(UNLIMITED) is UNLIMITED
    bad: list[tuple[LimitKind[Any], object]] = [(MEMORY, 0), (PIDS, 3), (MEMORY, True)]
    bad += [(CPUS, [1]), (MEMORY, 1.5)]
    for kind, value in bad:
        with pytest.raises(LimitError, match=f"^{kind.name} "):
            kind.convert(value)


# --- the host's settings ------------------------------------------------------------------------


def test_config_keeps_the_values_and_writes_the_same_argv() -> None:
    config = SandboxConfig(
        memory="2G",
        pids="1024",
        cpus="1.5",
        tmp_size="unlimited",
        volumes=["~/work:/work", "cache:/cache:ro", "/srv/data:/data"],
        network="allow",
        allow_domains=["pypi.org"],
    )
    assert (config.memory, config.pids, config.cpus) == (2**31, 1024, 1.5)
    assert config.tmp_size is UNLIMITED
    assert config.network is NetworkMode.ALLOW
    argv = warden_argv(config, 4242, env_fd=5)
    assert argv[argv.index("--volume") :] == [
        *["--volume", "~/work:/work", "--volume", "cache:/cache:ro"],
        *["--volume", "/srv/data:/data", "-p", "127.0.0.1:4242:8080"],
        *["--network", "allow", "--allow-domain=pypi.org"],
        *["--memory", "2G", "--pids", "1024", "--cpus", "1.5", "--tmp-size", "unlimited"],
        *["host", "--", *default_tool_server_command()],
    ]
    assert all(type(arg) is str for arg in argv)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"memory": "2X"}, LimitError, "memory '2X': expected a size such as 512M or 2G"),
        ({"pids": "3"}, LimitError, "pids '3': expected a whole number from 8 to 4194304"),
        ({"cpus": 0}, LimitError, "cpus '0': must be between 0.01 and 4096"),
        ({"network": "open"}, NetworkModeError, "network 'open': expected one of none, allow"),
        ({"volumes": ["/srv"]}, VolumeError, "volume '/srv': expected HOST:CONTAINER[:ro]"),
    ],
)
def test_config_refuses_bad_values(options: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error) as caught:
        SandboxConfig(**options)
    assert isinstance(caught.value, ValueError)  # what callers caught before
    assert isinstance(caught.value, SandboxError)
    assert str(caught.value).startswith(message)


def test_one_default_tool_server_command() -> None:
    assert default_tool_server_command() == (sys.executable, "-m", "trio_sandbox.tools")
    assert tuple(SandboxConfig().command) == default_tool_server_command()
    assert parse_wrap_args(["wrap", "host"]).command == default_tool_server_command()


# --- volumes ----------------------------------------------------------------------------------

segments = st.text("abcxyz019_.-", min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))
paths = st.lists(segments, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts))
targets = paths.filter(
    lambda p: not any(p == r or p.startswith(r + "/") for r in (RUNTIME_ROOT, "/proc", "/dev"))
)
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,10}", fullmatch=True)
sources = st.one_of(
    paths,
    segments.map(lambda s: "~/" + s),
    st.just("~"),
    segments.map(lambda s: "./" + s),
    segments.map(lambda s: "../" + s),
    names,
)
volumes = st.one_of(
    st.builds(Volume, sources, targets, st.booleans()),
    st.builds(Volume, names, targets, st.booleans(), st.just(True)),
)


@given(volumes)
def test_volume_round_trip(volume: Volume) -> None:
    text = volume.format()
    assert Volume.parse(text) == volume
    assert Volume.parse(text).format() == text


@given(sources, targets)
def test_volume_kinds(source: str, target: str) -> None:
    volume = Volume.parse(f"{source}:{target}")
    assert volume.named == ("/" not in source and not source.startswith((".", "~")))
    resolved = volume.resolved(home="/home/me")
    assert resolved.named or resolved.source.startswith("/")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("nocolon", "expected HOST:CONTAINER[:ro]"),
        ("a:b:c:d", "expected HOST:CONTAINER[:ro]"),
        (":/x", "expected HOST:CONTAINER[:ro]"),
        ("a:", "expected HOST:CONTAINER[:ro]"),
        ("../x:/x:maybe", "expected HOST:CONTAINER[:ro]"),
        ("a:relative", "the container path must be absolute"),
        ("a:/", "/ is reserved"),
        ("a:/x/..", "/ is reserved"),
        ("a:/proc", "/proc is reserved"),
        ("a:/dev/shm", "/dev/shm is reserved"),
        ("a:/x/../dev", "/dev is reserved"),
        (f"a:{RUNTIME_ROOT}", f"{RUNTIME_ROOT} is reserved"),
        (f"a:{RUNTIME_ROOT}/lib/", f"{RUNTIME_ROOT}/lib is reserved"),
        ("bad name!:/x", "bad volume name 'bad name!'"),
        ("caf\u00e9:/x", "bad volume name"),
        ("-x:/x", "bad volume name"),
        ("pvc:a b:/x", "bad volume name"),
        ("pvc:c:/proc", "/proc is reserved"),
    ],
)
def test_bad_volumes_say_why(text: str, reason: str) -> None:
    with pytest.raises(VolumeError) as caught:
        Volume.parse(text)
    assert str(caught.value).startswith(f"--volume {text!r}: ")
    assert reason in str(caught.value)


def test_volume_boundaries() -> None:
    assert Volume.parse("a:/proc2").target == "/proc2"
    assert Volume.parse(f"a:{RUNTIME_ROOT}s").target == f"{RUNTIME_ROOT}s"
    assert Volume.parse("/srv:/srv/:rw") == Volume("/srv", "/srv")
    assert Volume.parse("pvc:work:/work:ro") == Volume("work", "/work", True, claim=True)
    assert not Volume.parse("pvc:work:/work").named
    assert Volume.parse("./x:/x").resolved().source.startswith("/")


# --- network modes ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(NetworkMode))
def test_network_round_trip(mode: NetworkMode) -> None:
    assert NetworkMode.parse(mode.value) is mode
    assert mode == mode.value  # the wire string


@pytest.mark.parametrize("text", ["", "None", " none", "allowed", "bridge", "h\u043est"])
def test_bad_network_modes(text: str) -> None:
    with pytest.raises(NetworkModeError, match="expected one of none, allow, host"):
        NetworkMode.parse(text)


# --- what the tool server is told -------------------------------------------------------------

limits_in_force = st.builds(
    LimitsInForce,
    st.builds(
        ResourceLimits,
        st.none() | st.integers(1, MAX_SIZE),
        st.none() | st.integers(8, 4_194_304),
        st.none() | st.floats(0.01, 4096.0),
        st.none() | st.integers(1, MAX_SIZE),
    ),
    st.none() | st.sampled_from(["cgroup v1", PER_COMMAND_RLIMIT]),
    st.none() | st.just("/sys/fs/cgroup/memory/trio-sandbox-1"),
)


@given(limits_in_force)
def test_limits_in_force_round_trip(value: LimitsInForce) -> None:
    assert LimitsInForce.from_json(value.to_json()) == value


def test_limits_in_force_wire_form() -> None:
    value = LimitsInForce(ResourceLimits(2**28, 64, 1.5, None), PER_COMMAND_RLIMIT, None)
    assert value.to_json() == (
        '{"cpus": 1.5, "memory": 268435456, "memory_cgroup": null, "memory_enforced_by":'
        ' "rlimit, per command", "pids": 64, "tmp_size": null}'
    )


@pytest.mark.parametrize(
    "text", ["", "not json", "[]", "null", '{"memory": "2G", "pids": true, "cpus": "x"}']
)
def test_limits_in_force_tolerates_what_it_cannot_read(text: str) -> None:
    assert LimitsInForce.from_json(text) == LimitsInForce()


# --- the errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        LimitError("--memory", "x", "expected a size"),
        VolumeError("--volume", "x", "expected HOST:CONTAINER[:ro]"),
        NetworkModeError("--network", "x", "expected one of none, allow, host"),
    ],
)
def test_errors_are_typed_and_survive_pickling(error: ContractValueError) -> None:
    assert isinstance(error, SandboxError)
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert json.dumps(str(error))  # plain text
