"""ChatClient against a real HTTP server on 127.0.0.1 that misbehaves on purpose.

Each test scripts how the server answers, then checks what the client did from
the server's side: how many requests arrived, what they contained, and when
the client hung up.  No mocks and no fake transports: retries, timeouts and
disconnects are only worth testing over real sockets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from ornith_lsp.llm import (
    ChatClient,
    Completion,
    LLMConnectionError,
    LLMHTTPError,
    LLMTimeout,
)

MESSAGES = [{"role": "user", "content": "Say hello."}]
SECRET = "sk-test-DO-NOT-LEAK-1234"
TIMINGS = {
    "cache_n": 8,
    "prompt_n": 4,
    "prompt_ms": 12.5,
    "prompt_per_second": 320.0,
    "predicted_n": 3,
    "predicted_ms": 30.0,
    "predicted_per_second": 100.0,
}


# --- the scripted server ------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


Behaviour = Callable[["ScriptedServer", Request, asyncio.StreamReader, asyncio.StreamWriter],
                     Awaitable[None]]


@dataclass
class ScriptedServer:
    """Answers the n-th request with behaviours[n] (the last one repeats)."""

    behaviours: list[Behaviour]
    requests: list[Request] = field(default_factory=list)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    disconnected_at: float | None = None
    port: int = 0
    _tasks: set[asyncio.Task] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def saw_disconnect(self) -> None:
        if self.disconnected_at is None:
            self.disconnected_at = time.monotonic()
            self.disconnected.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            request = await _read_request(reader)
            if request is not None:
                self.requests.append(request)
                behaviour = self.behaviours[min(len(self.requests), len(self.behaviours)) - 1]
                await behaviour(self, request, reader, writer)
        except ConnectionError:
            self.saw_disconnect()
        finally:
            writer.close()
            self._tasks.discard(task)


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    line = await reader.readline()
    if not line:
        return None
    method, path, _ = line.decode().split(" ", 2)
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return Request(method, path, headers, body)


async def _head(writer: asyncio.StreamWriter, status: int, headers: dict[str, str]) -> None:
    lines = [f"HTTP/1.1 {status} Scripted", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()


async def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(b"%x\r\n%s\r\n" % (len(data), data))
    await writer.drain()


def reply(status: int, body: dict | str = "") -> Behaviour:
    payload = (json.dumps(body) if isinstance(body, dict) else body).encode()

    async def behave(server, request, reader, writer):
        await _head(writer, status, {"Content-Type": "application/json",
                                     "Content-Length": str(len(payload))})
        writer.write(payload)
        await writer.drain()

    return behave


def sse(events: list[dict], *, first_delay: float = 0.0, die_after: int | None = None) -> Behaviour:
    """Stream events as SSE in chunked encoding, one event split over two TCP writes;
    with die_after, drop the connection mid-body after that many events."""

    async def behave(server, request, reader, writer):
        await _head(writer, 200, {"Content-Type": "text/event-stream",
                                  "Transfer-Encoding": "chunked"})
        await _chunk(writer, b": keep-alive comment\n\n")
        await asyncio.sleep(first_delay)
        for n, event in enumerate(events):
            if n == die_after:
                return
            data = f"data: {json.dumps(event)}\n\n".encode()
            await _chunk(writer, data[:9])
            await asyncio.sleep(0.005)
            await _chunk(writer, data[9:])
        await _chunk(writer, b"data: [DONE]\n\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    return behave


def trickle(interval: float, duration: float) -> Behaviour:
    """One content delta every interval; notes the moment the client hangs up."""

    async def behave(server, request, reader, writer):
        await _head(writer, 200, {"Content-Type": "text/event-stream",
                                  "Transfer-Encoding": "chunked"})
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            await _chunk(writer, f"data: {json.dumps(delta('tick '))}\n\n".encode())
            try:
                if await asyncio.wait_for(reader.read(1), interval) == b"":
                    server.saw_disconnect()
                    return
            except TimeoutError:
                pass

    return behave


async def hang(server, request, reader, writer):
    """Accept the request, never answer, and wait for the client to give up."""
    await reader.read()
    server.saw_disconnect()


def delta(content: str | None = None, **fields) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": content, **fields}}]}


def completion_body(text: str = "Hello!") -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15,
                  "prompt_tokens_details": {"cached_tokens": 5}},
        "timings": TIMINGS,
    }


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def serve():
    servers: list[ScriptedServer] = []

    async def start(*behaviours: Behaviour) -> ScriptedServer:
        server = ScriptedServer(list(behaviours))
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def client_for():
    clients: list[ChatClient] = []

    def make(url: str, **kwargs) -> ChatClient:
        kwargs.setdefault("model", "test-model")
        kwargs.setdefault("backoff_s", 0.01)
        kwargs.setdefault("connect_timeout", 2.0)
        kwargs.setdefault("read_timeout", 5.0)
        client = ChatClient(url, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def collect(client: ChatClient, **kwargs) -> list[str | Completion]:
    return [item async for item in client.stream(MESSAGES, **kwargs)]


# --- retries ------------------------------------------------------------------


async def test_5xx_is_retried_with_backoff_until_success(serve, client_for):
    server = await serve(reply(503, "loading model"), reply(503, "loading model"),
                         reply(200, completion_body("Hello!")))
    client = client_for(server.url, backoff_s=0.05, max_retries=3)
    start = time.monotonic()
    result = await client.complete(MESSAGES)
    elapsed = time.monotonic() - start
    assert result.text == "Hello!"
    assert len(server.requests) == 3
    assert elapsed >= 0.05 + 0.10


async def test_persistent_5xx_raises_http_error_after_all_retries(serve, client_for):
    server = await serve(reply(500, {"error": {"message": "boom"}}))
    client = client_for(server.url, max_retries=2)
    with pytest.raises(LLMHTTPError) as info:
        await client.complete(MESSAGES)
    assert info.value.status_code == 500
    assert "boom" in info.value.body
    assert len(server.requests) == 3


@pytest.mark.parametrize("status", [400, 404])
async def test_4xx_is_never_retried(serve, client_for, status):
    server = await serve(reply(status, {"error": {"message": "bad request"}}),
                         reply(200, completion_body()))
    client = client_for(server.url, max_retries=3)
    with pytest.raises(LLMHTTPError) as info:
        await client.complete(MESSAGES)
    assert info.value.status_code == status
    assert len(server.requests) == 1
    message = str(info.value)
    assert f"{server.url}/chat/completions" in message
    assert str(status) in message


async def test_connection_refused_retries_then_raises(client_for, caplog):
    caplog.set_level(logging.DEBUG, logger="ornith_lsp.llm")
    url = f"http://127.0.0.1:{unused_port()}/v1"
    client = client_for(url, max_retries=3, backoff_s=0.02, api_key=SECRET)
    start = time.monotonic()
    with pytest.raises(LLMConnectionError) as info:
        await client.complete(MESSAGES)
    elapsed = time.monotonic() - start
    attempts = [r for r in caplog.records if r.name == "ornith_lsp.llm" and "attempt" in r.message]
    assert len(attempts) == 4
    assert 0.02 + 0.04 + 0.08 <= elapsed < 2.0
    assert url in str(info.value)
    assert SECRET not in str(info.value) and SECRET not in caplog.text


async def test_read_timeout_is_not_retried(serve, client_for):
    server = await serve(hang)
    client = client_for(server.url, read_timeout=0.5, max_retries=3)
    start = time.monotonic()
    with pytest.raises(LLMTimeout) as info:
        await client.complete(MESSAGES)
    assert 0.5 <= time.monotonic() - start < 2.0
    assert len(server.requests) == 1
    assert server.url in str(info.value)


# --- streaming ----------------------------------------------------------------


async def test_stream_yields_deltas_then_a_completion_with_usage_and_timings(serve, client_for):
    server = await serve(sse([
        delta("", role="assistant"),
        delta("Hel"),
        delta("lo"),
        delta(", world"),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3,
                                  "total_tokens": 15}, "timings": TIMINGS},
    ], first_delay=0.05))
    client = client_for(server.url, flavor="llamacpp")
    items = await collect(client, max_tokens=16)

    assert items[:-1] == ["Hel", "lo", ", world"]
    final = items[-1]
    assert isinstance(final, Completion)
    assert final.text == "Hello, world"
    assert final.finish_reason == "stop"
    assert final.usage.model_dump() == {"prompt_tokens": 12, "completion_tokens": 3,
                                        "cached_tokens": 8}
    assert final.timings == TIMINGS
    assert final.tokens_per_second == 100.0
    assert final.ttft_s is not None and 0.05 <= final.ttft_s <= final.elapsed_s
    sent = server.requests[0].json()
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


async def test_stream_merges_tool_call_fragments(serve, client_for):
    def call(index: int, **fields) -> dict:
        return delta(None, tool_calls=[{"index": index, **fields}])

    server = await serve(sse([
        call(0, id="call_a", type="function", function={"name": "read_file", "arguments": ""}),
        call(0, function={"arguments": '{"path": '}),
        call(1, id="call_b", type="function", function={"name": "grep", "arguments": '{"pat'}),
        call(0, function={"arguments": '"src/a.py"}'}),
        call(1, function={"arguments": 'tern": "TODO"}'}),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]))
    client = client_for(server.url)
    items = await collect(client, tools=[{"type": "function", "function": {"name": "read_file"}}])

    assert len(items) == 1
    final = items[0]
    assert final.text == "" and final.ttft_s is None
    assert final.finish_reason == "tool_calls"
    assert [(c["id"], c["type"], c["function"]["name"]) for c in final.tool_calls] == [
        ("call_a", "function", "read_file"),
        ("call_b", "function", "grep"),
    ]
    assert json.loads(final.tool_calls[0]["function"]["arguments"]) == {"path": "src/a.py"}
    assert json.loads(final.tool_calls[1]["function"]["arguments"]) == {"pattern": "TODO"}


async def test_stream_retries_before_first_byte_but_never_after(serve, client_for):
    server = await serve(reply(503), sse([delta("partial"), delta("never sent")], die_after=1))
    client = client_for(server.url, max_retries=3)
    received = []
    with pytest.raises(LLMConnectionError):
        async for item in client.stream(MESSAGES):
            received.append(item)
    assert received == ["partial"]
    await asyncio.sleep(0.1)
    assert len(server.requests) == 2


async def test_cancelling_the_consumer_closes_the_connection(serve, client_for):
    server = await serve(trickle(interval=0.1, duration=30))
    client = client_for(server.url)
    first = asyncio.Event()

    async def consume():
        async for _ in client.stream(MESSAGES):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 2.0)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(server.disconnected.wait(), 1.0)
    assert server.disconnected_at - cancelled_at < 1.0
    assert len(server.requests) == 1


async def test_closing_the_stream_generator_closes_the_connection(serve, client_for):
    server = await serve(trickle(interval=0.1, duration=30))
    client = client_for(server.url)
    stream = client.stream(MESSAGES)
    assert await anext(stream) == "tick "
    await stream.aclose()
    await asyncio.wait_for(server.disconnected.wait(), 1.0)


# --- request bodies and secrets -----------------------------------------------

SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


async def test_openai_flavor_sends_response_format_and_only_given_fields(serve, client_for):
    server = await serve(reply(200, completion_body("Hi")))
    client = client_for(server.url)
    result = await client.complete(MESSAGES, max_tokens=64, temperature=0.0, json_schema=SCHEMA)

    assert server.requests[0].path == "/v1/chat/completions"
    assert server.requests[0].json() == {
        "model": "test-model",
        "messages": MESSAGES,
        "max_tokens": 64,
        "temperature": 0.0,
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "response", "schema": SCHEMA, "strict": True}},
    }
    assert "authorization" not in server.requests[0].headers
    assert result.text == "Hi" and result.finish_reason == "stop"
    assert result.usage.model_dump() == {"prompt_tokens": 12, "completion_tokens": 3,
                                         "cached_tokens": 5}
    assert result.timings == TIMINGS and result.ttft_s is None


async def test_llamacpp_flavor_sends_native_fields(serve, client_for):
    server = await serve(reply(200, completion_body()))
    client = client_for(server.url, flavor="llamacpp")
    tools = [{"type": "function", "function": {"name": "grep", "parameters": {}}}]
    await client.complete(MESSAGES, json_schema=SCHEMA, stop=["\n\n"], tools=tools,
                          tool_choice="auto", extra={"top_k": 20})
    await client.complete(MESSAGES, grammar='root ::= "yes" | "no"')

    schema_body, grammar_body = (r.json() for r in server.requests)
    assert schema_body["json_schema"] == SCHEMA
    assert "response_format" not in schema_body
    assert schema_body["cache_prompt"] is True
    assert schema_body["stop"] == ["\n\n"] and schema_body["tools"] == tools
    assert schema_body["tool_choice"] == "auto" and schema_body["top_k"] == 20
    assert grammar_body["grammar"] == 'root ::= "yes" | "no"'
    assert grammar_body["cache_prompt"] is True


async def test_grammar_with_openai_flavor_fails_before_any_request(serve, client_for):
    server = await serve(reply(200, completion_body()))
    client = client_for(server.url)
    with pytest.raises(ValueError):
        await client.complete(MESSAGES, grammar="root ::= x")
    with pytest.raises(ValueError):
        await collect(client, grammar="root ::= x")
    assert server.requests == []


async def test_api_key_is_sent_but_never_revealed(serve, client_for, caplog):
    caplog.set_level(logging.DEBUG)
    echo = {"error": {"message": f"Incorrect API key provided: {SECRET}"}}
    server = await serve(reply(200, completion_body()), reply(401, echo))
    client = client_for(server.url, api_key=SECRET)
    await client.complete(MESSAGES)
    with pytest.raises(LLMHTTPError) as info:
        await client.complete(MESSAGES)

    assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert info.value.status_code == 401
    assert "401" in str(info.value) and "Incorrect API key" in str(info.value)
    for text in (str(info.value), repr(info.value), info.value.body, repr(client), caplog.text):
        assert SECRET not in text


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
async def test_base_url_is_normalised(serve, client_for, suffix):
    models = {"object": "list", "data": [{"id": "qwen", "object": "model"}]}
    server = await serve(reply(200, completion_body()), reply(200, models))
    client = client_for(f"http://127.0.0.1:{server.port}{suffix}")
    await client.complete(MESSAGES)
    assert await client.models() == models["data"]
    assert [r.path for r in server.requests] == ["/v1/chat/completions", "/v1/models"]
    assert [r.method for r in server.requests] == ["POST", "GET"]


# --- health -------------------------------------------------------------------


async def test_health(serve, client_for):
    up = await serve(reply(200, {"status": "ok"}))
    loading = await serve(reply(503, {"error": {"message": "Loading model"}}))
    assert await client_for(up.url).health() is True
    assert up.requests[0].path == "/health"
    assert await client_for(loading.url).health() is False
    assert len(loading.requests) == 1
    start = time.monotonic()
    assert await client_for(f"http://127.0.0.1:{unused_port()}/v1").health() is False
    assert time.monotonic() - start < 1.0


async def test_client_is_an_async_context_manager(serve):
    server = await serve(reply(200, completion_body("ctx")))
    async with ChatClient(server.url, "m") as client:
        assert (await client.complete(MESSAGES)).text == "ctx"
