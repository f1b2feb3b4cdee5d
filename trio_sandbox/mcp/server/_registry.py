"""What a server offers, as registered by its owner: tools (validated against their input
schemas on first use), resources, templates, prompts, completions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import attrs

from ..protocol._messages import JsonObject
from ..protocol._types import CallToolResult, Content, GetPromptResult, ResourceContents, Tool

if TYPE_CHECKING:
    from ._context import RequestContext

ToolReturn: TypeAlias = CallToolResult | str | Content | Sequence[Content]
ToolHandler: TypeAlias = Callable[[dict[str, Any], "RequestContext"], Awaitable[ToolReturn]]
ResourceReader: TypeAlias = Callable[[str, "RequestContext"], Awaitable[Sequence[ResourceContents]]]
TemplateReader: TypeAlias = Callable[
    [str, dict[str, str], "RequestContext"], Awaitable[Sequence[ResourceContents]]
]
PromptRenderer: TypeAlias = Callable[[dict[str, str], "RequestContext"], Awaitable[GetPromptResult]]
CompletionHandler: TypeAlias = Callable[
    [JsonObject, JsonObject, JsonObject | None, "RequestContext"], Awaitable[Sequence[str]]
]


@attrs.define(eq=False)
class RegisteredTool:
    tool: Tool
    handler: ToolHandler
    # The input schema's jsonschema validator, compiled on the first call: importing jsonschema
    # and compiling every schema would otherwise delay a server's start.
    _validator: Any = None

    def validate(self, arguments: dict[str, Any]) -> str | None:
        """The first schema violation, phrased for a model to act on, or None."""
        import jsonschema.exceptions

        if self._validator is None:
            self._validator = _validator_for(self.tool.input_schema)
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(arguments))
        if error is None:
            return None
        where = "/".join(str(part) for part in error.absolute_path)
        return f"invalid arguments for tool {self.tool.name!r}" + (
            f" at {where!r}: {error.message}" if where else f": {error.message}"
        )


def _validator_for(schema: Mapping[str, Any]) -> Any:
    import jsonschema
    import jsonschema.exceptions

    validator_class = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft202012Validator
    )
    try:
        validator_class.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise ValueError(f"invalid inputSchema: {exc.message}") from None
    return validator_class(schema)


def normalize_tool_return(value: ToolReturn) -> CallToolResult:
    if isinstance(value, CallToolResult):
        return value
    if isinstance(value, str):
        return CallToolResult.text(value)
    if isinstance(value, (list, tuple)):
        return CallToolResult(content=tuple(value))
    return CallToolResult(content=(cast(Content, value),))
