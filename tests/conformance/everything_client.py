"""A client built on trio_sandbox.mcp for the official conformance suite's CLIENT scenarios.

Run by ``conformance client --command 'python tests/conformance/everything_client.py'``: the
server URL is the last argument; the scenario comes from ``MCP_CONFORMANCE_SCENARIO``, the
protocol version from ``MCP_CONFORMANCE_PROTOCOL_VERSION`` and scenario data from
``MCP_CONFORMANCE_CONTEXT``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import attrs
import httpx
import trio

from trio_sandbox.mcp import (
    Implementation,
    JsonObject,
    McpClient,
    McpError,
    Tool,
    open_mcp_client,
)
from trio_sandbox.oauth import MemoryTokenStore, OAuthClient, OAuthSettings

# The suite's scenarios only: the test client finds the issuer a real configuration names.
from trio_sandbox.oauth._http import is_loopback
from trio_sandbox.oauth._metadata import fetch_resource_metadata
from trio_sandbox.oauth._www_authenticate import parse_www_authenticate

CLIENT_INFO = Implementation("trio-sandbox-conformance-client", "1.0.0")
# The client ID metadata document the suite's basic-cimd scenario expects as the client_id.
CLIENT_METADATA_URL = "https://conformance-test.local/client-metadata.json"


@attrs.frozen
class HeadlessRedirect:
    """A browser that approves at once: GET the authorization URL, read the redirect's query
    from its Location (never followed: nothing listens on the redirect URI)."""

    http: httpx.AsyncClient
    uri: str = "http://127.0.0.1:9/callback"

    async def authorize(self, authorization_url: str) -> Mapping[str, str]:
        response = await self.http.get(authorization_url, follow_redirects=False)
        location = response.headers.get("location")
        if response.status_code not in (301, 302, 303, 307, 308) or not location:
            raise RuntimeError(f"the authorization endpoint answered HTTP {response.status_code}")
        return dict(parse_qsl(urlsplit(location).query))


@attrs.frozen
class HeadlessUserAgent:
    http: httpx.AsyncClient

    @asynccontextmanager
    async def redirect(self) -> AsyncIterator[HeadlessRedirect]:
        yield HeadlessRedirect(self.http)


async def trusted_issuer(http: httpx.AsyncClient, url: str) -> str:
    """The suite hands out a client secret but not the authorization server it belongs to
    (which a real configuration names): this test client trusts the server's metadata on
    first use, as the product never does."""
    answer = await http.post(
        url,
        json={"jsonrpc": "2.0", "id": 0, "method": "ping"},
        headers={"Accept": "application/json, text/event-stream"},
    )
    challenge = parse_www_authenticate(answer.headers.get("www-authenticate"))
    metadata = await fetch_resource_metadata(
        http, url, challenge.resource_metadata, local=is_loopback(url)
    )
    if metadata is None:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"
    return metadata.authorization_servers[0]


async def oauth_settings(
    http: httpx.AsyncClient, url: str, scenario: str, context: JsonObject
) -> OAuthSettings:
    client_id = context.get("client_id")
    client_secret = context.get("client_secret")
    secret = client_secret if isinstance(client_secret, str) else None
    return OAuthSettings(
        grant="client_credentials" if "client-credentials" in scenario else "authorization_code",
        client_id=client_id if isinstance(client_id, str) else None,
        client_secret=secret,
        client_metadata_url=CLIENT_METADATA_URL,
        issuer=None if secret is None else await trusted_issuer(http, url),
    )


def sample_value(schema: Mapping[str, Any]) -> Any:
    """A plausible argument for a JSON schema: its default, else something of its type."""
    if "default" in schema:
        return schema["default"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "string":
        return "us-east1"
    if kind in ("number", "integer"):
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return {}
    return None


def sample_arguments(tool: Tool) -> dict[str, Any]:
    if tool.name == "add_numbers":
        return {"a": 2, "b": 3}
    properties = tool.input_schema.get("properties")
    required = tool.input_schema.get("required") or []
    if not isinstance(properties, Mapping):
        return {}
    return {
        name: sample_value(schema)
        for name, schema in properties.items()
        if name in required and isinstance(schema, Mapping)
    }


async def accept_with_defaults(params: JsonObject) -> JsonObject:
    """Accept an elicitation, filling every field that has a default (SEP-1034)."""
    schema = params.get("requestedSchema")
    properties = schema.get("properties") if isinstance(schema, dict) else None
    content: JsonObject = {}
    for name, field in (properties or {}).items():
        if isinstance(field, dict):
            value = sample_value(field)
            if value is not None:
                content[name] = value
    return {"action": "accept", "content": content}


async def call_every_tool(client: McpClient) -> None:
    for tool in await client.list_tools():
        await client.call_tool(tool.name, sample_arguments(tool))


async def basic(client: McpClient, context: JsonObject) -> None:
    tools = await client.list_tools()
    if tools:
        await client.call_tool(tools[0].name, sample_arguments(tools[0]))


async def list_only(client: McpClient, context: JsonObject) -> None:
    await client.list_tools()


async def every_tool(client: McpClient, context: JsonObject) -> None:
    await call_every_tool(client)


async def standard_headers(client: McpClient, context: JsonObject) -> None:
    await call_every_tool(client)
    for resource in await client.list_resources():
        await client.read_resource(resource.uri)
    for prompt in await client.list_prompts():
        arguments = {argument.name: "value" for argument in prompt.arguments}
        await client.get_prompt(prompt.name, arguments)


async def custom_headers(client: McpClient, context: JsonObject) -> None:
    await client.list_tools()
    for call in context.get("toolCalls") or []:
        await client.call_tool(call["name"], call.get("arguments") or {})


async def invalid_tool_headers(client: McpClient, context: JsonObject) -> None:
    # list_tools leaves out tools whose x-mcp-header annotations are invalid.
    await call_every_tool(client)


async def mrtr(client: McpClient, context: JsonObject) -> None:
    for name in (
        "test_mrtr_echo_state",
        "test_mrtr_unrelated",
        "test_mrtr_no_state",
        "test_mrtr_no_result_type",
    ):
        await client.call_tool(name, {})


async def schema_preservation(client: McpClient, context: JsonObject) -> None:
    tools = {tool.name: tool for tool in await client.list_tools()}
    focal = tools.get("json_schema_2020_12_tool")
    if focal is not None and "json_schema_echo" in tools:
        await client.call_tool("json_schema_echo", {"schema": dict(focal.input_schema)})


Scenario = Callable[[McpClient, JsonObject], Awaitable[None]]

SCENARIOS: dict[str, Scenario] = {
    "initialize": basic,
    "tools_call": basic,
    "tools-call": basic,
    "elicitation-sep1034-client-defaults": every_tool,
    "elicitation-defaults": every_tool,
    "sse-retry": every_tool,
    "request-metadata": list_only,
    "json-schema-ref-no-deref": list_only,
    "json-schema-2020-12-preservation": schema_preservation,
    "http-standard-headers": standard_headers,
    "http-custom-headers": custom_headers,
    "http-invalid-tool-headers": invalid_tool_headers,
    "sep-2322-client-request-state": mrtr,
}


async def main(url: str, scenario_name: str) -> None:
    scenario = SCENARIOS.get(scenario_name)
    if scenario is None and scenario_name.startswith("auth/"):
        scenario = basic  # every auth scenario: authorize, then list and call a tool
    if scenario is None:
        raise SystemExit(f"unsupported scenario: {scenario_name}")
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    version = os.environ.get("MCP_CONFORMANCE_PROTOCOL_VERSION") or None
    async with httpx.AsyncClient() as http:
        auth = None
        if scenario_name.startswith("auth/"):
            auth = OAuthClient(
                name="conformance",
                server_url=url,
                settings=await oauth_settings(http, url, scenario_name, context),
                store=MemoryTokenStore(),
                http=http,
                user_agent=HeadlessUserAgent(http),
            )
        async with open_mcp_client(
            url,
            client_info=CLIENT_INFO,
            protocol_version=version,
            elicitation=accept_with_defaults,
            auth=auth,
        ) as client:
            await scenario(client, context)


if __name__ == "__main__":
    logging.basicConfig(
        level=getattr(logging, os.environ.get("CLIENT_LOG", "WARNING")), stream=sys.stderr
    )
    try:
        trio.run(main, sys.argv[-1], os.environ.get("MCP_CONFORMANCE_SCENARIO", ""))
    except McpError as exc:
        print(f"JSON-RPC error {exc.code}: {exc.message}", file=sys.stderr)
        sys.exit(1)
