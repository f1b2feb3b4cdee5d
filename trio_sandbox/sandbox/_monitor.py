"""The health monitor: probe the sandbox's own session every interval; respawn after N failures.

It probes the sandbox's session, not the proxy's merged view, so an upstream elsewhere being
down never counts against the sandbox. A probe either passes or fails with a reason — a transport
error, a timeout, or both at once — and never raises: the monitor must outlive any sandbox.
"""

from __future__ import annotations

import logging
from typing import NoReturn

import attrs
import trio

from ..mcp import McpClient, McpConnectionError, McpError
from ._supervisor import Supervisor

logger = logging.getLogger("trio_sandbox.sandbox")


async def probe(client: McpClient, patience: float) -> str | None:
    """None when the sandbox answered within ``patience`` seconds; otherwise why not."""
    with trio.move_on_after(patience) as deadline:
        try:
            await client.ping()
        except McpConnectionError as exc:
            return f"ping failed: {exc.reason}"
        except McpError:
            return None  # it answered; it just does not like ping
    if deadline.cancelled_caught:
        return f"no answer to ping within {patience:g} s"
    return None


async def serve_health_monitor(supervisor: Supervisor) -> NoReturn:
    """Probe every ``health_interval``; end the generation after ``respawn_threshold`` failures."""
    config = supervisor.config
    health = supervisor.health
    while True:
        await trio.sleep(config.health_interval)
        generation = supervisor.current
        client = supervisor.upstream.client
        if generation is None or client is None or not generation.up:
            continue  # respawning: the supervisor reports on that
        error = await probe(client, config.health_timeout)
        if generation is not supervisor.current or generation.ended.is_set():
            continue  # that sandbox is gone already
        value = health.value
        if error is None:
            generation.proved_healthy = True
            health.value = attrs.evolve(
                value,
                healthy=True,
                consecutive_ok=value.consecutive_ok + 1,
                consecutive_failures=0,
                last_ok=trio.current_time(),
            )
            continue
        failures = value.consecutive_failures + 1
        health.value = attrs.evolve(
            value, healthy=False, consecutive_ok=0, consecutive_failures=failures, last_error=error
        )
        logger.warning("sandbox health probe failed (%d in a row): %s", failures, error)
        if failures >= config.respawn_threshold:
            logger.warning("sandbox unhealthy %d times in a row: respawning", failures)
            generation.end(f"{failures} failed health probes; last: {error}")
