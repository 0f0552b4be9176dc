"""From settings to a running model server and a client for it.

The planner decides *what* to run (pure); this module does the running: it
spawns the planned command under the shared supervisor, or, for a remote
endpoint, only checks that the endpoint answers.  Everything above this layer
(LSP, CLI, agent) holds a :class:`Backend` and asks it for a client.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from ornith_lsp import settings as settings_mod
from ornith_lsp.backends import embedded
from ornith_lsp.backends.hardware import Hardware, probe
from ornith_lsp.backends.planner import Plan, plan
from ornith_lsp.backends.supervisor import BackendStartError, Supervisor
from ornith_lsp.llm.client import ChatClient, LLMError
from ornith_lsp.settings import Settings

EventSink = Callable[[str, str], None]


class BackendUnavailable(RuntimeError):
    """The backend cannot serve requests; the message says why and what to do."""


def make_plan(settings: Settings, hw: Hardware | None = None) -> tuple[Plan, list[str]]:
    """Plan for this machine; also return the problems found locating local parts.

    A missing binary or model does not stop planning: ``doctor`` must still be
    able to say what *would* run and what is missing for it.
    """
    problems: list[str] = []
    llama_server = str(settings.backend.llama_server or "llama-server")
    try:
        path, where = embedded.find_llama_server(settings.backend.llama_server)
        llama_server = str(path)
    except embedded.MissingPart as exc:
        problems.append(str(exc))
    model: str | None = str(settings.backend.model_path) if settings.backend.model_path else None
    if model is None:
        try:
            model = str(embedded.find_embedded_model())
        except embedded.MissingPart as exc:
            problems.append(str(exc))
    the_plan = plan(hw or probe(), settings.backend, llama_server=llama_server, embedded_model=model)
    if the_plan.backend == "remote":
        problems = []
    return the_plan, problems


class Backend:
    def __init__(self, settings: Settings, the_plan: Plan, *, on_event: EventSink | None = None) -> None:
        self.settings = settings
        self.plan = the_plan
        self.on_event = on_event or (lambda kind, message: None)
        self.supervisor: Supervisor | None = None
        self.error: str | None = None
        if the_plan.backend != "remote":
            log_dir = settings.resolved_log_dir()
            stamp = time.strftime("%Y%m%d-%H%M%S")
            self.supervisor = Supervisor(
                f"{the_plan.backend} ({the_plan.model_size})",
                the_plan.command,
                log_path=log_dir / f"{the_plan.backend}-{stamp}-{id(self):x}.log",
                ready_timeout_s=settings.backend.ready_timeout_s,
                max_restarts=settings.backend.max_restarts,
                on_event=self.on_event,
            )

    @property
    def endpoint(self) -> str | None:
        if self.supervisor is not None:
            return self.supervisor.endpoint if self.supervisor.port else None
        return self.plan.endpoint

    @property
    def log_path(self) -> Path | None:
        return self.supervisor.log_path if self.supervisor else None

    async def start(self) -> None:
        """Start (or for a remote endpoint, probe); raise BackendUnavailable with one clear message."""
        if self.supervisor is None:
            self.on_event("starting", f"checking remote endpoint {self.plan.endpoint}")
            async with self.client() as client:
                try:
                    models = await client.models()
                except LLMError as exc:
                    self.error = f"remote endpoint {self.plan.endpoint} is not usable: {exc}"
                    self.on_event("failed", self.error)
                    raise BackendUnavailable(self.error) from None
            names = ", ".join(str(m.get("id")) for m in models[:5]) or "no models listed"
            self.on_event("ready", f"remote endpoint {self.plan.endpoint} answers ({names})")
            self.error = None
            return
        binary = self.plan.command[0] if self.plan.command else ""
        if not Path(binary).is_file():
            self.error = f"cannot start {self.plan.backend}: {binary!r} not found; install it with: {embedded.INSTALL_SERVER}"
            self.on_event("failed", self.error)
            raise BackendUnavailable(self.error)
        try:
            await self.supervisor.start()
            self.error = None
        except BackendStartError as exc:
            self.error = str(exc)
            raise BackendUnavailable(self.error) from None

    def client(self) -> ChatClient:
        endpoint = self.endpoint
        if endpoint is None:
            raise BackendUnavailable(self.error or "the backend has not been started")
        c = self.settings.client
        return ChatClient(
            endpoint,
            self.plan.served_name or self.plan.model,
            api_key=settings_mod.api_key(self.settings),
            flavor="llamacpp" if self.plan.backend == "llamacpp" else "openai",
            connect_timeout=c.connect_timeout_s,
            read_timeout=c.read_timeout_s,
            max_retries=c.max_retries,
        )

    async def healthy(self) -> bool:
        if self.endpoint is None:
            return False
        async with self.client() as client:
            if self.supervisor is not None:
                return await client.health()
            with contextlib.suppress(LLMError):
                await client.models()
                return True
        return False

    async def status(self) -> dict[str, object]:
        """What ``ornith.backendStatus`` returns: plan and live state."""
        live = self.supervisor.status() if self.supervisor else {"state": "ready" if self.error is None else "failed"}
        return {
            "kind": self.plan.backend,
            "model": self.plan.model,
            "model_size": self.plan.model_size,
            "context_length": self.plan.context_length,
            "health": "ok" if await self.healthy() else "down",
            "log_path": str(self.log_path) if self.log_path else None,
            "error": self.error,
            **live,
        }

    async def stop(self) -> None:
        if self.supervisor is not None:
            await self.supervisor.stop()

    def kill_now(self) -> None:
        if self.supervisor is not None:
            self.supervisor.kill_now()
