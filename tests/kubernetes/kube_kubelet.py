"""The double's kubelet and scheduler: each Pod's container runs in the local bubblewrap sandbox.

A Pod is scheduled (its node selector against the double's one node, its claims against the
known PersistentVolumeClaims), its image "pulled" (only the images the double was given
exist), then its container's command runs as ``python -m trio_sandbox.warden wrap --backend
bwrap -p 127.0.0.1:FREE:PORT ... host -- COMMAND``: the real tool server in the real sandbox,
its stdout and stderr merged into the Pod's log with timestamps, as the kubelet keeps it.
Deleting a Pod sends SIGTERM to the container, SIGKILL after its grace period; the deadline
(activeDeadlineSeconds) fails the Pod with reason DeadlineExceeded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

from tests.kubernetes.kube_store import JsonObject, Store, now_rfc3339

NODE_NAME = "kube-double-node"
DEFAULT_GRACE_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@attrs.define(eq=False)
class PodRuntime:
    """One Pod on the double's node."""

    namespace: str
    name: str
    # Container port -> the loopback port where the inner warden publishes it.
    ports: dict[int, int] = attrs.field(factory=dict)
    log: list[tuple[str, str]] = attrs.field(factory=list)
    log_changed: trio.Event = attrs.field(factory=trio.Event)
    started: bool = False
    container_done: trio.Event = attrs.field(factory=trio.Event)
    stop: trio.Event = attrs.field(factory=trio.Event)
    grace: float = DEFAULT_GRACE_SECONDS
    gone: trio.Event = attrs.field(factory=trio.Event)
    pid: int | None = None
    # A coarse node clock: whole seconds, so that lines read together share their timestamp.
    coarse_clock: bool = False

    def append_log(self, line: str) -> None:
        self.log.append((now_rfc3339(precise=not self.coarse_clock), line))
        self.log_changed.set()
        self.log_changed = trio.Event()

    def request_stop(self, grace: float) -> None:
        self.grace = min(self.grace, grace) if self.stop.is_set() else grace
        self.stop.set()


@attrs.define(eq=False)
class Kubelet:
    store: Store
    nursery: trio.Nursery
    images: frozenset[str]
    node_labels: Mapping[str, str]
    # (namespace, claim name) -> the directory behind it.
    claims: dict[tuple[str, str], Path]
    runtimes: dict[tuple[str, str], PodRuntime] = attrs.field(factory=dict)
    coarse_log_clock: bool = False
    warden: tuple[str, ...] = (sys.executable, "-m", "trio_sandbox.warden", "wrap")

    def admit(self, namespace: str, name: str) -> PodRuntime:
        runtime = PodRuntime(namespace, name, coarse_clock=self.coarse_log_clock)
        self.runtimes[(namespace, name)] = runtime
        self.nursery.start_soon(self._run, runtime)
        return runtime

    def _pod(self, runtime: PodRuntime) -> JsonObject:
        return self.store.get("pods", runtime.namespace, runtime.name)

    def _update(self, runtime: PodRuntime, status: Mapping[str, Any]) -> JsonObject:
        pod = self._pod(runtime)
        pod.setdefault("status", {}).update(status)
        return self.store.update("pods", runtime.namespace, runtime.name)

    def _event(self, runtime: PodRuntime, kind: str, reason: str, message: str) -> None:
        self.store.event(runtime.namespace, self._pod(runtime), kind, reason, message)

    def _unschedulable(self, namespace: str, spec: JsonObject) -> str | None:
        for key, value in (spec.get("nodeSelector") or {}).items():
            if self.node_labels.get(key) != value:
                return (
                    "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
                )
        for volume in spec.get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and (namespace, claim) not in self.claims:
                return f'persistentvolumeclaim "{claim}" not found'
        return None

    async def _run(self, runtime: PodRuntime) -> None:
        try:
            await self._lifecycle(runtime)
        finally:
            self.runtimes.pop((runtime.namespace, runtime.name), None)
            with contextlib.suppress(KeyError):
                self.store.remove("pods", runtime.namespace, runtime.name)
            runtime.container_done.set()
            runtime.gone.set()

    async def _lifecycle(self, runtime: PodRuntime) -> None:
        pod = self._pod(runtime)
        spec = pod["spec"]
        container = spec["containers"][0]
        self._update(runtime, {"phase": "Pending", "conditions": []})
        problem = self._unschedulable(runtime.namespace, spec)
        if problem is not None:
            self._event(runtime, "Warning", "FailedScheduling", problem)
            self._update(
                runtime,
                {
                    "conditions": [
                        {
                            "type": "PodScheduled",
                            "status": "False",
                            "reason": "Unschedulable",
                            "message": problem,
                        }
                    ]
                },
            )
            await runtime.stop.wait()
            return
        self._event(
            runtime,
            "Normal",
            "Scheduled",
            f"Successfully assigned {runtime.namespace}/{runtime.name} to {NODE_NAME}",
        )
        pod["spec"]["nodeName"] = NODE_NAME
        self._update(
            runtime,
            {"conditions": [{"type": "PodScheduled", "status": "True"}], "hostIP": "127.0.0.1"},
        )
        image = container["image"]
        if image not in self.images:
            message = f'failed to pull and unpack image "{image}": not found'
            self._event(runtime, "Warning", "Failed", f'Failed to pull image "{image}": {message}')
            self._update(runtime, _waiting(container, "ErrImagePull", message))
            with trio.move_on_after(0.3):
                await runtime.stop.wait()
            if not runtime.stop.is_set():
                self._event(runtime, "Normal", "BackOff", f'Back-off pulling image "{image}"')
                self._update(
                    runtime,
                    _waiting(container, "ImagePullBackOff", f'Back-off pulling image "{image}"'),
                )
                await runtime.stop.wait()
            return
        self._event(
            runtime, "Normal", "Pulled", f'Container image "{image}" already present on machine'
        )
        self._event(runtime, "Normal", "Created", f"Created container {container['name']}")
        # Only declared ports are published (the inner warden relays each one into its sandbox).
        for port in container.get("ports") or []:
            runtime.ports[int(port["containerPort"])] = free_port()
        argv = self._warden_argv(runtime, spec, container)
        if runtime.stop.is_set():
            return
        await self._run_container(runtime, pod, container, argv)

    def _warden_argv(
        self, runtime: PodRuntime, spec: JsonObject, container: JsonObject
    ) -> list[str]:
        argv = [*self.warden, "--backend", "bwrap"]
        for inner, outer in runtime.ports.items():
            argv += ["-p", f"127.0.0.1:{outer}:{inner}"]
        for variable in container.get("env") or []:
            argv += ["--env", f"{variable['name']}={variable.get('value', '')}"]
        context = {
            **(spec.get("securityContext") or {}),
            **(container.get("securityContext") or {}),
        }
        if "runAsUser" in context:
            argv += [
                "--user",
                f"{context['runAsUser']}:{context.get('runAsGroup', context['runAsUser'])}",
            ]
        claims = {
            volume["name"]: volume["persistentVolumeClaim"]
            for volume in spec.get("volumes") or []
            if "persistentVolumeClaim" in volume
        }
        for mount in container.get("volumeMounts") or []:
            claim = claims.get(mount["name"])
            if claim is not None:
                directory = self.claims[(runtime.namespace, claim["claimName"])]
                suffix = ":ro" if mount.get("readOnly") or claim.get("readOnly") else ""
                argv += ["--volume", f"{directory}:{mount['mountPath']}{suffix}"]
        if container.get("workingDir"):
            argv += ["--workdir", container["workingDir"]]
        return [*argv, "host", "--", *container.get("command", []), *container.get("args", [])]

    async def _run_container(
        self, runtime: PodRuntime, pod: JsonObject, container: JsonObject, argv: list[str]
    ) -> None:
        read_fd, write_fd = os.pipe()
        deadline = pod["spec"].get("activeDeadlineSeconds")
        failed_reason: list[str] = []
        try:
            async with trio.open_nursery() as nursery:
                process: trio.Process = await nursery.start(
                    partial(
                        trio.run_process,
                        argv,
                        stdin=subprocess.DEVNULL,
                        stdout=write_fd,
                        stderr=write_fd,
                        start_new_session=True,
                        check=False,
                        deliver_cancel=_kill_group,
                    )
                )
                os.close(write_fd)
                write_fd = -1
                runtime.pid = process.pid
                runtime.started = True
                self._event(runtime, "Normal", "Started", f"Started container {container['name']}")
                started_at = now_rfc3339()
                self._update(
                    runtime,
                    {
                        "phase": "Running",
                        "podIP": "127.0.0.1",
                        "startTime": started_at,
                        "containerStatuses": [
                            _container_status(container, {"running": {"startedAt": started_at}})
                        ],
                    },
                )
                nursery.start_soon(self._read_log, runtime, read_fd)
                read_fd = -1

                async def stop_when_asked() -> None:
                    with trio.move_on_after(
                        deadline if isinstance(deadline, int) else float("inf")
                    ):
                        await runtime.stop.wait()
                    if not runtime.stop.is_set():
                        failed_reason.append("DeadlineExceeded")
                        self._event(
                            runtime,
                            "Normal",
                            "DeadlineExceeded",
                            "Pod was active on the node longer than the specified deadline",
                        )
                        runtime.grace = float(
                            pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
                        )
                    self._event(
                        runtime, "Normal", "Killing", f"Stopping container {container['name']}"
                    )
                    _signal_group(process.pid, signal.SIGTERM)
                    with trio.move_on_after(runtime.grace):
                        await process.wait()
                    _signal_group(process.pid, signal.SIGKILL)

                watcher = trio.CancelScope()

                async def run_watcher() -> None:
                    with watcher:
                        await stop_when_asked()

                nursery.start_soon(run_watcher)
                code = await process.wait()
                watcher.cancel()
        finally:
            for fd in (read_fd, write_fd):
                if fd >= 0:
                    os.close(fd)
        runtime.container_done.set()
        exit_code = 128 - code if code < 0 else code
        terminated = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": pod.get("status", {}).get("startTime"),
            "finishedAt": now_rfc3339(),
        }
        status: dict[str, Any] = {
            "phase": "Succeeded" if exit_code == 0 and not failed_reason else "Failed",
            "containerStatuses": [
                _container_status(container, {"terminated": terminated}, ready=False)
            ],
        }
        if failed_reason:
            status["reason"] = failed_reason[0]
            status["message"] = "Pod was active on the node longer than the specified deadline"
        self._update(runtime, status)
        if not runtime.stop.is_set():
            await runtime.stop.wait()  # a finished Pod stays until it is deleted

    async def _read_log(self, runtime: PodRuntime, read_fd: int) -> None:
        buffer = b""
        async with trio.lowlevel.FdStream(read_fd) as stream:
            while chunk := await stream.receive_some(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    runtime.append_log(line.decode("utf-8", "replace"))
        if buffer:
            runtime.append_log(buffer.decode("utf-8", "replace"))


def _waiting(container: JsonObject, reason: str, message: str) -> dict[str, Any]:
    return {
        "containerStatuses": [
            _container_status(
                container, {"waiting": {"reason": reason, "message": message}}, ready=False
            )
        ]
    }


def _container_status(
    container: JsonObject, state: JsonObject, *, ready: bool = True
) -> JsonObject:
    return {
        "name": container["name"],
        "image": container["image"],
        "imageID": f"kube-double://{container['image']}",
        "containerID": "kube-double://" + container["name"],
        "state": state,
        "ready": ready and "running" in state,
        "restartCount": 0,
        "started": "running" in state,
    }


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


async def _kill_group(process: trio.Process) -> None:
    _signal_group(process.pid, signal.SIGKILL)
