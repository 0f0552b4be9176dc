"""Backends beyond the embedded default: a custom GGUF served by the real
llama-server, vLLM's version floors (vLLM is not installed here, which is the
refusal case), the supervisor's environment, the status an editor sees, and
Ollama -- against a small fake Ollama, since a real one is not installed."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ornith_lsp import settings as settings_mod
from ornith_lsp.backends import ollama, vllm
from ornith_lsp.backends.catalog import CUSTOM
from ornith_lsp.backends.hardware import Gpu, Hardware
from ornith_lsp.backends.remote import probe_remote
from ornith_lsp.backends.runtime import Backend, BackendUnavailable, make_plan
from ornith_lsp.backends.supervisor import Supervisor

pytestmark = pytest.mark.usefixtures("no_new_llama_servers")

H100S = Hardware(
    gpus=[Gpu(index=i, name="NVIDIA H100 80GB HBM3", total_mib=81920, free_mib=81920) for i in range(8)],
    ram_mib=512 * 1024,
    cpu_cores=64,
    source="test",
)


def load(tmp_path: Path, **backend) -> settings_mod.Settings:
    return settings_mod.load(None, cli={"backend": backend, "log_dir": str(tmp_path / "logs")}, environ={})


# vLLM version floors ------------------------------------------------------


@pytest.mark.parametrize(
    ("versions", "size", "expected"),
    [
        ({"vllm": "0.19.1", "transformers": "5.8.1"}, "35B", []),
        ({"vllm": "0.20.0+cu126", "transformers": "5.10.0"}, "35B", []),
        ({"vllm": "0.19", "transformers": "5.8.1"}, "35B", ["vllm 0.19 is older than 0.19.1"]),
        ({"vllm": "0.19.1rc2", "transformers": "5.8.1"}, "35B", ["vllm 0.19.1rc2 is older than 0.19.1"]),
        ({"vllm": "0.10.0", "transformers": "5.8.1"}, "9B", []),
        ({"vllm": "0.10.0", "transformers": "5.8.1"}, None, ["vllm 0.10.0 is older than 0.19.1"]),
        ({"vllm": "0.19.1", "transformers": "4.57.0"}, "9B", ["transformers 4.57.0 is older than 5.8.1"]),
        ({"vllm": "0.19.1", "transformers": None}, "35B", ["transformers is not installed"]),
        ({"vllm": None, "transformers": "5.8.1"}, "35B", ["vLLM is not installed"]),
        ({}, "35B", ["vLLM is not installed"]),
    ],
)
def test_check_floors(versions, size, expected):
    problems = vllm.check_floors(versions, size)
    assert len(problems) == len(expected)
    for problem, start in zip(problems, expected):
        assert problem.startswith(start)
        assert "pip install" in problem


def test_floor_messages_carry_the_exact_commands():
    assert vllm.check_floors({}) == ['vLLM is not installed; install it with: pip install "ornith-lsp[vllm]"']
    old = vllm.check_floors({"vllm": "0.18.0", "transformers": "5.8.1"}, "35B")
    assert old == [
        'vllm 0.18.0 is older than 0.19.1, which the release requires for the 35B; '
        'upgrade with: pip install -U "vllm>=0.19.1"'
    ]


def test_installed_versions_reads_metadata_without_importing():
    versions = vllm.installed_versions(("pydantic", "no-such-package-here"))
    assert versions["pydantic"] and versions["no-such-package-here"] is None


async def test_vllm_is_refused_before_start_when_missing(tmp_path):
    assert vllm.installed_versions()["vllm"] is None, "this test expects vLLM not to be installed"
    s = load(tmp_path, kind="vllm", model_size="35B", quant="bf16")
    the_plan, problems = make_plan(s, H100S)
    assert the_plan.backend == "vllm"
    assert problems == ['vLLM is not installed; install it with: pip install "ornith-lsp[vllm]"']
    events = []
    backend = Backend(s, the_plan, on_event=lambda kind, message: events.append((kind, message)))
    with pytest.raises(BackendUnavailable) as info:
        await backend.start()
    assert 'pip install "ornith-lsp[vllm]"' in str(info.value)
    assert backend.supervisor.pid is None and backend.supervisor.state == "stopped"
    assert events[-1][0] == "failed"
    await backend.stop()


# custom GGUF, for real ----------------------------------------------------


async def test_custom_gguf_is_served_by_the_real_llama_server(tmp_path, llama_server, embedded_model):
    other = tmp_path / "some-other-model.gguf"
    other.write_bytes(embedded_model.read_bytes())
    s = load(tmp_path, kind="llamacpp", model_path=str(other))
    the_plan, problems = make_plan(s)
    assert problems == []
    assert (the_plan.model_size, the_plan.model, the_plan.context_length) == (CUSTOM, str(other), 8192)
    assert "--jinja" not in the_plan.command
    backend = Backend(s, the_plan)
    try:
        await backend.start()
        async with backend.client() as client:
            answer = await client.complete([{"role": "user", "content": "Say hi"}], max_tokens=8)
        assert answer.usage.completion_tokens > 0
        status = await backend.status()
        assert status["state"] == "ready" and status["health"] == "ok"
        assert status["model_size"] == CUSTOM and status["quant"] == "Q4_1"
        assert status["command"] == the_plan.command and status["reasons"] == the_plan.reasons
        assert status["gpu_layers"] == the_plan.gpu_layers and status["tensor_parallel_size"] == 1
    finally:
        await backend.stop()


async def test_supervisor_gives_the_process_its_environment(tmp_path, llama_server, embedded_model):
    argv = [str(llama_server), "-m", str(embedded_model), "-c", "1024", "--host", "127.0.0.1", "--port", "{port}"]
    sup = Supervisor("env-check", argv, log_path=tmp_path / "env.log", env={"ORNITH_TEST_MARK": "42"})
    try:
        await sup.start()
        environ = Path(f"/proc/{sup.pid}/environ").read_bytes().split(b"\0")
        assert b"ORNITH_TEST_MARK=42" in environ
        assert any(e.startswith(b"PATH=") for e in environ), "the rest of the environment is inherited"
    finally:
        await sup.stop()


# Ollama -------------------------------------------------------------------


class FakeOllama:
    """A test double speaking the few Ollama routes ornith-lsp uses
    (``/api/version``, ``/api/tags``, ``/api/create``, ``/v1/models``,
    ``/v1/chat/completions``), recording what it was sent."""

    def __init__(self, models=("qwen2.5-coder:7b",), create_status=200):
        self.models = list(models)
        self.create_status = create_status
        self.requests: list[tuple[str, str, dict | None]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body):
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                fake.requests.append(("GET", self.path, None))
                routes = {
                    "/api/version": {"version": "0.9.0"},
                    "/api/tags": {"models": [{"name": m, "model": m} for m in fake.models]},
                    "/v1/models": {"object": "list", "data": [{"id": m, "object": "model"} for m in fake.models]},
                }
                if self.path in routes:
                    self._send(200, routes[self.path])
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(("POST", self.path, body))
                if self.path == "/api/create":
                    if fake.create_status == 200:
                        fake.models.append(body["model"])
                        self._send(200, {"status": "success"})
                    else:
                        self._send(fake.create_status, {"error": "unknown field from"})
                elif self.path == "/v1/chat/completions":
                    self._send(200, {
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
                    })  # fmt: skip
                else:
                    self._send(404, {"error": "not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.root = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def posted(self, path):
        return [body for method, p, body in self.requests if method == "POST" and p == path]


async def test_ollama_endpoint_gets_its_context_pinned(tmp_path):
    with FakeOllama() as fake:
        s = load(tmp_path, endpoint=f"{fake.root}/v1", model="qwen2.5-coder:7b", context_length=16384)
        the_plan, problems = make_plan(s)
        assert the_plan.backend == "remote" and not the_plan.ollama  # not port 11434: found at start
        backend = Backend(s, the_plan)
        await backend.start()
        pinned = "qwen2.5-coder:7b-ornith-ctx16384"
        assert fake.posted("/api/create") == [
            {"model": pinned, "from": "qwen2.5-coder:7b", "parameters": {"num_ctx": 16384}, "stream": False}
        ]
        assert backend.plan.served_name == pinned and backend.plan.ollama
        assert any("ignores num_ctx" in r for r in backend.plan.reasons)
        assert any("created now" in r for r in backend.plan.reasons)
        async with backend.client() as client:
            await client.complete([{"role": "user", "content": "hi"}], max_tokens=4)
        assert fake.posted("/v1/chat/completions")[0]["model"] == pinned
        status = await backend.status()
        assert status["reasons"] == backend.plan.reasons

        again = Backend(s, the_plan)  # a second start reuses the pinned model
        await again.start()
        assert len(fake.posted("/api/create")) == 1 and again.plan.served_name == pinned


async def test_ollama_without_the_model_is_refused_not_pulled(tmp_path):
    with FakeOllama(models=("llama3:latest",)) as fake:
        s = load(tmp_path, endpoint=f"{fake.root}/v1", model="qwen2.5-coder:7b")
        backend = Backend(s, make_plan(s)[0])
        with pytest.raises(BackendUnavailable, match=r"no model 'qwen2.5-coder:7b' \(it has: llama3:latest\); pull it with: ollama pull"):
            await backend.start()
        assert fake.posted("/api/create") == []


async def test_ollama_that_cannot_create_says_how_to_do_it_by_hand(tmp_path):
    with FakeOllama(create_status=400) as fake:
        s = load(tmp_path, endpoint=f"{fake.root}/v1", model="qwen2.5-coder:7b", context_length=8192)
        backend = Backend(s, make_plan(s)[0])
        with pytest.raises(BackendUnavailable, match="PARAMETER num_ctx 8192"):
            await backend.start()


async def test_ollama_detection_and_a_server_that_is_not_ollama(tmp_path, llama_server, embedded_model):
    with FakeOllama() as fake:
        found = await ollama.detect(fake.root)
        assert found == {"root": fake.root, "version": "0.9.0", "models": ["qwen2.5-coder:7b"]}
        report = await probe_remote(f"{fake.root}/v1")
        assert report["models"] == ["qwen2.5-coder:7b"] and report["ollama"]["version"] == "0.9.0"
    argv = [str(llama_server), "-m", str(embedded_model), "-c", "1024", "--host", "127.0.0.1", "--port", "{port}"]
    sup = Supervisor("not-ollama", argv, log_path=tmp_path / "l.log")
    try:
        await sup.start()
        assert await ollama.detect(sup.endpoint.removesuffix("/v1")) is None
        s = load(tmp_path, endpoint=sup.endpoint)
        backend = Backend(s, make_plan(s)[0])
        await backend.start()
        assert not backend.plan.ollama and backend.plan.served_name == "Ornith-1.0"
    finally:
        await sup.stop()


def test_ollama_default_root_follows_ollama_host():
    assert ollama.default_root({}) == "http://127.0.0.1:11434"
    assert ollama.default_root({"OLLAMA_HOST": "0.0.0.0:9999"}) == "http://127.0.0.1:9999"
    assert ollama.default_root({"OLLAMA_HOST": "https://box.lan:443/"}) == "https://box.lan:443"


async def test_dead_endpoint_probe_is_one_line(tmp_path):
    report = await probe_remote("http://127.0.0.1:9/v1", timeout=2.0)
    assert report["models"] is None and "127.0.0.1:9" in report["error"] and "\n" not in report["error"]
