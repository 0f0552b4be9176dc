"""From settings to a running model server and a client for it.

The planner decides *what* to run (pure); this module does the running: it
spawns the planned command under the shared supervisor, or, for a remote
endpoint, only checks that the endpoint answers.  Everything above this layer
(LSP, CLI, agent) holds a :class:`Backend` and asks it for a client.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from ornith_lsp import settings as settings_mod
from ornith_lsp.backends import embedded, ollama, vllm
from ornith_lsp.backends.embedded import EMBEDDED_MODELS
from ornith_lsp.backends.gguf import GgufError, GgufInfo, read_header
from ornith_lsp.backends.hardware import Hardware, probe
from ornith_lsp.backends.ollama import ollama_context_reason
from ornith_lsp.backends.planner import Plan, PlanError, is_model_dir, plan
from ornith_lsp.backends.supervisor import BackendStartError, Supervisor
from ornith_lsp.llm.client import ChatClient, LLMError
from ornith_lsp.settings import Settings

EMBEDDED_NAMES = {m.name for m in EMBEDDED_MODELS.values()}
EventSink = Callable[[str, str], None]


class BackendUnavailable(RuntimeError):
    """The backend cannot serve requests; the message says why and what to do."""


def make_plan(settings: Settings, hw: Hardware | None = None) -> tuple[Plan, list[str]]:
    """Plan for this machine; also return the problems found locating its parts.

    A missing binary, model or vLLM does not stop planning: ``doctor`` must
    still be able to say what *would* run and what is missing for it.  Only
    the problems of the plan chosen are returned.
    """
    b = settings.backend
    if b.model_path is not None:
        b = b.model_copy(update={"model_path": b.model_path.expanduser()})
    missing: dict[str, str] = {}
    llama_server = str(b.llama_server or "llama-server")
    try:
        llama_server = str(embedded.find_llama_server(b.llama_server)[0])
    except embedded.MissingPart as exc:
        missing["llama_server"] = str(exc)
    # A model_path is what llama-server loads, also in place of the embedded file.
    local_file: str | None = str(b.model_path) if b.model_path is not None else None
    if local_file is None:
        try:
            local_file = str(embedded.find_embedded_model(b.embedded_model))
        except embedded.MissingPart as exc:
            missing["embedded_model"] = str(exc)
    headers: dict[str, GgufInfo] = {}
    header_problem = None
    if local_file is not None and not is_model_dir(Path(local_file)):
        try:
            headers[local_file] = read_header(local_file)
        except GgufError as exc:
            header_problem = str(exc)
    try:
        the_plan = plan(
            hw or probe(), b,
            llama_server=llama_server, embedded_model=local_file,
            vllm_cmd=find_vllm(), gguf_headers=headers,
        )  # fmt: skip
    except PlanError as exc:
        raise PlanError(f"{exc} ({header_problem})" if header_problem else str(exc)) from None
    problems: list[str] = []
    if the_plan.backend == "llamacpp":
        if "llama_server" in missing:
            problems.append(missing["llama_server"])
        if the_plan.model_size in EMBEDDED_NAMES and "embedded_model" in missing:
            problems.append(missing["embedded_model"])
        if header_problem and the_plan.model == local_file:
            problems.append(header_problem)
    elif the_plan.backend == "vllm":
        problems += vllm.check_floors(vllm.installed_versions(), the_plan.model_size)
    return the_plan, problems


def find_vllm() -> str:
    """The ``vllm`` script beside this Python first, so a venv's vLLM wins over another on PATH."""
    beside = Path(sys.executable).parent / "vllm"
    if beside.is_file():
        return str(beside)
    return shutil.which("vllm") or "vllm"


async def probe_remote(endpoint: str, *, api_key: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
    """What ``doctor`` reports about an endpoint: the models it lists, or why not,
    and whether it is an Ollama.  One attempt, short timeouts: a report, not a retry loop."""
    report: dict[str, Any] = {"endpoint": endpoint, "models": None, "error": None, "ollama": None}
    async with ChatClient(endpoint, "-", api_key=api_key, connect_timeout=timeout, read_timeout=timeout, max_retries=0) as client:
        try:
            report["models"] = [str(m.get("id")) for m in await client.models()]
        except LLMError as exc:
            report["error"] = f"remote endpoint {endpoint} is not usable: {exc}"
            return report
    report["ollama"] = await ollama.detect(ollama.root_of(endpoint), api_key=api_key, timeout=timeout)
    return report


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
                env=the_plan.env,
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
                    self._refuse(f"remote endpoint {self.plan.endpoint} is not usable: {exc}")
            await self._pin_ollama_context()
            names = ", ".join(str(m.get("id")) for m in models[:5]) or "no models listed"
            self.on_event("ready", f"remote endpoint {self.plan.endpoint} answers ({names}); model {self.plan.served_name}")
            self.error = None
            return
        if self.plan.backend == "vllm":
            unmet = vllm.check_floors(vllm.installed_versions(), self.plan.model_size)
            if unmet:
                self._refuse(f"cannot start vLLM: {'; '.join(unmet)}")
        binary = self.plan.command[0] if self.plan.command else ""
        if not Path(binary).is_file() and shutil.which(binary) is None:
            install = vllm.INSTALL_VLLM if self.plan.backend == "vllm" else embedded.INSTALL_SERVER
            self._refuse(f"cannot start {self.plan.backend}: {binary!r} not found; install it with: {install}")
        try:
            await self.supervisor.start()
            self.error = None
        except BackendStartError as exc:
            self.error = str(exc)
            raise BackendUnavailable(self.error) from None

    def _refuse(self, message: str) -> NoReturn:
        self.error = message
        self.on_event("failed", message)
        raise BackendUnavailable(message)

    async def _pin_ollama_context(self) -> None:
        """Point requests at a model with the planned context when the endpoint is
        Ollama (see :mod:`.ollama`); any other server is left as it is."""
        assert self.plan.endpoint is not None
        api_key = settings_mod.api_key(self.settings)
        root = ollama.root_of(self.plan.endpoint)
        found = await ollama.detect(root, api_key=api_key, timeout=self.settings.client.connect_timeout_s)
        if found is None:
            if self.plan.ollama:
                self.plan = self.plan.model_copy(update={
                    "ollama": False,
                    "reasons": [*self.plan.reasons, f"{root} does not answer Ollama's /api/version, so it is not treated as Ollama."],
                })  # fmt: skip
            return
        context = self.plan.context_length
        try:
            name, created = await ollama.pin_context(
                root, self.plan.model, context, found["models"],
                api_key=api_key, timeout=self.settings.client.read_timeout_s,
            )  # fmt: skip
        except ollama.OllamaError as exc:
            self._refuse(str(exc))
        reasons = list(self.plan.reasons)
        if not self.plan.ollama:
            reasons.append(ollama_context_reason(f"version {found['version']}, found by /api/version", self.plan.model, context))
        reasons.append(
            f"Ollama {found['version']}: {name!r} {'created now' if created else 'already existed'}; "
            f"requests name it, so they run with num_ctx {context}."
        )
        self.plan = self.plan.model_copy(update={"served_name": name, "ollama": True, "reasons": reasons})
        self.on_event("starting", f"Ollama: requests use {name} (num_ctx {context})")

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
            "quant": self.plan.quant,
            "context_length": self.plan.context_length,
            "tensor_parallel_size": self.plan.tensor_parallel_size,
            "gpu_layers": self.plan.gpu_layers,
            "command": self.plan.command,
            "reasons": self.plan.reasons,
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
