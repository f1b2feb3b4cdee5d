"""What stands between upstream results and the model: secret redaction and large outputs.

Tool results of a redacting upstream have their secrets replaced by placeholders
(``[REDACTED_SECRET:<rule>:<id>]``) in text content, embedded resources' text and every string
of ``structuredContent``; resource contents read through the proxy likewise. Placeholders in a
later call's arguments to a redacting upstream are restored to the real values before
forwarding, so a command can use a secret the model never saw. One redactor serves the whole
proxy, so a value keeps one placeholder for the proxy's life; the map lives in this process's
memory only.

A tool result whose text is over ``max_lines`` or ``max_bytes`` (after redaction) reaches the
client as a tail preview plus a ``resource_link`` to the whole text, which ``resources/read``
of that URI returns from a bounded in-memory store (oldest outputs dropped first).
"""

from __future__ import annotations

import collections
import logging
import secrets
from typing import Any, Final

import attrs
import trio

from ..mcp import JsonObject, has_resource_links
from ..redact import RedactionTimeout, SecretRedactor, default_rules, default_rules_loaded

logger = logging.getLogger("trio_sandbox.proxy")

OUTPUT_URI_PREFIX: Final = "trio-sandbox://output/"
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


@attrs.define(eq=False)
class OutputStore:
    """Whole outputs by URI, bounded in count and bytes; gone with the proxy."""

    limits: OutputLimits
    # URI -> (text, its size in UTF-8 bytes)
    _outputs: collections.OrderedDict[str, tuple[str, int]] = attrs.field(
        factory=collections.OrderedDict
    )
    _bytes: int = 0

    def add(self, text: str, size: int) -> str:
        """Keep ``text`` (``size`` bytes in UTF-8, as the caller measured it); its URI."""
        uri = f"{OUTPUT_URI_PREFIX}{secrets.token_hex(8)}"
        self._outputs[uri] = (text, size)
        self._bytes += size
        while len(self._outputs) > 1 and (
            len(self._outputs) > self.limits.max_outputs
            or self._bytes > self.limits.max_stored_bytes
        ):
            _, (_, dropped_size) = self._outputs.popitem(last=False)
            self._bytes -= dropped_size
        return uri

    def get(self, uri: str) -> str | None:
        stored = self._outputs.get(uri)
        return stored[0] if stored is not None else None


def _text_size(text: str) -> tuple[int, int]:
    return text.count("\n") + (0 if text.endswith("\n") or not text else 1), len(text.encode())


def tail_preview(text: str, max_lines: int, max_bytes: int) -> str:
    """The last whole lines of ``text`` within both bounds (at least the end of the last line,
    cut at a character, when even that is longer than ``max_bytes``)."""
    lines = text.splitlines(keepends=True)
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
    """One per proxy: redaction (rules compiled on first use, off the event loop) and the
    store of large outputs."""

    limits: OutputLimits = attrs.field(factory=OutputLimits)
    store: OutputStore = attrs.field(init=False)
    _redactor: SecretRedactor | None = None
    _making: trio.Lock = attrs.field(factory=trio.Lock)
    _known: list[tuple[str, str]] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        self.store = OutputStore(self.limits)

    async def redactor(self) -> SecretRedactor:
        """The redactor, made on first use: compiling the rules takes a few hundred ms."""
        async with self._making:
            if self._redactor is None:
                if default_rules_loaded():
                    redactor = _make_redactor()
                else:
                    redactor = await trio.to_thread.run_sync(_make_redactor)
                for value, rule in self._known:
                    redactor.add_known_secret(value, rule)
                self._redactor = redactor
            return self._redactor

    def add_known_secret(self, value: str, rule: str) -> None:
        """Redact ``value`` wherever it appears (a secret environment variable, a password)."""
        if self._redactor is not None:
            self._redactor.add_known_secret(value, rule)
        else:
            self._known.append((value, rule))

    def restore_arguments(self, arguments: JsonObject) -> JsonObject:
        """Placeholders this proxy issued, in every string of ``arguments``, back to values."""
        if self._redactor is None:
            return arguments  # nothing was issued yet
        restored = self._redactor.restore_json(arguments)
        assert isinstance(restored, dict)
        return restored

    async def tool_result(
        self, tool: str, result: JsonObject, *, redact: bool, protocol_version: str
    ) -> JsonObject:
        """``result`` of ``tool`` as the client may see it."""
        if redact:
            try:
                result = await self._redact_tool_result(tool, result)
            except RedactionTimeout as error:
                logger.warning("tool %r: %s", tool, error)
                return _withheld(str(error))
        return self._shorten(result, protocol_version)

    async def resource_result(self, result: JsonObject, *, redact: bool) -> JsonObject:
        if not redact:
            return result
        redactor = await self.redactor()
        contents = []
        for item in result.get("contents") or []:
            if isinstance(item, dict) and isinstance(item.get("text"), str):
                item = {**item, "text": await redactor.redact_text_async(item["text"])}
            contents.append(item)
        return {**result, "contents": contents}

    def read_output(self, uri: str) -> JsonObject | None:
        """``resources/read`` of a stored output; None if ``uri`` is not (or no longer) one."""
        text = self.store.get(uri)
        if text is None:
            return None
        return {"contents": [{"uri": uri, "mimeType": "text/plain", "text": text}]}

    async def _redact_tool_result(self, tool: str, result: JsonObject) -> JsonObject:
        redactor = await self.redactor()
        content = result.get("content")
        if tool in KNOWN_SECRET_TOOLS and not result.get("isError") and isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and isinstance(block.get("text"), str):
                    redactor.add_known_secret(block["text"].strip(), "password")
        redacted = dict(result)
        if isinstance(content, list):
            redacted["content"] = [await _redact_block(redactor, block) for block in content]
        structured = result.get("structuredContent")
        if structured is not None:
            redacted["structuredContent"] = await redactor.redact_json_async(structured)
        return redacted

    def _shorten(self, result: JsonObject, protocol_version: str) -> JsonObject:
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
        uri = self.store.add(whole, size)
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
        shortened: list[Any] = [{"type": "text", "text": note + tail}]
        shortened += [block for block in content if not _is_text(block)]
        if has_resource_links(protocol_version):
            shortened.append(
                {
                    "type": "resource_link",
                    "uri": uri,
                    "name": uri.removeprefix(OUTPUT_URI_PREFIX),
                    "description": f"the whole output: {lines} lines, {size} bytes",
                    "mimeType": "text/plain",
                }
            )
        return {**result, "content": shortened}


def _make_redactor() -> SecretRedactor:
    return SecretRedactor(default_rules())  # the rules, and the redactor's keyword index


def _is_text(block: object) -> bool:
    return isinstance(block, dict) and block.get("type") == "text" and "text" in block


async def _redact_block(redactor: SecretRedactor, block: Any) -> Any:
    """Text, and the text of an embedded resource; images and audio are left alone."""
    if not isinstance(block, dict):
        return block
    if _is_text(block) and isinstance(block["text"], str):
        return {**block, "text": await redactor.redact_text_async(block["text"])}
    resource = block.get("resource") if block.get("type") == "resource" else None
    if isinstance(resource, dict) and isinstance(resource.get("text"), str):
        text = await redactor.redact_text_async(resource["text"])
        return {**block, "resource": {**resource, "text": text}}
    return block


def _withheld(reason: str) -> JsonObject:
    return {
        "content": [
            {
                "type": "text",
                "text": f"The output was withheld: it could not be checked for secrets ({reason}).",
            }
        ],
        "isError": True,
    }
