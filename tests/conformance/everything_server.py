"""A server built on trio_sandbox.mcp with every fixture the official conformance suite probes.

Run: ``python tests/conformance/everything_server.py --port N`` (0 picks a free port); it prints
its endpoint URL on one line once it listens on 127.0.0.1, and serves both protocol eras on it.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from typing import Any, Final

import trio

from trio_sandbox.mcp import (
    AudioContent,
    BoundServer,
    CallToolResult,
    EmbeddedResource,
    GetPromptResult,
    HttpSettings,
    ImageContent,
    Implementation,
    InputRequest,
    McpHttpApp,
    McpServer,
    Prompt,
    PromptArgument,
    PromptMessage,
    RequestContext,
    Resource,
    ResourceContents,
    ResourceTemplate,
    TextContent,
    ToolReturn,
    serve_http,
)

PNG: Final = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8j"
    "x0gAAAABJRU5ErkJggg=="
)
WAV: Final = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="

JSON_SCHEMA_2020_12: Final = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}

SEP1034_SCHEMA: Final = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "User status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verification status", "default": True},
    },
    "required": [],
}


def _titled(values: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"const": const, "title": title} for const, title in values]


SEP1330_SCHEMA: Final = {
    "type": "object",
    "properties": {
        "untitledSingle": {
            "type": "string",
            "description": "Select one option",
            "enum": ["option1", "option2", "option3"],
        },
        "titledSingle": {
            "type": "string",
            "description": "Select one option with titles",
            "oneOf": _titled(
                [
                    ("value1", "First Option"),
                    ("value2", "Second Option"),
                    ("value3", "Third Option"),
                ]
            ),
        },
        "legacyEnum": {
            "type": "string",
            "description": "Select one option (legacy)",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {
            "type": "array",
            "description": "Select multiple options",
            "minItems": 1,
            "maxItems": 3,
            "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
        },
        "titledMulti": {
            "type": "array",
            "description": "Select multiple options with titles",
            "minItems": 1,
            "maxItems": 3,
            "items": {
                "anyOf": _titled(
                    [
                        ("value1", "First Choice"),
                        ("value2", "Second Choice"),
                        ("value3", "Third Choice"),
                    ]
                )
            },
        },
    },
    "required": [],
}


def _string_form(*names: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"type": "string"} for name in names},
        "required": list(names),
    }


def _answer_text(answer: dict[str, Any]) -> str:
    content = answer.get("content")
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return str(content["text"])
    return json.dumps(content)


def build_server() -> McpServer:
    server = McpServer(Implementation("mcp-conformance-test-server", "1.0.0"))

    # --- content tools -------------------------------------------------------------------

    @server.tool("test_simple_text", description="Returns a simple text response")
    async def simple_text(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        return "This is a simple text response for testing."

    @server.tool("test_image_content", description="Returns an image")
    async def image_content(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        return ImageContent(PNG, "image/png")

    @server.tool("test_audio_content", description="Returns an audio clip")
    async def audio_content(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        return AudioContent(WAV, "audio/wav")

    @server.tool("test_embedded_resource", description="Returns an embedded resource")
    async def embedded_resource(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        return EmbeddedResource(
            ResourceContents(
                "test://embedded-resource",
                text="This is an embedded resource content.",
                mime_type="text/plain",
            )
        )

    @server.tool("test_multiple_content_types", description="Returns text, image and resource")
    async def multiple_content(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        return [
            TextContent("Multiple content types test:"),
            ImageContent(PNG, "image/png"),
            EmbeddedResource(
                ResourceContents(
                    "test://mixed-content-resource",
                    text='{"test":"data","value":123}',
                    mime_type="application/json",
                )
            ),
        ]

    @server.tool("test_error_handling", description="Always fails as a tool error")
    async def error_handling(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        return CallToolResult.error("This tool intentionally returns an error for testing")

    # --- notifications while running -----------------------------------------------------

    @server.tool("test_tool_with_logging", description="Logs three messages while running")
    async def with_logging(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        for step in ("Tool execution started", "Tool processing data", "Tool execution completed"):
            await ctx.log("info", step)
            await trio.sleep(0.05)
        return "Tool with logging executed successfully"

    @server.tool("test_logging_tool", description="Logs a message (only if the client asks)")
    async def logging_tool(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        await ctx.log("info", "test_logging_tool ran")
        return "Logging tool done"

    @server.tool("test_tool_with_progress", description="Reports progress three times")
    async def with_progress(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        for progress in (0, 50, 100):
            await ctx.report_progress(progress, 100, f"Completed step {progress} of 100")
            await trio.sleep(0.05)
        return str(ctx.progress_token)

    @server.tool("test_reconnection", description="Closes its SSE stream, then answers (polling)")
    async def reconnection(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        await ctx.close_sse_stream()
        await trio.sleep(0.2)
        return "Reconnection test completed"

    @server.tool("test_trigger_tool_change", description="Announces a tools list change")
    async def trigger_tool_change(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        await ctx.server.notify_list_changed("tools")
        return "tools/list_changed sent"

    @server.tool("test_trigger_prompt_change", description="Announces a prompts list change")
    async def trigger_prompt_change(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        await ctx.server.notify_list_changed("prompts")
        return "prompts/list_changed sent"

    # --- asking the client -----------------------------------------------------------------

    @server.tool(
        "test_sampling",
        description="Asks the client's model",
        input_schema=_string_form("prompt"),
    )
    async def sampling(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        answer = await ctx.sample(arguments["prompt"], 100)
        return f"LLM response: {_answer_text(answer)}"

    @server.tool(
        "test_elicitation",
        description="Asks the user",
        input_schema=_string_form("message"),
    )
    async def elicitation(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        schema = {
            "type": "object",
            "properties": {"response": {"type": "string", "description": "User's response"}},
            "required": ["response"],
        }
        answer = await ctx.elicit(arguments["message"], schema)
        content = json.dumps(answer.get("content"))
        return f"User response: action={answer.get('action')}, content={content}"

    @server.tool("test_elicitation_sep1034_defaults", description="Elicits with defaults")
    async def sep1034(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        message = "Please review and update the form fields with defaults"
        answer = await ctx.elicit(message, SEP1034_SCHEMA)
        return f"Elicitation completed: action={answer.get('action')}"

    @server.tool("test_elicitation_sep1330_enums", description="Elicits with enum fields")
    async def sep1330(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        answer = await ctx.elicit("Please select options from the enum fields", SEP1330_SCHEMA)
        return f"Elicitation completed: action={answer.get('action')}"

    @server.tool("test_missing_capability", description="Needs the client's sampling capability")
    async def missing_capability(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        ctx.require_client_capabilities("sampling")
        return "Success"

    @server.tool("test_streaming_elicitation", description="Reports progress, then asks the user")
    async def streaming_elicitation(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        await ctx.send_notification(
            "notifications/progress",
            {"progressToken": f"stream-{ctx.request_id}", "progress": 1, "total": 2},
        )
        answer = await ctx.elicit("Anything to add?", _string_form("note"))
        return f"Streaming complete: action={answer.get('action')}"

    # --- multi round-trip requests (stateless era; real requests in the handshake era) -----

    @server.tool("test_input_required_result_elicitation", description="MRTR: asks a name")
    async def mrtr_elicitation(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        name_form = InputRequest.elicitation("What is your name?", _string_form("name"))
        answer = (await ctx.ask({"user_name": name_form}))["user_name"]
        content = answer.get("content") or {}
        return f"Hello, {content.get('name', 'stranger')}!"

    @server.tool("test_input_required_result_sampling", description="MRTR: asks the model")
    async def mrtr_sampling(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        question = InputRequest.sampling_text("What is the capital of France?", 100)
        answer = (await ctx.ask({"sample_request": question}))["sample_request"]
        return f"The model said: {_answer_text(answer)}"

    @server.tool("test_input_required_result_list_roots", description="MRTR: asks for roots")
    async def mrtr_roots(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        answer = (await ctx.ask({"roots_request": InputRequest.roots()}))["roots_request"]
        roots = answer.get("roots") or []
        return f"Found {len(roots)} root(s)"

    @server.tool("test_input_required_result_request_state", description="MRTR with state")
    async def mrtr_state(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        form = InputRequest.elicitation("Confirm?", {"type": "object", "properties": {}})
        answer = (await ctx.ask({"confirm": form}))["confirm"]
        return f"state-ok: action={answer.get('action')}"

    @server.tool("test_input_required_result_tampered_state", description="MRTR, signed state")
    async def mrtr_tampered(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        form = InputRequest.elicitation("Confirm?", {"type": "object", "properties": {}})
        await ctx.ask({"confirm": form})
        return "state verified"

    @server.tool("test_input_required_result_multiple_inputs", description="MRTR: three asks")
    async def mrtr_multiple(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        answers = await ctx.ask(
            {
                "user_name": InputRequest.elicitation("What is your name?", _string_form("name")),
                "greeting": InputRequest.sampling_text("Write a greeting", 50),
                "client_roots": InputRequest.roots(),
            }
        )
        name = (answers["user_name"].get("content") or {}).get("name")
        return f"{_answer_text(answers['greeting'])} {name}; roots received"

    @server.tool("test_input_required_result_multi_round", description="MRTR: two rounds")
    async def mrtr_multi_round(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        first = await ctx.ask(
            {"name": InputRequest.elicitation("What is your name?", _string_form("name"))}
        )
        second = await ctx.ask(
            {"color": InputRequest.elicitation("Favourite colour?", _string_form("color"))}
        )
        name = (first["name"].get("content") or {}).get("name")
        color = (second["color"].get("content") or {}).get("color")
        return f"{name} likes {color}"

    @server.tool("test_input_required_result_capabilities", description="MRTR: asks what it can")
    async def mrtr_capabilities(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        wanted: dict[str, InputRequest] = {}
        if ctx.client_supports("elicitation"):
            wanted["user_input"] = InputRequest.elicitation("Your input?", _string_form("text"))
        if ctx.client_supports("sampling"):
            wanted["sample_input"] = InputRequest.sampling_text("Say something", 50)
        if not wanted:
            return "The client can answer nothing"
        answers = await ctx.ask(wanted)
        return f"Got answers for: {', '.join(sorted(answers))}"

    # --- schemas and headers ---------------------------------------------------------------

    @server.tool(
        "json_schema_2020_12_tool",
        description="Has a JSON Schema 2020-12 input schema",
        input_schema=JSON_SCHEMA_2020_12,
    )
    async def json_schema_tool(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        return f"JSON Schema 2020-12 tool called with: {json.dumps(arguments)}"

    @server.tool(
        "test_custom_headers",
        description="Mirrors its region argument in the Mcp-Param-Region header",
        input_schema={
            "type": "object",
            "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
            "required": ["region"],
        },
    )
    async def custom_headers(arguments: dict[str, Any], ctx: RequestContext) -> ToolReturn:
        return f"Region: {arguments['region']}"

    # --- resources -------------------------------------------------------------------------

    async def static_text(uri: str, ctx: RequestContext) -> list[ResourceContents]:
        text = "This is the content of the static text resource."
        return [ResourceContents(uri, text=text, mime_type="text/plain")]

    async def static_binary(uri: str, ctx: RequestContext) -> list[ResourceContents]:
        return [ResourceContents(uri, blob=PNG, mime_type="image/png")]

    async def watched(uri: str, ctx: RequestContext) -> list[ResourceContents]:
        return [ResourceContents(uri, text="Watched resource content", mime_type="text/plain")]

    async def template(
        uri: str, variables: dict[str, str], ctx: RequestContext
    ) -> list[ResourceContents]:
        item = variables["id"]
        text = json.dumps({"id": item, "templateTest": True, "data": f"Data for ID: {item}"})
        return [ResourceContents(uri, text=text, mime_type="application/json")]

    server.add_resource(
        Resource(
            "test://static-text", "static-text", "Static Text Resource", mime_type="text/plain"
        ),
        static_text,
    )
    server.add_resource(
        Resource(
            "test://static-binary", "static-binary", "Static Binary Resource", mime_type="image/png"
        ),
        static_binary,
    )
    server.add_resource(
        Resource(
            "test://watched-resource",
            "watched-resource",
            "Watched Resource",
            mime_type="text/plain",
        ),
        watched,
    )
    server.add_resource_template(
        ResourceTemplate(
            "test://template/{id}/data",
            "template",
            "Template Resource",
            mime_type="application/json",
        ),
        template,
    )

    # --- prompts -----------------------------------------------------------------------------

    def user(content: Any) -> PromptMessage:
        return PromptMessage("user", content)

    async def simple_prompt(arguments: dict[str, str], ctx: RequestContext) -> GetPromptResult:
        return GetPromptResult([user(TextContent("This is a simple prompt for testing."))])

    async def prompt_with_arguments(
        arguments: dict[str, str], ctx: RequestContext
    ) -> GetPromptResult:
        text = f"Prompt with arguments: arg1='{arguments['arg1']}', arg2='{arguments['arg2']}'"
        return GetPromptResult([user(TextContent(text))])

    async def prompt_with_resource(
        arguments: dict[str, str], ctx: RequestContext
    ) -> GetPromptResult:
        resource = ResourceContents(
            arguments["resourceUri"],
            text="Embedded resource content for testing.",
            mime_type="text/plain",
        )
        return GetPromptResult(
            [
                user(EmbeddedResource(resource)),
                user(TextContent("Please process the embedded resource above.")),
            ]
        )

    async def prompt_with_image(arguments: dict[str, str], ctx: RequestContext) -> GetPromptResult:
        return GetPromptResult(
            [
                user(ImageContent(PNG, "image/png")),
                user(TextContent("Please analyze the image above.")),
            ]
        )

    async def mrtr_prompt(arguments: dict[str, str], ctx: RequestContext) -> GetPromptResult:
        form = InputRequest.elicitation("What context should I use?", _string_form("context"))
        answer = (await ctx.ask({"user_context": form}))["user_context"]
        context = (answer.get("content") or {}).get("context", "")
        return GetPromptResult([user(TextContent(f"Use this context: {context}"))])

    server.add_prompt(
        Prompt("test_simple_prompt", description="A simple prompt without arguments"),
        simple_prompt,
    )
    server.add_prompt(
        Prompt(
            "test_prompt_with_arguments",
            description="A prompt with two required arguments",
            arguments=(
                PromptArgument("arg1", "First argument", required=True),
                PromptArgument("arg2", "Second argument", required=True),
            ),
        ),
        prompt_with_arguments,
    )
    server.add_prompt(
        Prompt(
            "test_prompt_with_embedded_resource",
            description="A prompt embedding a resource",
            arguments=(PromptArgument("resourceUri", "URI of the resource", required=True),),
        ),
        prompt_with_resource,
    )
    server.add_prompt(
        Prompt("test_prompt_with_image", description="A prompt with an image"), prompt_with_image
    )
    server.add_prompt(
        Prompt("test_input_required_result_prompt", description="MRTR: asks for context"),
        mrtr_prompt,
    )

    async def complete(
        ref: dict[str, Any],
        argument: dict[str, Any],
        context: dict[str, Any] | None,
        ctx: RequestContext,
    ) -> list[str]:
        return []

    server.set_completion_handler(complete)
    return server


async def main(port: int) -> None:
    app = McpHttpApp(build_server(), HttpSettings(sse_retry_ms=500))
    async with trio.open_nursery() as nursery:
        bound: BoundServer = await nursery.start(functools.partial(serve_http, app, port=port))
        print(bound.url, flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    options = parser.parse_args()
    try:
        trio.run(main, options.port)
    except KeyboardInterrupt:
        sys.exit(130)
