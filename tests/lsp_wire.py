"""A raw JSON-RPC peer for the tests that must send what a well-behaved client
never would (bodies that are not JSON) or must kill the server mid-session."""

from __future__ import annotations

import itertools
import json
import select
import subprocess
import time
from typing import Any


class Wire:
    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.ids = itertools.count(1)
        self.notifications: list[dict] = []
        self._buf = b""

    def send_raw(self, body: bytes) -> None:
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def send(self, obj: dict) -> None:
        self.send_raw(json.dumps(obj).encode())

    def _read(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError("no message from the server")
        chunk = self.proc.stdout.read1(65536)
        if not chunk:
            raise EOFError("server closed its stdout")
        return chunk

    def recv(self, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            head, sep, rest = self._buf.partition(b"\r\n\r\n")
            if sep:
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))
                if len(rest) >= length:
                    self._buf = rest[length:]
                    return json.loads(rest[:length])
            self._buf += self._read(max(0.01, deadline - time.monotonic()))

    def request(self, method: str, params: Any = None, timeout: float = 30.0) -> dict:
        msg_id = next(self.ids)
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        return self.wait_response(msg_id, timeout)

    def wait_response(self, msg_id: Any, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            if "method" in msg and "id" in msg:  # a request from the server: accept it
                self.send({"jsonrpc": "2.0", "id": msg["id"], "result": None})
            elif "method" in msg:
                self.notifications.append(msg)
            elif msg.get("id") == msg_id:
                return msg

    def initialize(self, root_uri: str, options: dict | None = None) -> dict:
        caps = {"window": {"workDoneProgress": True}}
        result = self.request("initialize", {"processId": None, "rootUri": root_uri, "capabilities": caps,
                                             "initializationOptions": options or {}})
        self.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        return result

    def backend_status(self) -> dict:
        return self.request("workspace/executeCommand", {"command": "ornith.backendStatus"})["result"]

    def wait_backend(self, state: str = "ready", timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status = self.backend_status()
            if status["state"] == state or time.monotonic() > deadline:
                return status
            time.sleep(0.1)
