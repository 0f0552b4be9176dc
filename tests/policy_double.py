"""TEST DOUBLE: a scripted policy server.

It speaks the OpenAI chat-completions protocol over real HTTP on 127.0.0.1 and
replays a fixed list of model answers, so the agent's plumbing (parsing,
tools, replans, budgets, refusals) can be tested deterministically.  No real
model can be made to give these exact answers on this machine; the real
embedded model is exercised by the end-to-end tests.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


NATIVE = "NATIVE:"


def native(call: dict[str, Any]) -> str:
    """An answer the double sends as an OpenAI ``tool_calls`` entry, not as text."""
    return NATIVE + json.dumps(call)


class ScriptedPolicyServer:
    """``per_conversation``: every conversation (an agent's own message
    history) replays ``answers`` from its start, the answer chosen by how many
    answers the conversation already holds -- so fixes running side by side
    each get the whole script, however their requests interleave."""

    def __init__(self, answers: list[str | dict[str, Any]], delay_s: float = 0.0, per_conversation: bool = False):
        self.delay_s = delay_s
        self.per_conversation = per_conversation
        self.answers = [a if isinstance(a, str) else json.dumps(a) for a in answers]
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                body = b'{"status":"ok"}' if self.path == "/health" else json.dumps(
                    {"object": "list", "data": [{"id": "scripted"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer._lock:
                    outer.requests.append(request)
                    index = len(outer.requests) - 1
                if outer.per_conversation:
                    index = sum(1 for m in request["messages"] if m["role"] == "assistant")
                time.sleep(outer.delay_s)
                text = outer.answers[index] if index < len(outer.answers) else '{"tool": "finish", "summary": "script ran out"}'
                prompt = sum(len(m["content"]) for m in request["messages"]) // 4
                message = {"role": "assistant", "content": text}
                if text.startswith(NATIVE):  # a scripted native tool call
                    call = json.loads(text[len(NATIVE):])
                    message = {"role": "assistant", "content": None, "tool_calls": [{
                        "id": f"call_{index}", "type": "function",
                        "function": {"name": call.pop("tool"), "arguments": json.dumps(call)}}]}
                    text = ""
                body = json.dumps({
                    "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": len(text) // 4 + 1,
                              "prompt_tokens_details": {"cached_tokens": 0}},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ScriptedPolicyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
