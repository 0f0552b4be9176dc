"""The command line: doctor explains, chat answers through the real embedded
model, and bad input is one clear line with exit code 2."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from lsp_wire import Wire

pytestmark = pytest.mark.usefixtures("no_new_llama_servers")


def run(*args, env=None, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "ornith_lsp", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


def test_doctor_json_explains_the_embedded_choice(tmp_path, llama_server, embedded_model):
    res = run("doctor", "--json", "--root", str(tmp_path), "--hardware", os.devnull)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["backend"] == "llamacpp"
    assert report["model_size"] == "SmolLM2-135M-Instruct"
    assert report["model"] == str(embedded_model)
    assert report["command"][0] == str(llama_server)
    assert "{port}" in report["command"]
    assert report["llama_server"]["path"] == str(llama_server)
    assert report["reasons"] and all(isinstance(r, str) and r for r in report["reasons"])
    assert report["problems"] == []


def test_chat_json_answers_through_the_embedded_model(tmp_path, llama_server, embedded_model):
    res = run("chat", "Write a Python function that adds two numbers", "--json", "--max-tokens", "64",
              "--root", str(tmp_path), "--log-dir", str(tmp_path / "logs"))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out) == {"text", "completion_tokens", "tokens_per_second", "ttft_s"}
    assert out["text"].strip() and out["completion_tokens"] > 0
    assert out["tokens_per_second"] > 0 and out["ttft_s"] > 0


def test_bad_setting_from_env_is_one_line(tmp_path):
    res = run("doctor", "--root", str(tmp_path), env={"ORNITH_BACKEND__KIND": "gpu"})
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "backend.kind" in lines[0] and "'gpu'" in lines[0] and "environment" in lines[0]
    assert "remote" in lines[0] and "Traceback" not in res.stderr


def test_bad_cli_value_names_the_field(tmp_path):
    res = run("doctor", "--root", str(tmp_path), "--context-length", "lots")
    assert res.returncode == 2
    assert "backend.context_length" in res.stderr and "command line" in res.stderr


def test_unreachable_remote_endpoint(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    started = time.monotonic()
    res = run("chat", "hi", "--root", str(tmp_path), "--backend", "remote",
              "--endpoint", f"http://127.0.0.1:{dead}/v1", env={"ORNITH_CLIENT__MAX_RETRIES": "1"})
    assert res.returncode == 2
    assert f"127.0.0.1:{dead}" in res.stderr and "Traceback" not in res.stderr
    assert time.monotonic() - started < 30


def test_tcp_port_in_use_and_tcp_serving(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = run("serve", "--tcp", "--port", str(port), "--root", str(tmp_path))
        assert res.returncode == 2 and f"127.0.0.1:{port}" in res.stderr and "in use" in res.stderr

    proc = subprocess.Popen(
        [sys.executable, "-m", "ornith_lsp", "serve", "--tcp", "--port", str(port), "--backend", "remote",
         "--endpoint", "http://127.0.0.1:9/v1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                time.sleep(0.05)
        with conn:
            wire = Wire(_SocketProc(conn))
            result = wire.initialize(tmp_path.as_uri())["result"]
            assert result["serverInfo"]["name"] == "ornith-lsp"
            status = wire.wait_backend("failed", timeout=30)
            assert status["state"] == "failed" and "127.0.0.1:9" in status["error"]
    finally:
        proc.terminate()
        proc.wait(10)


class _SocketProc:
    """Lets Wire talk over a TCP socket as if it were a process's pipes."""

    def __init__(self, conn: socket.socket):
        self.stdin = conn.makefile("wb")
        self.stdout = conn.makefile("rb")
