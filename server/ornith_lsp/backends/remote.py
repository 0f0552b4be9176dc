"""A server someone else runs: its plan, and what ``doctor`` learns by asking it.

Nothing is started for a remote endpoint, so its plan is only names and a
context length, each with where it came from; when the port is Ollama's the
plan says how its context will be pinned (see :mod:`.ollama`).
"""

from __future__ import annotations

from typing import Any

from ..llm.client import ChatClient, LLMError
from ..settings import BackendSettings
from . import ollama
from .catalog import MODELS, SERVED_NAME
from .plans import Plan, PlanError

REMOTE_CONTEXT = 32768
"""Assumed when ``backend.context_length`` is not set: the server's real limit is unknown."""

LOCAL_ONLY = (
    "quant", "gpu_layers", "cpu_moe_layers", "tensor_parallel_size", "pipeline_parallel_size", "model_path",
)  # fmt: skip
"""Settings a remote server chooses for itself; the plan says it ignores them."""


def remote_plan(backend: BackendSettings) -> Plan:
    """The plan for ``backend.endpoint``: names and context, each with its source."""
    if not backend.endpoint:
        raise PlanError("backend.kind = 'remote' needs backend.endpoint, the server's base URL")
    model = backend.model or SERVED_NAME
    context = backend.context_length or REMOTE_CONTEXT
    ollama_port = ollama.is_ollama_port(backend.endpoint)
    return Plan(
        backend="remote",
        model=model,
        model_size=backend.model_size if backend.model_size in MODELS else None,
        quant=None,
        context_length=context,
        tensor_parallel_size=None,
        gpu_layers=None,
        command=[],
        endpoint=backend.endpoint,
        ollama=ollama_port,
        served_name=model,
        expected_tokens_per_second=None,
        reasons=_reasons(backend, model, context, ollama_port),
    )


def _reasons(backend: BackendSettings, model: str, context: int, ollama_port: bool) -> list[str]:
    if backend.kind == "remote":
        why = "backend.kind = 'remote'"
    elif backend.kind == "auto":
        why = "backend.endpoint is set"
    else:
        why = f"backend.endpoint is set, which wins over backend.kind = {backend.kind!r}"
    model_source = "comes from backend.model" if backend.model else "is the release's served name (no backend.model)"
    context_source = (
        "comes from backend.context_length"
        if backend.context_length
        else "is an assumed default, since the server's real limit is unknown; set backend.context_length"
    )
    text = [
        f"Remote backend because {why}: requests go to {backend.endpoint} and nothing is started here.",
        f"Model name {model!r} {model_source}.",
        f"Context {context} {context_source}.",
    ]
    ignored = [f"backend.{f}" for f in LOCAL_ONLY if getattr(backend, f) is not None]
    if ignored:
        text.append(f"Ignored for a remote server, which chooses these itself: {', '.join(ignored)}.")
    if ollama_port:
        text.append(ollama.ollama_context_reason(f"port {ollama.OLLAMA_PORT} is Ollama's", model, context))
    return text


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
