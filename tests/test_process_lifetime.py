"""No orphan llama-server, however the language server ends: a clean LSP
exit, SIGTERM, SIGKILL (the editor crashed), or stdin closing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from conftest import alive, wait_until
from lsp_wire import Wire

pytestmark = pytest.mark.usefixtures("no_new_llama_servers")


@pytest.fixture
def served(tmp_path):
    env = {**os.environ, "ORNITH_LOG_DIR": str(tmp_path / "logs")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ornith_lsp", "serve", "--backend", "embedded"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
    )
    wire = Wire(proc)
    wire.initialize(tmp_path.as_uri())
    status = wire.wait_backend("ready")
    assert status["state"] == "ready", status
    yield proc, wire, status["pid"]
    if proc.poll() is None:
        proc.terminate()
    proc.wait(10)
    assert wait_until(lambda: not alive(status["pid"]), timeout=10)


def test_shutdown_and_exit_stop_the_backend(served):
    proc, wire, pid = served
    assert wire.request("shutdown")["result"] is None
    assert not alive(pid)
    wire.send({"jsonrpc": "2.0", "method": "exit"})
    assert proc.wait(10) == 0


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL", "stdin closed"])
def test_server_death_takes_the_backend_with_it(served, how):
    proc, wire, pid = served
    assert alive(pid)
    if how == "stdin closed":
        proc.stdin.close()
    else:
        os.kill(proc.pid, getattr(signal, how))
    proc.wait(15)
    assert wait_until(lambda: not alive(pid), timeout=10), f"llama-server {pid} outlived the server ({how})"


def test_body_that_is_not_json_gets_a_parse_error_and_the_server_goes_on(served):
    proc, wire, pid = served
    wire.send_raw(b"{this is not json")
    reply = wire.wait_response(None, 10)
    assert reply["id"] is None and reply["error"]["code"] == -32700
    assert wire.backend_status()["state"] == "ready"


def test_request_with_params_that_do_not_deserialise_gets_invalid_params(served):
    proc, wire, pid = served
    reply = wire.request("workspace/executeCommand", {"arguments": 5}, timeout=10)
    assert reply["error"]["code"] == -32602
    reply = wire.request("textDocument/codeAction", {"textDocument": 7}, timeout=10)
    assert "error" in reply
    assert wire.backend_status()["state"] == "ready"
