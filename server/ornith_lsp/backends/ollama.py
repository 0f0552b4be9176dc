"""Ollama as a remote endpoint: finding it, and pinning its context length.

Ollama serves the OpenAI API that the client speaks, with one trap: that API
ignores ``num_ctx``, so every request runs at the server's default context
(2048-4096 tokens on most machines) and a longer prompt loses its beginning
without an error.  Ollama's documented fix for ``/v1`` is a model whose
Modelfile says ``PARAMETER num_ctx N``; :func:`pin_context` creates exactly
that through ``POST /api/create`` (a new tag sharing the same weights) and
the requests then name it.  It refuses rather than let Ollama pull a model
the user does not have: nothing is downloaded at start.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

OLLAMA_PORT = 11434
DEFAULT_HOST = f"127.0.0.1:{OLLAMA_PORT}"


class OllamaError(RuntimeError):
    """Ollama answered but cannot serve the plan; the message says what to do."""


def is_ollama_port(endpoint: str | None) -> bool:
    try:
        return bool(endpoint) and urlsplit(endpoint).port == OLLAMA_PORT
    except ValueError:
        return False


def ollama_context_reason(how: str, model: str, context: int) -> str:
    """Why and how the context is pinned: Ollama's OpenAI-compatible API ignores
    ``num_ctx``, and a server left at its default (2048-4096 tokens on most
    machines) silently drops the start of a longer prompt."""
    return (
        f"Ollama ({how}): its OpenAI-compatible API ignores num_ctx, so at start a model "
        f"{ollama_model_name(model, context)!r} is created from {model!r} with PARAMETER num_ctx {context} "
        "(POST /api/create, what a Modelfile does; the weights are shared, nothing is downloaded) "
        "and every request names it."
    )


def ollama_model_name(model: str, context: int) -> str:
    """``qwen2.5-coder:7b`` -> ``qwen2.5-coder:7b-ornith-ctx32768``: a tag of the
    same model, so ``ollama list`` shows where it came from."""
    suffix = f"-ornith-ctx{context}"
    if model.endswith(suffix):
        return model
    name, _, tag = model.rpartition(":") if ":" in model.rsplit("/", 1)[-1] else (model, "", "latest")
    return f"{name}:{tag}{suffix}"


def root_of(endpoint: str) -> str:
    return endpoint.rstrip("/").removesuffix("/v1")


def default_root(environ: Mapping[str, str] | None = None) -> str:
    """Where a local Ollama listens: ``$OLLAMA_HOST`` (Ollama's own variable,
    ``host:port`` or a URL), else 127.0.0.1:11434."""
    host = (os.environ if environ is None else environ).get("OLLAMA_HOST") or DEFAULT_HOST
    if "://" not in host:
        host = f"http://{host}"
    if host.startswith("http://0.0.0.0"):
        host = host.replace("0.0.0.0", "127.0.0.1", 1)
    return host.rstrip("/")


def _client(api_key: str | None, timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
        timeout=timeout,
        trust_env=False,
    )


async def detect(root: str, *, api_key: str | None = None, timeout: float = 2.0) -> dict[str, Any] | None:
    """``{"root", "version", "models"}`` when ``root`` is an Ollama server, else None.

    ``GET /api/version`` is Ollama's own route: llama-server and vLLM answer it
    with 404, so a JSON ``version`` there is a reliable sign.
    """
    async with _client(api_key, timeout) as http:
        try:
            response = await http.get(f"{root}/api/version")
            version = response.json().get("version") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        if not isinstance(version, str):
            return None
        try:
            tags = (await http.get(f"{root}/api/tags")).json().get("models") or []
        except (httpx.HTTPError, ValueError, AttributeError):
            tags = []
    names = [str(m.get("name") or m.get("model")) for m in tags if isinstance(m, dict)]
    return {"root": root, "version": version, "models": names}


def _same(a: str, b: str) -> bool:
    """``llama3`` and ``llama3:latest`` are one model to Ollama."""
    def full(name: str) -> str:
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"

    return full(a) == full(b)


async def pin_context(
    root: str, model: str, context: int, models: list[str], *, api_key: str | None = None, timeout: float = 60.0
) -> tuple[str, bool]:
    """Return the model name that runs ``model`` at ``context`` tokens, and
    whether it had to be created now."""
    pinned = ollama_model_name(model, context)
    if any(_same(pinned, m) for m in models):
        return pinned, False
    if not any(_same(model, m) for m in models):
        have = ", ".join(models[:10]) or "none"
        raise OllamaError(
            f"Ollama at {root} has no model {model!r} (it has: {have}); pull it with: ollama pull {model}, "
            "or set backend.model to one it has"
        )
    body = {"model": pinned, "from": model, "parameters": {"num_ctx": context}, "stream": False}
    async with _client(api_key, timeout) as http:
        try:
            response = await http.post(f"{root}/api/create", json=body)
        except httpx.HTTPError as exc:
            raise OllamaError(f"Ollama at {root}: POST /api/create failed ({type(exc).__name__}: {exc})") from None
    if response.status_code != 200:
        detail = " ".join(response.text.split())[:200]
        raise OllamaError(
            f"Ollama at {root} could not create {pinned!r} with num_ctx {context} (HTTP "
            f"{response.status_code}: {detail}); upgrade Ollama, or create a model with "
            f"PARAMETER num_ctx {context} yourself and set backend.model to it"
        )
    return pinned, True
