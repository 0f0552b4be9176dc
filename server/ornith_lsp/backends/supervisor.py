"""One supervisor for every model-server process (llama-server, vLLM).

A spawned backend is a resource with a lifecycle: it is started on a free
loopback port, counted as ready only when ``GET /health`` answers 200, watched
while it runs, restarted with a bounded exponential backoff when it dies, and
killed with its whole process group when its owner stops.  Its output is kept
in a log file because that is the user's best clue when something goes wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import httpx

from ornith_lsp import procs

log = logging.getLogger("ornith_lsp.backends")

State = Literal["stopped", "starting", "ready", "restarting", "failed"]
EventSink = Callable[[str, str], None]
HEALTHY_RESETS_AFTER_S = 60.0


# what llama-server logs when its port was taken after we picked it
PORT_LOST = "couldn't bind HTTP server socket"


class BackendStartError(RuntimeError):
    """The backend did not become healthy; the message carries the log's tail."""


class Supervisor:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        host: str = "127.0.0.1",
        port: int | None = None,
        ready_timeout_s: float = 120.0,
        max_restarts: int = 5,
        backoff_s: float = 1.0,
        on_event: EventSink | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv_template = list(argv)
        self.env = dict(env or {})
        self.log_path = log_path
        self.host = host
        self.port = port
        self.ready_timeout_s = ready_timeout_s
        self.max_restarts = max_restarts
        self.backoff_s = backoff_s
        self.on_event = on_event or (lambda kind, message: None)
        self.state: State = "stopped"
        self.restarts = 0
        self.last_error: str | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._ready_at = 0.0
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.returncode is None else None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def argv(self) -> list[str]:
        return [a.replace("{port}", str(self.port)) for a in self.argv_template]

    def _emit(self, kind: str, message: str) -> None:
        log.info("%s: %s", kind, message)
        with contextlib.suppress(Exception):
            self.on_event(kind, message)

    async def start(self) -> None:
        """Start and wait for health; raise BackendStartError (state 'failed') if it never gets there."""
        self._stopping = False
        self.state = "starting"
        try:
            try:
                await self._launch()
            except BackendStartError as exc:
                if PORT_LOST not in str(exc):
                    raise
                # another process took the free port between our check and the
                # server's bind: a new port, once
                self._emit("starting", f"port {self.port} was taken meanwhile; trying another")
                self.port = None
                await self._launch()
        except BackendStartError as exc:
            self.state = "failed"
            self.last_error = str(exc)
            self._emit("failed", str(exc))
            raise
        self._watcher = asyncio.create_task(self._watch(), name=f"watch-{self.name}")

    async def _launch(self) -> None:
        if self.port is None or procs.port_in_use(self.host, self.port):
            self.port = procs.free_port(self.host)
        argv = self.argv()
        self._emit("starting", f"starting {self.name} on {self.host}:{self.port} (log: {self.log_path})")
        try:
            env = {**os.environ, **self.env} if self.env else None
            self._proc = await procs.spawn(argv, log_path=self.log_path, env=env)
        except OSError as exc:
            raise BackendStartError(f"{self.name} could not be started ({argv[0]}): {exc}") from None
        try:
            await self._wait_healthy(self._proc)
        except BackendStartError:
            await procs.terminate(self._proc, grace_s=2.0)
            raise
        self.state = "ready"
        self._ready_at = time.monotonic()
        self.last_error = None
        self._emit("ready", f"{self.name} ready at {self.endpoint} (pid {self._proc.pid})")

    async def _wait_healthy(self, proc: asyncio.subprocess.Process) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        url = f"http://{self.host}:{self.port}/health"
        async with httpx.AsyncClient(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if proc.returncode is not None:
                    raise BackendStartError(
                        f"{self.name} exited with code {proc.returncode} during start-up; "
                        f"log {self.log_path}:\n{procs.tail(self.log_path)}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(url)).status_code == 200:
                        return
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(proc.wait()), 0.1)
        raise BackendStartError(
            f"{self.name} did not answer /health within {self.ready_timeout_s:.0f} s; "
            f"log {self.log_path}:\n{procs.tail(self.log_path)}"
        )

    async def _watch(self) -> None:
        """Restart on unexpected exit; give up after max_restarts in a row."""
        while not self._stopping:
            assert self._proc is not None
            code = await self._proc.wait()
            if self._stopping:
                return
            if time.monotonic() - self._ready_at > HEALTHY_RESETS_AFTER_S:
                self.restarts = 0
            self.last_error = f"{self.name} exited with code {code}"
            if self.restarts >= self.max_restarts:
                self.state = "failed"
                self._emit("failed", f"{self.last_error}; gave up after {self.restarts} restarts (log: {self.log_path})")
                return
            self.restarts += 1
            delay = min(30.0, self.backoff_s * 2 ** (self.restarts - 1))
            self.state = "restarting"
            self._emit("crashed", f"{self.last_error}; restart {self.restarts}/{self.max_restarts} in {delay:.1f} s")
            await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                await self._launch()
            except BackendStartError as exc:
                self.last_error = str(exc)
                self._emit("crashed", str(exc))
                self._ready_at = 0.0

    async def wait_ready(self, timeout_s: float) -> bool:
        """For callers that arrive during a restart: wait until ready (or give up)."""
        deadline = time.monotonic() + timeout_s
        while self.state in ("starting", "restarting") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.state == "ready"

    async def stop(self) -> None:
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._proc is not None:
            await procs.terminate(self._proc)
        if self.state != "failed":
            self.state = "stopped"
        self._emit("stopped", f"{self.name} stopped")

    def kill_now(self) -> None:
        """Synchronous last resort for signal handlers and atexit."""
        self._stopping = True
        if self._proc is not None and self._proc.returncode is None:
            procs.kill_group(self._proc.pid)

    def status(self) -> dict[str, object]:
        return {
            "state": self.state,
            "pid": self.pid,
            "endpoint": self.endpoint if self.port else None,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "log_path": str(self.log_path),
        }
