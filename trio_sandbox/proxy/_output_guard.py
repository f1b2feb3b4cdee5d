"""What stands between the upstreams and the clients: secret redaction and large outputs.

Every message the proxy's server sends a client (results, errors, notifications, requests such
as sampling and elicitation, listings, the proxy's own resources) passes :meth:`OutputGuard.
outgoing` once, at the one place the server lets messages leave (``McpServer.
set_outgoing_filter``): each of its strings, keys included, has its secrets replaced by
placeholders (``[REDACTED_SECRET:<rule>:<id>]``), and base64 blobs are decoded and scanned too.

A placeholder is restored (in a later call's arguments) only towards the source whose message
held its value: the upstream a request was routed to (a per-session sandbox in ephemeral mode,
see :attr:`Source.key`), never another. What the proxy says itself, and merged listings, belong
to no source: their placeholders are never restored. A placeholder written by an upstream (forged
or seen) gives it nothing: placeholders are never taken for values. ``redact = false`` on an
upstream turns the rules off for what it sends; values the host knows are secret (secret
environment variables, generated passwords, values found before) are redacted whatever the
source. One redactor serves the whole proxy, so a value keeps one placeholder for the proxy's
life; the map lives in this process's memory only.

A tool result whose text is over ``max_lines`` or ``max_bytes`` (after redaction) reaches the
client as a tail preview plus a ``resource_link`` to the whole text, which ``resources/read``
of that URI returns from a bounded in-memory store (oldest outputs dropped first), to the session
that made it only.
"""

from __future__ import annotations

import base64
import binascii
import collections
import logging
import secrets
import weakref
from typing import Any, Final

import attrs
import trio

from ..mcp import (
    INTERNAL_ERROR,
    RESOURCE_NOT_FOUND,
    CallToolResult,
    ErrorObject,
    ErrorResponse,
    JsonObject,
    McpError,
    Message,
    Notification,
    Request,
    RequestContext,
    ResourceContents,
    ResourceLink,
    Response,
    TextContent,
)
from ..mcp.lowlevel import has_resource_links
from ..observe import CallObservation, Observer
from ..redact import (
    JsonValue,
    KnownSecretTooShort,
    RedactionError,
    SecretRedactor,
    default_rules,
    default_rules_loaded,
)

logger = logging.getLogger("trio_sandbox.proxy")

OUTPUT_URI_PREFIX: Final = "trio-sandbox://output/"
# The longest free text (a name, a reason) an audit record or a span keeps.
MAX_RECORD_TEXT: Final = 1024
# Arguments this small are redacted for a record at once, larger ones in steps.
SMALL_RECORD_JSON: Final = 16 * 1024
# Tools whose whole result is a secret by construction: a bare password matches no rule.
KNOWN_SECRET_TOOLS: Final = frozenset({"generate_password"})


@attrs.frozen(kw_only=True)
class OutputLimits:
    """When a result is large, how much of it the client sees, and how much is kept."""

    max_lines: int = 300
    max_bytes: int = 64 * 1024
    # The tail preview of a large result (never more than the thresholds above).
    preview_lines: int = 50
    preview_bytes: int = 8 * 1024
    # The store of whole outputs, oldest dropped first.
    max_outputs: int = 64
    max_stored_bytes: int = 64 * 1024 * 1024

    def __attrs_post_init__(self) -> None:
        for name, value in attrs.asdict(self).items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, not {value!r}")


@attrs.frozen
class Source:
    """Where a message the proxy sends comes from: the upstream a request was routed to."""

    # Who may have the placeholders of this source's values restored: the upstream's name, or
    # one per-session sandbox's (see ``Upstream.source_key``).
    key: str
    # False: the upstream's user opted out of rule-based redaction (``redact = false``).
    redact: bool = True
    # The tool called, for a tools/call.
    tool: str | None = None


@attrs.frozen
class _Stored:
    text: str
    size: int  # UTF-8 bytes
    # Who made it (``_owner``): a downstream session, or a session-less client's identity (None:
    # clients no face authenticated: stdio, the embedder's own calls, a plain-HTTP face).
    session: str | None


@attrs.define(eq=False)
class OutputStore:
    """Whole outputs by URI, bounded in count and bytes; gone with the proxy."""

    limits: OutputLimits
    _outputs: collections.OrderedDict[str, _Stored] = attrs.field(factory=collections.OrderedDict)
    _bytes: int = 0

    def add(self, text: str, size: int, session: str | None = None) -> str:
        """Keep ``text`` (``size`` bytes in UTF-8, as the caller measured it) for ``session``;
        its URI."""
        uri = f"{OUTPUT_URI_PREFIX}{secrets.token_hex(8)}"
        self._outputs[uri] = _Stored(text, size, session)
        self._bytes += size
        while len(self._outputs) > 1 and (
            len(self._outputs) > self.limits.max_outputs
            or self._bytes > self.limits.max_stored_bytes
        ):
            _, dropped = self._outputs.popitem(last=False)
            self._bytes -= dropped.size
        return uri

    def get(self, uri: str, session: str | None = None) -> str | None:
        """The output at ``uri``; None when there is none. Raises :class:`McpError` when it was
        made in another session than ``session``."""
        stored = self._outputs.get(uri)
        if stored is None:
            return None
        if stored.session != session:
            raise McpError(
                RESOURCE_NOT_FOUND,
                f"output {uri} was made by a call of another session: a stored output is"
                " readable only from the session whose call made it",
                {"uri": uri},
            )
        return stored.text


def _text_size(text: str) -> tuple[int, int]:
    return text.count("\n") + (0 if text.endswith("\n") or not text else 1), len(text.encode())


def tail_preview(text: str, max_lines: int, max_bytes: int) -> str:
    """The last whole lines of ``text`` within both bounds (at least the end of the last line,
    cut at a character, when even that is longer than ``max_bytes``)."""
    # Only the end can be kept: a kept line has at most max_bytes characters, and the first
    # piece of the last max_bytes + 1 (a part of a line, or the "\n" of a "\r\n" cut in two)
    # never is (all of them would fit), so splitting those finds the lines splitting all would.
    lines = text[-(max_bytes + 1) :].splitlines(keepends=True)
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        line_size = len(line.encode())
        if len(kept) >= max_lines or size + line_size > max_bytes:
            break
        kept.append(line)
        size += line_size
    if not kept and lines:
        tail = lines[-1].encode()[-max_bytes:]
        return tail.decode("utf-8", "ignore")
    return "".join(reversed(kept))


@attrs.define(eq=False)
class OutputGuard:
    """One per proxy: redaction of everything sent to clients (rules compiled on first use, off
    the event loop), which source each request's messages come from, and the store of large
    outputs."""

    limits: OutputLimits = attrs.field(factory=OutputLimits)
    # Told of placeholders made and outputs shortened; redacts its records with this guard.
    observer: Observer = attrs.field(factory=Observer)
    store: OutputStore = attrs.field(init=False)
    _redactor: SecretRedactor | None = None
    _making: trio.Lock = attrs.field(factory=trio.Lock)
    _known: list[tuple[str, str, str | None]] = attrs.field(factory=list)
    _sources: weakref.WeakKeyDictionary[RequestContext, Source] = attrs.field(
        factory=weakref.WeakKeyDictionary
    )
    # The calls being observed, by request: their results' redaction is a span of theirs.
    _observed: weakref.WeakKeyDictionary[RequestContext, CallObservation] = attrs.field(
        factory=weakref.WeakKeyDictionary
    )

    def __attrs_post_init__(self) -> None:
        self.store = OutputStore(self.limits)
        self.observer.redact_text = self.redact_record_text
        self.observer.redact_json = self.redact_record_json
        self.observer.redact_small_json = self.redact_record_small_json

    async def redactor(self) -> SecretRedactor:
        """The redactor, made on first use, in a worker thread: loading the rules and compiling
        the literal search takes about 15 ms, which the loop need not wait out."""
        if self._redactor is not None:
            return self._redactor
        async with self._making:
            if self._redactor is None:
                if default_rules_loaded():
                    redactor = _make_redactor()
                else:
                    redactor = await trio.to_thread.run_sync(_make_redactor)
                if self._redactor is None:  # a record may have made one meanwhile: it stays
                    self._adopt(redactor)
            assert self._redactor is not None
            return self._redactor

    def _adopt(self, redactor: SecretRedactor) -> None:
        for value, rule, source in self._known:
            redactor.add_known_secret(value, rule, source=source)
        redactor.on_new_placeholder = self.observer.placeholder_made
        self._redactor = redactor

    # --- what the audit log, the metrics and the traces are told ------------------------------

    def redact_record_text(self, text: str) -> str:
        """``text`` as a record may hold it: redacted (every rule, every known value), then cut
        to :data:`MAX_RECORD_TEXT` characters. Made for short texts (names, reasons): it runs in
        the caller's thread, and makes the redactor there if no message has yet."""
        if self._redactor is None:
            self._adopt(_make_redactor())
        assert self._redactor is not None
        try:
            redacted = self._redactor.redact_text(text)
        except RedactionError as error:
            return f"[withheld: {error}]"
        if len(redacted) > MAX_RECORD_TEXT:
            return f"{redacted[:MAX_RECORD_TEXT]}...[{len(redacted) - MAX_RECORD_TEXT} more]"
        return redacted

    async def redact_record_json(self, value: Any) -> Any:
        """A call's arguments as a record may hold them: every string redacted (placeholders a
        client sent stay placeholders: records take arguments before they are restored)."""
        redactor = self._redactor or await self.redactor()
        small = self.redact_record_small_json(value)
        if small is not None:
            return small
        try:
            return await redactor.redact_json_async(value)
        except (RedactionError, TypeError) as error:
            return _arguments_withheld(error)

    def redact_record_small_json(self, value: Any) -> Any | None:
        """:meth:`redact_record_json` at once, when ``value``'s strings are small enough to scan
        without yielding and the redactor is made; else None."""
        if self._redactor is None:
            return None
        try:
            return self._redactor.redact_small_json(value, SMALL_RECORD_JSON)
        except (RedactionError, TypeError) as error:
            return _arguments_withheld(error)

    def observe(self, ctx: RequestContext, observation: CallObservation) -> None:
        """Redacting ``ctx``'s result is a span of ``observation``'s."""
        self._observed[ctx] = observation

    def add_known_secret(self, value: str, rule: str, *, source: str | None = None) -> None:
        """Redact ``value`` wherever it appears (a secret environment variable, a password);
        restore it towards ``source`` only. Raises ``KnownSecretTooShort`` for a value too short
        to be redacted."""
        if self._redactor is not None:
            self._redactor.add_known_secret(value, rule, source=source)
        else:
            SecretRedactor.check_known_secret(value, rule)
            self._known.append((value, rule, source))

    def attribute(self, ctx: RequestContext, source: Source) -> None:
        """What ``ctx``'s request sends its client from now on comes from ``source``."""
        self._sources[ctx] = source

    def restore_arguments(self, arguments: JsonObject, source: str) -> JsonObject:
        """Placeholders of values ``source`` showed, in every string of ``arguments``, back to
        values; every other placeholder stays as it is."""
        if self._redactor is None:
            return arguments  # nothing was issued yet
        restored = self._redactor.restore_json(arguments, source=source)
        assert isinstance(restored, dict)
        return restored

    def read_output(self, uri: str, ctx: RequestContext) -> JsonObject | None:
        """``resources/read`` of a stored output; None if ``uri`` is not (or no longer) one.
        Raises :class:`McpError` for an output another session made."""
        text = self.store.get(uri, _owner(ctx))
        if text is None:
            return None
        return {"contents": [ResourceContents(uri, text, mime_type="text/plain").to_json()]}

    # --- the outgoing filter ----------------------------------------------------------------

    async def outgoing(self, message: Message, ctx: RequestContext | None) -> Message | None:
        """``message`` as the client may see it (the proxy server's outgoing filter)."""
        source = self._sources.get(ctx) if ctx is not None else None
        observation = self._observed.get(ctx) if ctx is not None else None
        try:
            if observation is not None and isinstance(message, Response | ErrorResponse):
                with observation.child("redact"):
                    return await self._redacted(message, ctx, source)
            return await self._redacted(message, ctx, source)
        except (RedactionError, TypeError) as error:  # TypeError: not JSON, cannot be walked
            return _withheld_message(message, ctx, source, str(error))

    async def _redacted(
        self, message: Message, ctx: RequestContext | None, source: Source | None
    ) -> Message | None:
        redactor = await self.redactor()
        key = source.key if source is not None else None
        rules = source.redact if source is not None else True

        async def redact(value: Any) -> Any:
            redacted = await redactor.redact_json_async(value, source=key, rules=rules)
            return await _redact_blobs(redactor, redacted, key, rules)

        if isinstance(message, Response):
            result = message.result
            tool_result = _is_tool_result(message, ctx, source)
            if tool_result and source is not None:
                refused = self._register_known_values(redactor, source, result)
                if refused is not None:
                    return Response(message.id, _withheld(refused))
            result = await redact(result)
            if tool_result and ctx is not None:
                result = self._shorten(result, ctx)
            return Response(message.id, result)
        if isinstance(message, ErrorResponse):
            error = message.error
            parts = await redact({"message": error.message, "data": error.data})
            return ErrorResponse(
                message.id, ErrorObject(error.code, parts["message"], parts["data"])
            )
        if isinstance(message, Notification):
            return Notification(message.method, await redact(message.params))
        return Request(message.id, message.method, await redact(message.params))

    def _register_known_values(
        self, redactor: SecretRedactor, source: Source, result: JsonObject
    ) -> str | None:
        """Register a generated password as a known secret; why the result is refused, if."""
        content = result.get("content")
        if source.tool not in KNOWN_SECRET_TOOLS or result.get("isError"):
            return None
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and isinstance(block.get("text"), str):
                try:
                    redactor.add_known_secret(block["text"].strip(), "password", source=source.key)
                except KnownSecretTooShort as exc:
                    return f"{source.tool} returned a value that cannot be kept secret: {exc}"
        return None

    def _shorten(self, result: JsonObject, ctx: RequestContext) -> JsonObject:
        content = result.get("content")
        if not isinstance(content, list):
            return result
        texts = [b["text"] for b in content if _is_text(b)]
        # Blocks joined as lines: a newline between two only where the first lacks one.
        whole = "".join(t if t.endswith("\n") else t + "\n" for t in texts[:-1]) + "".join(
            texts[-1:]
        )
        lines, size = _text_size(whole)
        if lines <= self.limits.max_lines and size <= self.limits.max_bytes:
            return result
        uri = self.store.add(whole, size, _owner(ctx))
        observation = self._observed.get(ctx)
        self.observer.output_shortened(observation.upstream if observation is not None else None)
        limits = self.limits
        tail = tail_preview(
            whole,
            min(limits.preview_lines, limits.max_lines),
            min(limits.preview_bytes, limits.max_bytes),
        )
        tail_lines, tail_size = _text_size(tail)
        note = (
            f"[output shortened: {lines} lines, {size} bytes; showing the last {tail_lines}"
            f" lines ({tail_size} bytes). The whole output: resources/read {uri}]\n"
        )
        shortened: list[Any] = [TextContent(note + tail).to_json()]
        shortened += [block for block in content if not _is_text(block)]
        if has_resource_links(ctx.protocol_version):
            link = ResourceLink(
                uri,
                uri.removeprefix(OUTPUT_URI_PREFIX),
                description=f"the whole output: {lines} lines, {size} bytes",
                mime_type="text/plain",
            )
            shortened.append(link.to_json())
        return {**result, "content": shortened}


def _owner(ctx: RequestContext) -> str | None:
    """Whose stored outputs ``ctx``'s request may read: its session's, else its client's."""
    if ctx.session.session_id is not None:
        return ctx.session.session_id
    identity = ctx.client_identity
    return f"client {identity.key}" if identity is not None else None


def _arguments_withheld(error: Exception) -> dict[str, str]:
    return {"withheld": f"the arguments could not be checked for secrets ({error})"}


def _make_redactor() -> SecretRedactor:
    return SecretRedactor(default_rules())  # the rules, and the redactor's literal search


def _is_text(block: object) -> bool:
    return isinstance(block, dict) and block.get("type") == "text" and "text" in block


def _is_tool_result(message: Response, ctx: RequestContext | None, source: Source | None) -> bool:
    """Whether ``message`` answers a tools/call routed to an upstream with its tool result."""
    return (
        ctx is not None
        and source is not None
        and ctx.method == "tools/call"
        and message.id == ctx.request_id
        and isinstance(message.result.get("content"), list)
    )


async def _redact_blobs(
    redactor: SecretRedactor, value: JsonValue, source: str | None, rules: bool
) -> JsonValue:
    """Base64 content (a resource's ``blob``, an image's or audio's ``data``) decoded and
    scanned as text (UTF-8, else Latin-1 so that any bytes are text), re-encoded only when a
    secret was cut out of it: a client may show the model what the bytes say."""
    if isinstance(value, list):
        return [await _redact_blobs(redactor, item, source, rules) for item in value]
    if not isinstance(value, dict):
        return value
    copy = {key: await _redact_blobs(redactor, item, source, rules) for key, item in value.items()}
    for key in ("blob", "data"):
        encoded = copy.get(key)
        if not isinstance(encoded, str) or (key == "data" and "mimeType" not in copy):
            continue
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        try:
            text, encoding = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = raw.decode("latin-1"), "latin-1"
        redacted = await redactor.redact_text_async(text, source=source, rules=rules)
        if redacted != text:
            copy[key] = base64.b64encode(redacted.encode(encoding, "replace")).decode("ascii")
    return copy


def _withheld(reason: str) -> JsonObject:
    message = f"The output was withheld: it could not be checked for secrets ({reason})."
    return CallToolResult.error(message).to_json()


def _withheld_message(
    message: Message, ctx: RequestContext | None, source: Source | None, reason: str
) -> Message | None:
    """What goes instead of a message that could not be checked: never the message."""
    logger.warning("a message to a client was withheld: %s", reason)
    if isinstance(message, Response):
        if _is_tool_result(message, ctx, source):
            return Response(message.id, _withheld(reason))
        error = McpError(
            INTERNAL_ERROR,
            f"the answer was withheld: it could not be checked for secrets ({reason})",
        )
        return error.response_for(message.id)
    if isinstance(message, ErrorResponse):
        error = McpError(
            message.error.code,
            f"the error was withheld: it could not be checked for secrets ({reason})",
        )
        return error.response_for(message.id)
    if isinstance(message, Request):
        raise McpError(
            INTERNAL_ERROR, f"{message.method} was not sent: it could not be checked for secrets"
        )
    return None  # a notification: dropped
