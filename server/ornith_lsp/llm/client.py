"""An async client for OpenAI-compatible chat servers (llama-server, vLLM, hosted APIs).

It knows URLs and nothing else of ornith_lsp, so any backend can hand it an
endpoint.  A local model server restarts, loads slowly and runs out of slots,
so failures to get an answer started are retried; but a request the server may
already be working on (a read timeout, a stream that has begun) is never sent
twice, because a duplicate generation would waste minutes of GPU time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import httpx
import pydantic

log = logging.getLogger("ornith_lsp.llm")

_RETRYABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError)


@functools.cache
def _tls(trust_env: bool) -> ssl.SSLContext:
    """One TLS context per process: building one loads the whole CA bundle
    (tens of ms of CPU), and a client is made per fix, on the event loop
    that answers the editor."""
    return httpx.create_ssl_context(trust_env=trust_env)


class Usage(pydantic.BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


class Completion(pydantic.BaseModel):
    text: str
    tool_calls: list[dict] = []
    finish_reason: str | None = None
    usage: Usage
    timings: dict = {}
    ttft_s: float | None = None
    elapsed_s: float

    @property
    def tokens_per_second(self) -> float | None:
        """Prefer the server's own measure: it excludes queueing and network time."""
        measured = self.timings.get("predicted_per_second")
        if measured is not None:
            return float(measured)
        generating = self.elapsed_s - (self.ttft_s or 0.0)
        if self.usage.completion_tokens and generating > 0:
            return self.usage.completion_tokens / generating
        return None


class LLMError(Exception):
    """Base of every failure, so a caller can show one sentence instead of a traceback."""


class LLMConnectionError(LLMError):
    pass


class LLMHTTPError(LLMError):
    def __init__(self, message: str, status_code: int, body: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class LLMTimeout(LLMError):
    pass


class ChatClient:
    """Holds one connection pool, so share an instance between requests to a server."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        flavor: Literal["openai", "llamacpp"] = "openai",
        connect_timeout: float = 5.0,
        read_timeout: float = 300.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if flavor not in ("openai", "llamacpp"):
            raise ValueError(f"flavor must be 'openai' or 'llamacpp', not {flavor!r}")
        self.root = base_url.rstrip("/").removesuffix("/v1")
        self.model = model
        self.flavor = flavor
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._connect_timeout = connect_timeout
        self._api_key = api_key
        # A proxy from the environment must never sit between us and a
        # server on this machine; remote endpoints still honour it.
        trust_env = httpx.URL(self.root).host not in ("127.0.0.1", "localhost", "::1")
        self._http = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            transport=transport,
            trust_env=trust_env,
            verify=_tls(trust_env),
            timeout=httpx.Timeout(
                connect=connect_timeout, read=read_timeout,
                write=connect_timeout, pool=connect_timeout,
            ),
        )

    def __repr__(self) -> str:
        return f"ChatClient(root={self.root!r}, model={self.model!r}, flavor={self.flavor!r})"

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def complete(
        self,
        messages: list[dict],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: list[str] | None = None,
        tools: list[dict] | None = None,
        tool_choice: str | dict | None = None,
        json_schema: dict | None = None,
        grammar: str | None = None,
        extra: dict | None = None,
    ) -> Completion:
        body = self._body(
            messages, json_schema, grammar, extra, max_tokens=max_tokens,
            temperature=temperature, stop=stop, tools=tools, tool_choice=tool_choice,
        )
        url = f"{self.root}/v1/chat/completions"
        start = time.monotonic()
        async with self._open("POST", url, body) as response, self._translate(url):
            payload = _json(await response.aread(), url)
        choice = (payload.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        timings = payload.get("timings") or {}
        return Completion(
            text=message.get("content") or "",
            tool_calls=message.get("tool_calls") or [],
            finish_reason=choice.get("finish_reason"),
            usage=_usage(payload.get("usage"), timings),
            timings=timings,
            elapsed_s=time.monotonic() - start,
        )

    async def stream(
        self,
        messages: list[dict],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: list[str] | None = None,
        tools: list[dict] | None = None,
        tool_choice: str | dict | None = None,
        json_schema: dict | None = None,
        grammar: str | None = None,
        extra: dict | None = None,
    ) -> AsyncIterator[str | Completion]:
        """Yield text deltas, then one Completion, so a caller can show progress and still
        get usage and timings.  Closing or cancelling the consumer closes the connection,
        which is how llama-server learns to stop generating and free its slot."""
        body = self._body(
            messages, json_schema, grammar, extra, max_tokens=max_tokens,
            temperature=temperature, stop=stop, tools=tools, tool_choice=tool_choice,
        )
        body.update(stream=True, stream_options={"include_usage": True})
        url = f"{self.root}/v1/chat/completions"
        start = time.monotonic()
        ttft: float | None = None
        text: list[str] = []
        calls: dict[int, dict] = {}
        finish_reason = usage = None
        timings: dict = {}
        async with self._open("POST", url, body) as response, self._translate(url):
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = _json(data, url)
                if "error" in chunk:
                    detail = self._redact(json.dumps(chunk["error"]))[:300]
                    raise LLMError(f"The LLM server at {url} failed mid-stream: {detail}")
                usage = chunk.get("usage") or usage
                timings = chunk.get("timings") or timings
                for choice in chunk.get("choices") or []:
                    finish_reason = choice.get("finish_reason") or finish_reason
                    delta = choice.get("delta") or {}
                    _merge_tool_calls(calls, delta.get("tool_calls") or [])
                    if content := delta.get("content"):
                        if ttft is None:
                            ttft = time.monotonic() - start
                        text.append(content)
                        yield content
        yield Completion(
            text="".join(text),
            tool_calls=[calls[i] for i in sorted(calls)],
            finish_reason=finish_reason,
            usage=_usage(usage, timings),
            timings=timings,
            ttft_s=ttft,
            elapsed_s=time.monotonic() - start,
        )

    async def models(self) -> list[dict]:
        url = f"{self.root}/v1/models"
        async with self._open("GET", url) as response, self._translate(url):
            return _json(await response.aread(), url).get("data") or []

    async def health(self) -> bool:
        """A probe for polling a starting server: no retries, and the short connect
        timeout for every phase, so a wedged server cannot stall the poller."""
        try:
            response = await self._http.get(
                f"{self.root}/health", timeout=httpx.Timeout(self._connect_timeout)
            )
        except Exception as exc:
            log.debug("GET %s/health failed: %s", self.root, type(exc).__name__)
            return False
        return response.status_code == 200

    def token_counter(self) -> Callable[[str], int] | None:
        """A synchronous counter on llama-server's ``/tokenize`` (the repo map is
        cut to a budget by a binary search that calls it a dozen times, from a
        worker thread); None for servers without one, and callers then estimate."""
        if self.flavor != "llamacpp":
            return None
        url = f"{self.root}/tokenize"
        timeout = self._connect_timeout

        def count(text: str) -> int:
            with httpx.Client(timeout=timeout, trust_env=False) as http:
                response = http.post(url, json={"content": text})
                response.raise_for_status()
                return len(response.json().get("tokens", []))

        return count

    def _body(
        self,
        messages: list[dict],
        json_schema: dict | None,
        grammar: str | None,
        extra: dict | None,
        **optional: Any,
    ) -> dict[str, Any]:
        if grammar is not None and self.flavor != "llamacpp":
            raise ValueError("grammar is a llama.cpp extension: use flavor='llamacpp'")
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        body.update({k: v for k, v in optional.items() if v is not None})
        if self.flavor == "llamacpp":
            body["cache_prompt"] = True
            if json_schema is not None:
                body["json_schema"] = json_schema
            if grammar is not None:
                body["grammar"] = grammar
        elif json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": json_schema, "strict": True},
            }
        body.update(extra or {})
        return body

    @contextlib.asynccontextmanager
    async def _open(
        self, method: str, url: str, body: dict | None = None
    ) -> AsyncIterator[httpx.Response]:
        """Retry until a successful response's headers arrive, then hand it over.  The
        loop ends before the yield, so nothing that goes wrong in the body is resent."""
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            request = self._http.build_request(method, url, json=body)
            try:
                response = await self._http.send(request, stream=True)
            except _RETRYABLE as exc:
                log.debug("%s %s attempt %d/%d: %r", method, url, attempt + 1, attempts, exc)
                if attempt + 1 < attempts:
                    continue
                raise LLMConnectionError(
                    f"Could not reach the LLM server at {url} in {attempts} attempts ({exc})."
                ) from None
            except httpx.HTTPError as exc:
                raise self._error(url, exc) from None
            status = response.status_code
            log.debug("%s %s attempt %d/%d: HTTP %d", method, url, attempt + 1, attempts, status)
            if status < 400:
                break
            try:
                raw = await response.aread()
            except httpx.HTTPError:
                raw = b""
            finally:
                await response.aclose()
            if status >= 500 and attempt + 1 < attempts:
                continue
            text = self._redact(raw.decode("utf-8", "replace"))[:500]
            detail = " ".join(text[:200].split())
            raise LLMHTTPError(
                f"The LLM server at {url} answered HTTP {status}"
                + (f": {detail}" if detail else "."),
                status,
                text,
            )
        try:
            yield response
        finally:
            await response.aclose()

    @contextlib.asynccontextmanager
    async def _translate(self, url: str) -> AsyncIterator[None]:
        try:
            yield
        except httpx.HTTPError as exc:
            raise self._error(url, exc) from None

    def _error(self, url: str, exc: httpx.HTTPError) -> LLMError:
        name = type(exc).__name__
        if isinstance(exc, httpx.TimeoutException):
            return LLMTimeout(f"The LLM server at {url} did not answer in time ({name}).")
        return LLMConnectionError(
            f"The connection to the LLM server at {url} failed ({name}: {exc})."
        )

    def _redact(self, text: str) -> str:
        """A server may echo a rejected key back in its error body."""
        return text.replace(self._api_key, "***") if self._api_key else text


def _json(raw: bytes | str, url: str) -> dict:
    try:
        value = json.loads(raw)
    except ValueError:
        raise LLMError(f"The LLM server at {url} sent something that is not JSON.") from None
    if not isinstance(value, dict):
        raise LLMError(f"The LLM server at {url} sent JSON that is not an object.")
    return value


def _usage(raw: dict | None, timings: dict) -> Usage:
    """llama.cpp reports cache hits only in timings, and some builds omit usage."""
    raw = raw or {}
    details = raw.get("prompt_tokens_details") or {}
    cache_n = timings.get("cache_n") or 0
    return Usage(
        prompt_tokens=_first(raw.get("prompt_tokens"), (timings.get("prompt_n") or 0) + cache_n),
        completion_tokens=_first(raw.get("completion_tokens"), timings.get("predicted_n") or 0),
        cached_tokens=_first(details.get("cached_tokens"), cache_n),
    )


def _first(value: int | None, fallback: int) -> int:
    return fallback if value is None else value


def _merge_tool_calls(calls: dict[int, dict], deltas: list[dict]) -> None:
    """Streams split one call over chunks that share an index; only the arguments are
    fragmented, so they are concatenated and the other fields taken as they come."""
    for delta in deltas:
        call = calls.setdefault(
            delta.get("index", len(calls)),
            {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
        )
        call["id"] = delta.get("id") or call["id"]
        call["type"] = delta.get("type") or call["type"]
        function = delta.get("function") or {}
        call["function"]["name"] = function.get("name") or call["function"]["name"]
        call["function"]["arguments"] += function.get("arguments") or ""
