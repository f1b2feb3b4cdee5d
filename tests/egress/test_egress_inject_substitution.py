"""Placeholder substitution (hypothesis): the matcher against a reference model, and request
streams through relay_requests split at random points.

What must hold: a whole placeholder, raw, with its special characters %-encoded in either hex
case, or inside Basic credentials, becomes the value with the client's encoding kept; a prefix,
a truncation or a near miss stays exactly as it was; never a mix of value and placeholder; bodies
(Content-Length and chunked, extensions and trailers) pass byte for byte.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable, Sequence

import attrs
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from trio_sandbox.concurrency import Buffered
from trio_sandbox.egress import InjectedSecret, PlaceholderFound, PlaceholderMatcher
from trio_sandbox.egress._errors import HttpError
from trio_sandbox.egress._http_head import Body, Framing, RequestHead, write_head
from trio_sandbox.egress._http_relay import relay_requests
from trio_sandbox.egress._inject import ResponseMask, StreamingReplacer
from trio_sandbox.egress._intercept import PAUSE_FLUSH_SECONDS, relay_masked

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
SPECIALS = "-_.~+/=:@!%*"
# Filler between pieces shares no character with any placeholder and holds no '%', so it can
# never complete one; pieces are separated by a space, which no value holds.
FILLER = st.text(alphabet="#&(),;<>?[]^`{|}$\"'", max_size=6)


@st.composite
def secrets(draw: st.DrawFn, name: str = "TOKEN") -> InjectedSecret:
    shape = draw(st.lists(st.sampled_from(ALNUM + SPECIALS * 2), min_size=8, max_size=40))
    value = "".join(shape)
    placeholder = "".join(
        c if c in SPECIALS else draw(st.sampled_from(ALNUM), label="placeholder") for c in shape
    )
    assume(placeholder != value)
    return InjectedSecret(name, value, placeholder, ("api.example.com",))


def encode(text: str, encoded: Sequence[bool], upper: Sequence[bool]) -> str:
    """``text`` with its special characters %-encoded where ``encoded`` says."""
    forms = [
        (1 if upper[index % len(upper)] else 2) if encoded[index % len(encoded)] else 0
        for index in range(max(1, sum(c not in ALNUM for c in text)))
    ]
    return spell(text, forms).decode()


@st.composite
def pieces(draw: st.DrawFn, secret: InjectedSecret) -> tuple[str, str]:
    """(what the client writes, what must go out) for one piece of text."""
    kind = draw(st.sampled_from(["whole", "whole", "prefix", "truncated", "changed", "filler"]))
    encoded = draw(st.lists(st.booleans(), min_size=1, max_size=4))
    upper = draw(st.lists(st.booleans(), min_size=1, max_size=4))
    placeholder = secret.placeholder
    if kind == "whole":
        return encode(placeholder, encoded, upper), encode(secret.value, encoded, upper)
    if kind == "prefix":
        cut = draw(st.integers(1, len(placeholder) - 1))
        text = encode(placeholder[:cut], encoded, upper)
        return text, text
    if kind == "truncated":
        cut = draw(st.integers(1, len(placeholder) - 1))
        text = encode(placeholder[cut:], encoded, upper)
        return text, text
    if kind == "changed":
        at = draw(st.integers(0, len(placeholder) - 1))
        swapped = "Q" if placeholder[at] != "Q" else "R"
        text = encode(placeholder[:at] + swapped + placeholder[at + 1 :], encoded, upper)
        return text, text
    text = draw(FILLER)
    return text, text


@given(data=st.data())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_substitution_matches_the_reference_model(data: st.DataObject) -> None:
    secret = data.draw(secrets())
    matcher = PlaceholderMatcher([secret])
    drawn = data.draw(st.lists(pieces(secret), max_size=6))
    text = " ".join(written for written, _ in drawn)
    expected = " ".join(out for _, out in drawn)
    assert matcher.substitute(text) == expected
    # Found exactly when a whole placeholder was written; none left after replacing.
    assert (matcher.find(text) is not None) == any(w != o for w, o in drawn)
    assert matcher.find(expected) is None


@given(secret=secrets(), times=st.integers(1, 4), affix=st.sampled_from(["", "/bot", "x"]))
def test_adjacent_placeholders_are_each_replaced(
    secret: InjectedSecret, times: int, affix: str
) -> None:
    matcher = PlaceholderMatcher([secret])
    text = affix + secret.placeholder * times + affix
    assert matcher.substitute(text) == affix + secret.value * times + affix


@given(data=st.data())
def test_basic_credentials_are_decoded_replaced_and_encoded_again(data: st.DataObject) -> None:
    secret = data.draw(secrets())
    # The ':' between user and password could complete a placeholder that holds one.
    assume(":" not in secret.placeholder)
    matcher = PlaceholderMatcher([secret])
    user, out_user = data.draw(pieces(secret))
    password, out_password = data.draw(pieces(secret))
    credentials = f"{user}:{password}".encode("latin-1")
    expected = f"{out_user}:{out_password}".encode("latin-1")
    scheme = data.draw(st.sampled_from(["Basic", "basic", "BASIC"]))
    value = f"{scheme} {base64.b64encode(credentials).decode()}"
    replaced = matcher.substitute_field("Authorization", value)
    assert replaced == f"{scheme} {base64.b64encode(expected).decode()}"
    assert len(replaced) == len(value)
    found = matcher.find_in_field("Proxy-Authorization", value)
    if credentials != expected:
        where = "the Basic credentials of header Proxy-Authorization"
        assert found == PlaceholderFound(secret, where)
    # Not a credentials field: the base64 text is not decoded.
    assert matcher.substitute_field("X-Other", value) == value


def two_secrets() -> tuple[InjectedSecret, InjectedSecret]:
    scoped = InjectedSecret(
        "GITHUB_TOKEN", "ghp_" + "R" * 36, "ghp_" + "p" * 36, ("api.github.com",)
    )
    other = InjectedSecret("OTHER", "sk-" + "V" * 20, "sk-" + "q" * 20, ("other.test",))
    return scoped, other


def test_a_head_with_another_secret_is_refused_and_nothing_replaced() -> None:
    scoped, other = two_secrets()
    matcher = PlaceholderMatcher([scoped, other])
    head = RequestHead(
        "GET",
        f"/x?t={scoped.placeholder}",
        "HTTP/1.1",
        (("Authorization", f"Bearer {scoped.placeholder}"), ("X-Leak", other.placeholder)),
    )
    found = matcher.substitute_head(head, [scoped])
    assert found == PlaceholderFound(other, "header X-Leak")
    assert "OTHER" in found.reason()
    assert "other.test" in found.reason()
    assert other.value not in found.reason()
    clean = attrs.evolve(head, fields=head.fields[:1])
    replaced = matcher.substitute_head(clean, [scoped])
    assert isinstance(replaced, RequestHead)
    assert replaced.target == f"/x?t={scoped.value}"
    assert replaced.fields == (("Authorization", f"Bearer {scoped.value}"),)
    assert matcher.find_in_head("/" + other.placeholder.replace("-", "%2d"), ()) == (
        PlaceholderFound(other, "the request target")
    )


def test_host_names_are_matched_whatever_their_case() -> None:
    scoped, _ = two_secrets()
    matcher = PlaceholderMatcher([scoped])
    host = f"{scoped.placeholder}.evil.test".lower()
    assert matcher.find(host) is scoped  # this placeholder is lower case already
    upper = InjectedSecret("UPPER", "AbCdEfGh12", "XyZwVuTs34", ("a.test",))
    matcher = PlaceholderMatcher([upper])
    assert matcher.find("xyzwvuts34.evil.test") is None
    assert matcher.find("xyzwvuts34.evil.test", ignore_case=True) is upper


# ---------------------------------------------------------------------------------------------
# Request streams


class Pieces(trio.abc.Stream):
    """A stream that hands out exactly the given pieces, one per receive."""

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self.chunks = list(chunks)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        if not self.chunks:
            return b""
        chunk = self.chunks.pop(0)
        if max_bytes is not None and len(chunk) > max_bytes:
            self.chunks.insert(0, chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        return chunk

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        raise AssertionError("not written to")

    async def wait_send_all_might_not_block(self) -> None:
        raise AssertionError("not written to")

    async def aclose(self) -> None:
        pass


class Collected(trio.abc.SendStream):
    def __init__(self) -> None:
        self.data = bytearray()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self.data += data

    async def wait_send_all_might_not_block(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


@st.composite
def bodies(draw: st.DrawFn, secret: InjectedSecret) -> tuple[tuple[tuple[str, str], ...], bytes]:
    """(framing fields, the body as sent): bodies carry placeholders, which must stay."""
    payload = draw(st.binary(max_size=64)) + secret.placeholder.encode()
    kind = draw(st.sampled_from(["none", "length", "chunked"]))
    if kind == "none":
        return (), b""
    if kind == "length":
        return (("Content-Length", str(len(payload))),), payload
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=3)))
    chunks = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
    out = b""
    for chunk in chunks:
        if chunk:
            extension = draw(st.sampled_from([b"", b";ext=1", b' ;name="q"']))
            out += f"{len(chunk):X}".encode() + extension + b"\r\n" + chunk + b"\r\n"
    trailer = draw(st.sampled_from([b"", b"X-Trailer: " + secret.placeholder.encode() + b"\r\n"]))
    return (("Transfer-Encoding", "chunked"),), out + b"0\r\n" + trailer + b"\r\n"


@st.composite
def requests(draw: st.DrawFn, secret: InjectedSecret) -> tuple[bytes, bytes]:
    """(a request as the client sends it, what must go out)."""
    in_target, out_target = draw(pieces(secret))
    in_header, out_header = draw(pieces(secret))
    framing, body = draw(bodies(secret))
    method = "POST" if framing else draw(st.sampled_from(["GET", "HEAD", "DELETE"]))
    fields = (("Host", "api.example.com"), ("Authorization", f"Bearer {in_header};"), *framing)
    sent = write_head(f"{method} /q?{in_target} HTTP/1.1", fields) + body
    out_fields = (
        ("Host", "api.example.com"),
        ("Authorization", f"Bearer {out_header};"),
        *framing,
    )
    expected = write_head(f"{method} /q?{out_target} HTTP/1.1", out_fields) + body
    return sent, expected


def split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    parts = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    return [part for part in parts if part]  # an empty receive is the end of the stream


def rewriter(matcher: PlaceholderMatcher, secret: InjectedSecret) -> Callable[[RequestHead], bytes]:
    def rewrite(head: RequestHead) -> bytes:
        replaced = matcher.substitute_head(head, [secret])
        if isinstance(replaced, PlaceholderFound):
            raise HttpError(403, replaced.reason())
        return write_head(
            f"{replaced.method} {replaced.target} {replaced.version}", replaced.fields
        )

    return rewrite


@given(data=st.data())
@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_pipelined_requests_split_anywhere_come_out_replaced_with_bodies_untouched(
    data: st.DataObject,
) -> None:
    secret = data.draw(secrets())
    matcher = PlaceholderMatcher([secret])
    drawn = data.draw(st.lists(requests(secret), min_size=1, max_size=4))
    stream = b"\r\n".join(sent for sent, _ in drawn)  # CRLFs between requests are allowed
    expected = b"".join(out for _, out in drawn)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    sink = Collected()
    rewrite = rewriter(matcher, secret)

    async def main() -> None:
        source = Buffered(Pieces(split(stream, cuts)))
        assert await relay_requests(source, sink, rewrite) is None

    trio.run(main)
    assert bytes(sink.data) == expected


def test_a_refused_request_sends_nothing_of_itself() -> None:
    scoped, other = two_secrets()
    matcher = PlaceholderMatcher([scoped, other])
    first = write_head("GET /ok HTTP/1.1", (("Host", "api.github.com"),))
    second = write_head(f"GET /{other.placeholder} HTTP/1.1", (("Host", "api.github.com"),))
    sink = Collected()

    async def main() -> None:
        source = Buffered(Pieces([first + second[:10], second[10:]]))
        with pytest.raises(HttpError) as caught:
            await relay_requests(source, sink, rewriter(matcher, scoped))
        assert caught.value.status == 403
        assert "OTHER" in caught.value.reason

    trio.run(main)
    assert bytes(sink.data) == first


def test_an_upgrade_request_ends_the_request_stream_after_its_head() -> None:
    scoped, _ = two_secrets()
    head = write_head("GET /ws HTTP/1.1", (("Host", "api.github.com"), ("Upgrade", "websocket")))
    sink = Collected()

    async def main() -> None:
        source = Buffered(Pieces([head + b"\x81\x05frame"]))
        upgraded = await relay_requests(
            source, sink, rewriter(PlaceholderMatcher([scoped]), scoped)
        )
        assert upgraded is not None
        assert upgraded.target == "/ws"
        assert bytes(source.buffer) == b"\x81\x05frame"  # left for the tunnel

    trio.run(main)
    assert bytes(sink.data) == head


# ---------------------------------------------------------------------------------------------
# Responses: values turned back into placeholders, as a stream


def spell(text: str, forms: Sequence[int]) -> bytes:
    """``text`` with its special characters spelled as a response may: raw, %XX, %xx,
    \\u00XX or \\u00xx (JSON), chosen in turn from ``forms``."""
    out = []
    specials = 0
    for c in text:
        if c in ALNUM:
            out.append(c)
            continue
        form = forms[specials % len(forms)]
        specials += 1
        code = ord(c)
        out.append([c, f"%{code:02X}", f"%{code:02x}", f"\\u{code:04X}", f"\\u{code:04x}"][form])
    return "".join(out).encode()


FORMS = st.lists(st.integers(0, 4), min_size=1, max_size=5)


@given(data=st.data())
def test_the_streaming_replacer_equals_masking_the_whole_stream_for_any_chunking(
    data: st.DataObject,
) -> None:
    secret = data.draw(secrets())
    mask = ResponseMask((secret,))
    value = spell(secret.value, data.draw(FORMS))
    parts = data.draw(
        st.lists(
            st.one_of(
                st.binary(max_size=20),
                st.just(value),
                st.just(value[:-1]),
                st.just(secret.placeholder.encode()),
                st.just(value[1:]),
            )
        )
    )
    stream = b"".join(parts)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    replacer = StreamingReplacer(mask)
    out = b""
    for piece in split(stream, cuts):
        out += replacer.feed(piece)
        assert replacer.holding < mask.longest
    out += replacer.flush()
    assert out == mask.apply(stream)


@given(data=st.data())
def test_a_value_is_masked_in_whatever_mix_of_spellings_it_comes(data: st.DataObject) -> None:
    secret = data.draw(secrets())
    forms = data.draw(FORMS)
    before, after = data.draw(FILLER).encode(), data.draw(FILLER).encode()
    masked = ResponseMask((secret,)).apply(before + spell(secret.value, forms) + after)
    assert masked == before + spell(secret.placeholder, forms) + after


@given(data=st.data())
def test_the_hold_back_does_not_depend_on_the_content(data: st.DataObject) -> None:
    """What a feed gives out depends only on how many bytes came, unless a value was masked:
    a tail held back only while it may become the value would tell the client, by where the
    records it receives end, whether its guess was a prefix of the value."""
    secret = data.draw(secrets())
    value = secret.value.encode()
    stream = b"".join(
        data.draw(st.lists(st.one_of(st.binary(max_size=12), st.just(value[:-1])), max_size=6))
    )
    mask = ResponseMask((secret,))
    assume(mask.apply(stream) == stream)
    replacer = StreamingReplacer(mask)
    fed = given_out = 0
    for piece in split(stream, data.draw(st.lists(st.integers(0, len(stream)), max_size=8))):
        given_out += len(replacer.feed(piece))
        fed += len(piece)
        assert given_out == max(0, fed - (mask.longest - 1))


def test_a_recorded_basic_blob_is_masked_back_to_the_clients() -> None:
    secret = InjectedSecret("T", "ab/cd+ef=gh12", "zz/yy+xx=ww34", ("api.example.com",))
    mask = ResponseMask((secret,))
    sent = base64.b64encode(b"u:" + secret.value.encode()).decode()
    written = base64.b64encode(b"u:" + secret.placeholder.encode()).decode()
    mask.record(sent, written)
    assert mask.apply(f"echo: Basic {sent}!".encode()) == f"echo: Basic {written}!".encode()
    assert secret.value not in repr(mask)
    assert secret.value not in repr(StreamingReplacer(mask))


@st.composite
def chunked_bodies(draw: st.DrawFn, value: bytes) -> tuple[list[bytes], list[bytes], bytes]:
    """(chunk data, chunk-size lines, trailers) of a chunked body holding ``value`` across
    chunk boundaries."""
    payload = b"".join(
        draw(st.lists(st.one_of(st.binary(max_size=12), st.just(value)), min_size=1))
    )
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(payload) - 1)), max_size=6))))
    chunks = [c for c in split(payload, cuts) if c] if payload else []
    lines = [
        f"{len(chunk):x}".encode() + draw(st.sampled_from([b"", b";ext=" + value])) + b"\r\n"
        for chunk in chunks
    ]
    trailers = draw(st.sampled_from([b"", b"X-T: " + value + b"\r\n"]))
    return chunks, lines, trailers


def frame(chunks: Sequence[bytes], lines: Sequence[bytes], trailers: bytes) -> bytes:
    body = b"".join(line + chunk + b"\r\n" for line, chunk in zip(lines, chunks, strict=True))
    return body + b"0\r\n" + trailers + b"\r\n"


@given(data=st.data())
@settings(deadline=None)
def test_a_chunked_response_keeps_its_sizes_with_values_replaced_and_no_extension_or_trailer(
    data: st.DataObject,
) -> None:
    secret = data.draw(secrets())
    value = secret.value.encode()
    chunks, lines, trailers = data.draw(chunked_bodies(value))
    sent = frame(chunks, lines, trailers)
    mask = ResponseMask((secret,))
    replaced = mask.apply(b"".join(chunks))
    sizes = [len(chunk) for chunk in chunks]
    offsets = [sum(sizes[:index]) for index in range(len(sizes) + 1)]
    expected = frame(
        [replaced[a:b] for a, b in itertools.pairwise(offsets)],
        [f"{size:x}\r\n".encode() for size in sizes],
        b"",
    )
    cuts = data.draw(st.lists(st.integers(0, len(sent)), max_size=10))
    sink = Collected()
    counted: list[int] = []

    async def main() -> None:
        source = Buffered(Pieces([*split(sent, cuts), b"after"]))
        replacer = StreamingReplacer(mask)
        await relay_masked(source, sink, Body(Framing.CHUNKED), counted.append, replacer)
        assert await source.stream.receive_some() == b"after" or bytes(source.buffer) == b"after"

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert bytes(sink.data) == expected
    assert sum(counted) == len(sent)


def test_a_body_that_pauses_gets_what_was_held_back_after_a_fixed_time() -> None:
    """An event stream's last event is not kept waiting for the next one: after
    PAUSE_FLUSH_SECONDS without data, the held bytes go out (whatever they are)."""
    secret = InjectedSecret("T", "ghp_secretvalue1", "ghp_placeholder1", ("api.example.com",))
    sink = Collected()

    async def main() -> None:
        send, receive = trio.testing.memory_stream_pair()
        source = Buffered(receive)
        replacer = StreamingReplacer(ResponseMask((secret,)))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                relay_masked, source, sink, Body(Framing.UNTIL_CLOSE), lambda _: None, replacer
            )
            await send.send_all(b"data: event\n\n")
            await trio.sleep(PAUSE_FLUSH_SECONDS / 2)
            assert bytes(sink.data) == b""  # shorter than the hold-back
            await trio.sleep(PAUSE_FLUSH_SECONDS)
            assert bytes(sink.data) == b"data: event\n\n"
            await send.aclose()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
