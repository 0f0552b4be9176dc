"""A backend that refuses to start: one line that says why, the log's tail
under it, exit 2, nothing left running.  The REAL llama-server is given a
REAL broken model file (the embedded GGUF cut short)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from agent_repos import CALC, make_repo
from ornith_lsp.backends import explain

pytestmark = pytest.mark.usefixtures("no_new_llama_servers")


def test_a_corrupt_model_file_is_one_clear_line_and_exit_2(tmp_path, embedded_model, llama_server):
    repo = make_repo(tmp_path / "repo", CALC)
    broken = tmp_path / "cut-short.gguf"
    with open(embedded_model, "rb") as fh:
        broken.write_bytes(fh.read(3_000_000))
    res = subprocess.run([sys.executable, "-m", "ornith_lsp", "fix", str(repo), "--backend", "llamacpp",
                          "--model-path", str(broken), "--model-size", "embedded", "--log-dir", str(tmp_path / "logs")],
                         capture_output=True, text=True, timeout=240, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("ornith-lsp fix:")]
    assert len(lines) == 1, res.stderr
    assert "the model backend did not start" in lines[0] and "corrupted or incomplete" in lines[0], lines[0]
    assert "  | " in res.stderr and "Traceback" not in res.stderr
    assert res.stdout.strip() == "" or "task(s)" not in res.stdout


def test_a_backend_out_of_memory_is_one_clear_line_and_exit_2(tmp_path, embedded_model, llama_server):
    """The REAL llama-server under a REAL memory limit (``ulimit -v``, as a
    container's or a small machine's would be), asked for a context whose KV
    cache does not fit in it: it cannot allocate and exits; the user gets one
    line that says so, the log's tail, exit 2, and no process left."""
    repo = make_repo(tmp_path / "repo", CALC)
    limited = tmp_path / "llama-server-limited"
    limited.write_text(f'#!/bin/sh\nulimit -v {LIMIT_KIB}\nexec "{llama_server}" "$@"\n')
    limited.chmod(0o755)
    res = subprocess.run([sys.executable, "-m", "ornith_lsp", "fix", str(repo), "--backend", "llamacpp",
                          "--llama-server", str(limited), "--model-path", str(embedded_model),
                          "--model-size", "embedded", "--context-length", "8192",
                          "--log-dir", str(tmp_path / "logs")],
                         capture_output=True, text=True, timeout=240, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("ornith-lsp fix:")]
    assert len(lines) == 1, res.stderr
    assert "the model backend did not start" in lines[0], lines[0]
    assert any(word in lines[0].lower() for word in ("alloc", "memory", "bad_alloc")), lines[0]
    assert "  | " in res.stderr and "Traceback" not in res.stderr


LIMIT_KIB = 300_000  # the 135M model maps in; its 8192-token KV cache (180 MiB) does not fit beside it


@pytest.mark.parametrize("log, why", [
    ("0.00.01 I srv  init\n0.00.02 E srv  couldn't bind HTTP server socket, hostname: 127.0.0.1, port: 8080\n",
     "couldn't bind HTTP server socket"),
    ("=== 2026 $ llama-server -m x\nwarning: no usable GPU found\n"
     "0.00.03.100 E ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate buffer of size 9000000000\n",
     "failed to allocate buffer"),
    ("0.00.01.000 I all fine\n", None),
])
def test_the_cause_is_read_from_the_log(log, why):
    found = explain.cause(log)
    assert (found is None) if why is None else (why in found and not found[0].isdigit())
    line, tail = explain.one_line("llamacpp exited with code 1 during start-up; log /x.log:\n" + log)
    assert line.startswith("llamacpp exited with code 1") and (why is None or why in line)
    assert tail == [x for x in log.splitlines() if x.strip()][-8:]


async def test_a_port_taken_between_the_check_and_the_bind_is_retried(tmp_path, monkeypatch, llama_server, embedded_model):
    """Another process takes the free port first: the REAL llama-server
    cannot bind and exits; the supervisor picks another port, once."""
    import socket

    from ornith_lsp import procs
    from ornith_lsp import settings as settings_mod
    from ornith_lsp.backends.runtime import Backend, make_plan

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real_free_port = procs.free_port
    handed = []

    def free_port(host: str = "127.0.0.1") -> int:
        handed.append(taken if not handed else real_free_port(host))
        return handed[-1]

    monkeypatch.setattr(procs, "free_port", free_port)
    s = settings_mod.load(None, cli={"backend": {"kind": "embedded"}, "log_dir": str(tmp_path / "logs")}, environ={})
    events: list[tuple[str, str]] = []
    backend = Backend(s, make_plan(s)[0], on_event=lambda k, m: events.append((k, m)))
    try:
        await backend.start()
        status = await backend.status()
        assert status["state"] == "ready", status
        assert len(handed) == 2 and f":{handed[1]}/" in status["endpoint"]
        assert any(f"port {taken} was taken meanwhile" in m for _, m in events), events
    finally:
        await backend.stop()
        squatter.close()
