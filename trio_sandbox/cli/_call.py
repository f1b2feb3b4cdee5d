"""``trio-sandbox call TOOL [JSON_ARGS]`` and ``trio-sandbox tools``: one-shot uses of a sandbox."""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from typing import Any

import attrs

from ..mcp import CallToolResult, McpError, Tool
from ..sandbox import SandboxConfig, open_sandbox
from ._errors import UsageError
from ._options import (
    add_sandbox_options,
    refuse_audit_on_stdout,
    run_observed,
    sandbox_config,
)
from ._run import report_stages
from ._signals import say, stop_on_signals


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    call = commands.add_parser("call", help="start a sandbox, call one tool, print the result")
    add_sandbox_options(call)
    call.add_argument("tool", metavar="TOOL")
    call.add_argument("arguments", metavar="JSON_ARGS", nargs="?", default="{}")
    call.add_argument("--json", action="store_true", help="print the whole result as JSON")
    call.set_defaults(handler=call_command)

    tools = commands.add_parser("tools", help="list the sandbox's tools")
    add_sandbox_options(tools)
    tools.add_argument("--json", action="store_true", help="print the tools as JSON")
    tools.set_defaults(handler=tools_command)


def call_command(args: argparse.Namespace) -> int:
    config, _ = sandbox_config(args)
    refuse_audit_on_stdout(config.observe_settings, "call")
    try:
        arguments = json.loads(args.arguments)
    except ValueError as exc:
        raise UsageError(f"JSON_ARGS is not valid JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise UsageError('JSON_ARGS must be a JSON object, such as \'{"command": "ls"}\'')
    report_stages()
    try:
        result: CallToolResult | None = run_observed(
            config.observe_settings,
            stop_on_signals,
            partial(_call, config, args.tool, arguments),
        )
    except McpError as exc:
        # A protocol-level refusal (an unknown tool, say): no result to print, still a failure.
        print(f"trio-sandbox: call {args.tool}: {exc}", file=sys.stderr)
        return 1
    if result is None:
        return 0  # stopped by a signal: nothing ran to completion, nothing to print
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(result.text_content)
    return 1 if result.is_error else 0


async def _call(config: SandboxConfig, tool: str, arguments: dict[str, Any]) -> CallToolResult:
    # One call: a spare started beside it would only cost (CPU while the call waits).
    async with open_sandbox(attrs.evolve(config, warm_spares=0)) as sandbox:
        say(f"calling {tool}")
        return await sandbox.call_tool(tool, arguments)


def tools_command(args: argparse.Namespace) -> int:
    config, _ = sandbox_config(args)
    refuse_audit_on_stdout(config.observe_settings, "tools")
    report_stages()
    tools: list[Tool] | None = run_observed(
        config.observe_settings, stop_on_signals, partial(_tools, config)
    )
    if tools is None:
        return 0
    if args.json:
        print(json.dumps([tool.to_json() for tool in tools], indent=2))
        return 0
    width = max((len(tool.name) for tool in tools), default=0)
    for tool in tools:
        summary = (tool.description or "").strip().splitlines()
        print(f"{tool.name:<{width}}  {summary[0] if summary else ''}")
    return 0


async def _tools(config: SandboxConfig) -> list[Tool]:
    async with open_sandbox(attrs.evolve(config, warm_spares=0)) as sandbox:
        return await sandbox.list_tools()
