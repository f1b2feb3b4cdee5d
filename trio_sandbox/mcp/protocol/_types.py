"""MCP values that programs build and read: tools, content, results, resources, prompts.

Each type turns into its wire form with ``to_json()`` and back with ``from_json()``. Members that
this version does not know are kept in ``extra`` so that a proxy passes them on unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import attrs

from ._errors import McpError
from ._messages import INVALID_PARAMS, JsonObject

_EMPTY: Mapping[str, Any] = {}


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return dict(value) if value else _EMPTY


def _require(raw: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind):
        raise McpError(INVALID_PARAMS, f"{what}: member {key!r} is missing or has the wrong type")
    return value


def _optional(raw: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = raw.get(key)
    if value is not None and not isinstance(value, kind):
        raise McpError(INVALID_PARAMS, f"{what}: member {key!r} has the wrong type")
    return value


def _rest(raw: Mapping[str, Any], known: frozenset[str]) -> Mapping[str, Any]:
    return {k: v for k, v in raw.items() if k not in known}


def _put(out: JsonObject, key: str, value: Any) -> None:
    if value is not None:
        out[key] = value


@attrs.frozen
class Implementation:
    name: str
    version: str
    title: str | None = None

    def to_json(self) -> JsonObject:
        out: JsonObject = {"name": self.name, "version": self.version}
        _put(out, "title", self.title)
        return out


# --- content -------------------------------------------------------------------------------


@attrs.frozen
class TextContent:
    text: str
    annotations: Mapping[str, Any] | None = None
    meta: Mapping[str, Any] | None = None

    def to_json(self) -> JsonObject:
        out: JsonObject = {"type": "text", "text": self.text}
        _put(out, "annotations", self.annotations)
        _put(out, "_meta", self.meta)
        return out


@attrs.frozen
class ImageContent:
    data: str  # base64
    mime_type: str
    annotations: Mapping[str, Any] | None = None
    meta: Mapping[str, Any] | None = None

    def to_json(self) -> JsonObject:
        out: JsonObject = {"type": "image", "data": self.data, "mimeType": self.mime_type}
        _put(out, "annotations", self.annotations)
        _put(out, "_meta", self.meta)
        return out


@attrs.frozen
class AudioContent:
    data: str  # base64
    mime_type: str
    annotations: Mapping[str, Any] | None = None
    meta: Mapping[str, Any] | None = None

    def to_json(self) -> JsonObject:
        out: JsonObject = {"type": "audio", "data": self.data, "mimeType": self.mime_type}
        _put(out, "annotations", self.annotations)
        _put(out, "_meta", self.meta)
        return out


@attrs.frozen
class ResourceContents:
    """The contents of a resource: ``text`` or base64 ``blob``, never both."""

    uri: str
    text: str | None = None
    blob: str | None = None
    mime_type: str | None = None
    meta: Mapping[str, Any] | None = None

    def to_json(self) -> JsonObject:
        out: JsonObject = {"uri": self.uri}
        _put(out, "mimeType", self.mime_type)
        if self.blob is not None:
            out["blob"] = self.blob
        else:
            out["text"] = self.text if self.text is not None else ""
        _put(out, "_meta", self.meta)
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ResourceContents:
        what = "resource contents"
        return cls(
            uri=_require(raw, "uri", str, what),
            text=_optional(raw, "text", str, what),
            blob=_optional(raw, "blob", str, what),
            mime_type=_optional(raw, "mimeType", str, what),
            meta=_optional(raw, "_meta", dict, what),
        )


@attrs.frozen
class EmbeddedResource:
    resource: ResourceContents
    annotations: Mapping[str, Any] | None = None
    meta: Mapping[str, Any] | None = None

    def to_json(self) -> JsonObject:
        out: JsonObject = {"type": "resource", "resource": self.resource.to_json()}
        _put(out, "annotations", self.annotations)
        _put(out, "_meta", self.meta)
        return out


@attrs.frozen
class ResourceLink:
    uri: str
    name: str
    description: str | None = None
    mime_type: str | None = None
    annotations: Mapping[str, Any] | None = None
    meta: Mapping[str, Any] | None = None

    def to_json(self) -> JsonObject:
        out: JsonObject = {"type": "resource_link", "uri": self.uri, "name": self.name}
        _put(out, "description", self.description)
        _put(out, "mimeType", self.mime_type)
        _put(out, "annotations", self.annotations)
        _put(out, "_meta", self.meta)
        return out


@attrs.frozen
class OtherContent:
    """Content of a type this version does not know; kept as it came."""

    raw: Mapping[str, Any]

    def to_json(self) -> JsonObject:
        return dict(self.raw)


Content: TypeAlias = (
    TextContent | ImageContent | AudioContent | EmbeddedResource | ResourceLink | OtherContent
)


def content_from_json(raw: object) -> Content:
    if not isinstance(raw, dict):
        raise McpError(INVALID_PARAMS, "content items must be objects")
    what = "content"
    kind = raw.get("type")
    annotations = _optional(raw, "annotations", dict, what)
    meta = _optional(raw, "_meta", dict, what)
    if kind == "text":
        return TextContent(_require(raw, "text", str, what), annotations, meta)
    if kind == "image":
        return ImageContent(
            _require(raw, "data", str, what),
            _require(raw, "mimeType", str, what),
            annotations,
            meta,
        )
    if kind == "audio":
        return AudioContent(
            _require(raw, "data", str, what),
            _require(raw, "mimeType", str, what),
            annotations,
            meta,
        )
    if kind == "resource":
        resource = ResourceContents.from_json(_require(raw, "resource", dict, what))
        return EmbeddedResource(resource, annotations, meta)
    if kind == "resource_link":
        return ResourceLink(
            uri=_require(raw, "uri", str, what),
            name=_require(raw, "name", str, what),
            description=_optional(raw, "description", str, what),
            mime_type=_optional(raw, "mimeType", str, what),
            annotations=annotations,
            meta=meta,
        )
    if not isinstance(kind, str):
        raise McpError(INVALID_PARAMS, 'content items need a string "type"')
    return OtherContent(raw)


# --- tools ---------------------------------------------------------------------------------

_TOOL_KEYS = frozenset(
    {"name", "title", "description", "inputSchema", "outputSchema", "annotations", "_meta"}
)


@attrs.frozen
class Tool:
    name: str
    input_schema: Mapping[str, Any] = attrs.field(
        factory=lambda: {"type": "object", "properties": {}}
    )
    description: str | None = None
    title: str | None = None
    output_schema: Mapping[str, Any] | None = None
    annotations: Mapping[str, Any] | None = None
    meta: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = attrs.field(default=_EMPTY, converter=_frozen_mapping)

    def to_json(self) -> JsonObject:
        out: JsonObject = dict(self.extra)
        out["name"] = self.name
        _put(out, "title", self.title)
        _put(out, "description", self.description)
        out["inputSchema"] = self.input_schema
        _put(out, "outputSchema", self.output_schema)
        _put(out, "annotations", self.annotations)
        _put(out, "_meta", self.meta)
        return out

    @classmethod
    def from_json(cls, raw: object) -> Tool:
        if not isinstance(raw, dict):
            raise McpError(INVALID_PARAMS, "a tool must be an object")
        what = "tool"
        return cls(
            name=_require(raw, "name", str, what),
            input_schema=_require(raw, "inputSchema", dict, what),
            description=_optional(raw, "description", str, what),
            title=_optional(raw, "title", str, what),
            output_schema=_optional(raw, "outputSchema", dict, what),
            annotations=_optional(raw, "annotations", dict, what),
            meta=_optional(raw, "_meta", dict, what),
            extra=_rest(raw, _TOOL_KEYS),
        )


_RESULT_KEYS = frozenset({"content", "structuredContent", "isError", "_meta"})


@attrs.frozen
class CallToolResult:
    content: Sequence[Content] = ()
    structured_content: Mapping[str, Any] | None = None
    is_error: bool = False
    meta: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = attrs.field(default=_EMPTY, converter=_frozen_mapping)

    @classmethod
    def text(cls, text: str, *, is_error: bool = False) -> CallToolResult:
        return cls(content=(TextContent(text),), is_error=is_error)

    @classmethod
    def error(cls, message: str) -> CallToolResult:
        return cls(content=(TextContent(message),), is_error=True)

    @property
    def text_content(self) -> str:
        """All text items joined by newlines: what a person reading the result sees."""
        return "\n".join(item.text for item in self.content if isinstance(item, TextContent))

    def to_json(self) -> JsonObject:
        out: JsonObject = dict(self.extra)
        out["content"] = [item.to_json() for item in self.content]
        _put(out, "structuredContent", self.structured_content)
        if self.is_error:
            out["isError"] = True
        _put(out, "_meta", self.meta)
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> CallToolResult:
        what = "tool result"
        content = _optional(raw, "content", list, what) or []
        return cls(
            content=tuple(content_from_json(item) for item in content),
            structured_content=_optional(raw, "structuredContent", dict, what),
            is_error=bool(_optional(raw, "isError", bool, what)),
            meta=_optional(raw, "_meta", dict, what),
            extra=_rest(raw, _RESULT_KEYS),
        )


# --- resources and prompts -----------------------------------------------------------------

_RESOURCE_KEYS = frozenset({"uri", "name", "title", "description", "mimeType", "size", "_meta"})


@attrs.frozen
class Resource:
    uri: str
    name: str
    title: str | None = None
    description: str | None = None
    mime_type: str | None = None
    meta: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = attrs.field(default=_EMPTY, converter=_frozen_mapping)

    def to_json(self) -> JsonObject:
        out: JsonObject = dict(self.extra)
        out["uri"] = self.uri
        out["name"] = self.name
        _put(out, "title", self.title)
        _put(out, "description", self.description)
        _put(out, "mimeType", self.mime_type)
        _put(out, "_meta", self.meta)
        return out

    @classmethod
    def from_json(cls, raw: object) -> Resource:
        if not isinstance(raw, dict):
            raise McpError(INVALID_PARAMS, "a resource must be an object")
        what = "resource"
        return cls(
            uri=_require(raw, "uri", str, what),
            name=_require(raw, "name", str, what),
            title=_optional(raw, "title", str, what),
            description=_optional(raw, "description", str, what),
            mime_type=_optional(raw, "mimeType", str, what),
            meta=_optional(raw, "_meta", dict, what),
            extra=_rest(raw, _RESOURCE_KEYS),
        )


_TEMPLATE_KEYS = frozenset({"uriTemplate", "name", "title", "description", "mimeType", "_meta"})


@attrs.frozen
class ResourceTemplate:
    uri_template: str
    name: str
    title: str | None = None
    description: str | None = None
    mime_type: str | None = None
    meta: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = attrs.field(default=_EMPTY, converter=_frozen_mapping)

    def to_json(self) -> JsonObject:
        out: JsonObject = dict(self.extra)
        out["uriTemplate"] = self.uri_template
        out["name"] = self.name
        _put(out, "title", self.title)
        _put(out, "description", self.description)
        _put(out, "mimeType", self.mime_type)
        _put(out, "_meta", self.meta)
        return out

    @classmethod
    def from_json(cls, raw: object) -> ResourceTemplate:
        if not isinstance(raw, dict):
            raise McpError(INVALID_PARAMS, "a resource template must be an object")
        what = "resource template"
        return cls(
            uri_template=_require(raw, "uriTemplate", str, what),
            name=_require(raw, "name", str, what),
            title=_optional(raw, "title", str, what),
            description=_optional(raw, "description", str, what),
            mime_type=_optional(raw, "mimeType", str, what),
            meta=_optional(raw, "_meta", dict, what),
            extra=_rest(raw, _TEMPLATE_KEYS),
        )


@attrs.frozen
class PromptArgument:
    name: str
    description: str | None = None
    required: bool = False

    def to_json(self) -> JsonObject:
        out: JsonObject = {"name": self.name}
        _put(out, "description", self.description)
        if self.required:
            out["required"] = True
        return out


_PROMPT_KEYS = frozenset({"name", "title", "description", "arguments", "_meta"})


@attrs.frozen
class Prompt:
    name: str
    title: str | None = None
    description: str | None = None
    arguments: Sequence[PromptArgument] = ()
    meta: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = attrs.field(default=_EMPTY, converter=_frozen_mapping)

    def to_json(self) -> JsonObject:
        out: JsonObject = dict(self.extra)
        out["name"] = self.name
        _put(out, "title", self.title)
        _put(out, "description", self.description)
        if self.arguments:
            out["arguments"] = [argument.to_json() for argument in self.arguments]
        _put(out, "_meta", self.meta)
        return out

    @classmethod
    def from_json(cls, raw: object) -> Prompt:
        if not isinstance(raw, dict):
            raise McpError(INVALID_PARAMS, "a prompt must be an object")
        what = "prompt"
        arguments = _optional(raw, "arguments", list, what) or []
        return cls(
            name=_require(raw, "name", str, what),
            title=_optional(raw, "title", str, what),
            description=_optional(raw, "description", str, what),
            arguments=tuple(
                PromptArgument(
                    name=_require(item, "name", str, "prompt argument"),
                    description=_optional(item, "description", str, "prompt argument"),
                    required=bool(_optional(item, "required", bool, "prompt argument")),
                )
                for item in arguments
                if isinstance(item, dict)
            ),
            meta=_optional(raw, "_meta", dict, what),
            extra=_rest(raw, _PROMPT_KEYS),
        )


@attrs.frozen
class PromptMessage:
    role: str  # "user" or "assistant"
    content: Content

    def to_json(self) -> JsonObject:
        return {"role": self.role, "content": self.content.to_json()}


@attrs.frozen
class GetPromptResult:
    messages: Sequence[PromptMessage]
    description: str | None = None

    def to_json(self) -> JsonObject:
        out: JsonObject = {"messages": [message.to_json() for message in self.messages]}
        _put(out, "description", self.description)
        return out
