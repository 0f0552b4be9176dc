"""The embedded backend for real: llama-server + the tiny GGUF from PyPI.

Start, health, a streamed chat, a schema-constrained answer that parses,
``kill -9`` followed by automatic recovery, bounded restarts, clean shutdown.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

import pytest

from ornith_lsp import settings as settings_mod
from ornith_lsp.backends.runtime import Backend, BackendUnavailable, make_plan
from ornith_lsp.llm.client import Completion

from conftest import alive

pytestmark = pytest.mark.usefixtures("no_new_llama_servers")


def embedded_settings(tmp_path, **backend):
    return settings_mod.load(
        None, cli={"backend": {"kind": "embedded", "embedded_model": "tiny", **backend}, "log_dir": str(tmp_path / "logs")}, environ={}
    )


async def started(tmp_path, events=None, **backend) -> Backend:
    s = embedded_settings(tmp_path, **backend)
    the_plan, problems = make_plan(s)
    assert problems == []
    b = Backend(s, the_plan, on_event=(lambda k, m: events.append((k, m))) if events is not None else None)
    await b.start()
    return b


async def test_start_stream_schema_and_clean_stop(tmp_path, llama_server, embedded_model):
    events: list[tuple[str, str]] = []
    backend = await started(tmp_path, events)
    pid = backend.supervisor.pid
    try:
        status = await backend.status()
        assert status["state"] == "ready" and status["health"] == "ok"
        assert status["kind"] == "llamacpp"
        assert status["context_length"] >= 2048
        assert os.path.isfile(status["log_path"])
        assert [k for k, _ in events][:2] == ["starting", "ready"]

        async with backend.client() as client:
            deltas, final = [], None
            async for item in client.stream([{"role": "user", "content": "Count from 1 to 5."}], max_tokens=24):
                if isinstance(item, str):
                    deltas.append(item)
                else:
                    final = item
            assert isinstance(final, Completion)
            assert len(deltas) >= 2 and "".join(deltas) == final.text
            assert final.usage.completion_tokens > 0
            assert final.ttft_s is not None and 0 < final.ttft_s < final.elapsed_s
            assert final.timings.get("predicted_n", 0) > 0

            schema = {
                "type": "object",
                "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                "required": ["name", "age"],
            }
            done = await client.complete(
                [{"role": "user", "content": "Describe a person as JSON."}], json_schema=schema, max_tokens=64
            )
            obj = json.loads(done.text)
            assert isinstance(obj["name"], str) and isinstance(obj["age"], int)

            count = client.token_counter()
            one, many = await asyncio.to_thread(count, "hello world"), await asyncio.to_thread(count, "hello world " * 50)
            assert 1 <= one < many and many >= 50
    finally:
        await backend.stop()
    assert not alive(pid)
    assert backend.supervisor.state == "stopped"


async def test_kill_9_is_recovered_then_restarts_are_bounded(tmp_path, llama_server, embedded_model):
    events: list[tuple[str, str]] = []
    backend = await started(tmp_path, events, max_restarts=1)
    sup = backend.supervisor
    sup.backoff_s = 0.1
    try:
        first = sup.pid
        os.kill(first, signal.SIGKILL)
        await asyncio.sleep(0.2)
        assert await sup.wait_ready(60)
        second = sup.pid
        assert second != first and not alive(first)
        assert sup.restarts == 1
        assert any(k == "crashed" and "exited with code" in m for k, m in events)
        async with backend.client() as client:
            done = await client.complete([{"role": "user", "content": "Hi"}], max_tokens=4)
        assert done.usage.completion_tokens > 0

        os.kill(second, signal.SIGKILL)
        for _ in range(100):
            if sup.state == "failed":
                break
            await asyncio.sleep(0.05)
        assert sup.state == "failed"
        assert any(k == "failed" and "gave up after 1 restarts" in m for k, m in events)
        assert (await backend.status())["health"] == "down"
    finally:
        await backend.stop()


async def test_backend_that_exits_during_start_up_gives_the_log_tail(tmp_path, llama_server):
    not_a_model = tmp_path / "broken.gguf"
    not_a_model.write_bytes(b"this is not a gguf file")
    s = embedded_settings(tmp_path, model_path=str(not_a_model))
    the_plan, _ = make_plan(s)
    backend = Backend(s, the_plan)
    with pytest.raises(BackendUnavailable) as info:
        await backend.start()
    msg = str(info.value)
    assert "exited with code" in msg and "during start-up" in msg
    assert str(backend.log_path) in msg
    assert backend.supervisor.state == "failed"
    await backend.stop()


async def test_missing_binary_is_one_clear_message(tmp_path):
    missing = tmp_path / "no-such-llama-server"
    s = embedded_settings(tmp_path, llama_server=str(missing))
    the_plan, problems = make_plan(s)
    assert any(str(missing) in p and "not an executable file" in p for p in problems)
    backend = Backend(s, the_plan)
    with pytest.raises(BackendUnavailable) as info:
        await backend.start()
    assert str(missing) in str(info.value) and "pip install" in str(info.value)
    assert "\n" not in str(info.value)
