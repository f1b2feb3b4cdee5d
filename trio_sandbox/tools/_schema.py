"""Pieces of JSON Schema shared by the tools' input schemas."""

from __future__ import annotations

from typing import Any

from ._limits import ToolLimits


def object_schema(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A closed object: unknown arguments are rejected rather than silently ignored."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    return schema


def timeout_property(limits: ToolLimits, what: str) -> dict[str, Any]:
    return {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": limits.max_command_timeout,
        "description": what,
    }


def path_property(what: str) -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": 1,
        "description": f"{what} Relative paths resolve against the server's working directory.",
    }
