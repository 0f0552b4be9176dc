"""Newline-delimited JSON-RPC on stdin/stdout, strict about what comes in.

The SDK's own stdio reader drops a line that is not JSON without a word, and a
line that is JSON but not an object (``[1]``, ``42``) stops its receive loop
-- the agent would go deaf.  This transport answers both as JSON-RPC says
(``-32700`` parse error, ``-32600`` invalid request, with the request's id
when it has a usable one) and keeps reading.  A line longer than
``MAX_LINE`` bytes is read to its end and refused, so one huge message cannot
take the process' memory.

The protocol writes to a private copy of the stdout descriptor: descriptor 1
itself is pointed at stderr, so nothing else in the process -- a stray print,
a library's warning, a child that inherits it -- can corrupt the stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any

log = logging.getLogger(__name__)

MAX_LINE = 8 * 1024 * 1024


def error(code: int, message: str, request_id: Any = None, data: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": body}


def problem(line: bytes) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the message, None) for a well-formed line; (None, the error to answer) otherwise.
    Pure, so every malformed shape is tested without a process."""
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, error(-32700, "Parse error: the line is not JSON", data={"details": str(exc)[:200]})
    if not isinstance(message, dict):
        return None, error(-32600, "Invalid request: a JSON-RPC message is an object")
    raw_id = message.get("id")
    request_id = raw_id if isinstance(raw_id, (int, str)) and not isinstance(raw_id, bool) else None
    if "id" in message and request_id is None and raw_id is not None:
        return None, error(-32600, "Invalid request: the id must be a string or a number")
    method = message.get("method")
    if "method" in message and not isinstance(method, str):
        return None, error(-32600, "Invalid request: the method must be a string", request_id)
    if method is None and "id" not in message:
        return None, error(-32600, "Invalid request: neither a method nor a response id")
    if method is None and "result" not in message and "error" not in message:
        return None, error(-32600, "Invalid request: a response needs a result or an error", request_id)
    if "params" in message and not isinstance(message["params"], (dict, list, type(None))):
        return None, error(-32602, "Invalid params: params must be an object", request_id)
    return message, None


class LineTransport:
    """The SDK's message-level Transport (``send``/``receive``/``close``) over
    asyncio streams, answering malformed input instead of dropping it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._lock = asyncio.Lock()
        self._closed = False

    async def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")
        async with self._lock:
            if self._closed:
                raise ConnectionError("the connection is closed")
            self.writer.write(data)
            await self.writer.drain()

    async def receive(self) -> dict[str, Any] | None:
        while True:
            line, too_long = await self._line()
            if line is None:
                return None
            if too_long:
                await self._answer(error(-32600, f"Invalid request: the message is longer than {MAX_LINE} bytes"))
                continue
            if not line.strip():
                continue
            message, refusal = problem(line)
            if message is not None:
                return message
            log.warning("refused a malformed message: %s", refusal)
            await self._answer(refusal)

    async def _answer(self, refusal: dict[str, Any] | None) -> None:
        try:
            await self.send(refusal or {})
        except (ConnectionError, OSError):
            pass

    async def _line(self) -> tuple[bytes | None, bool]:
        """One line (None at the end of input), and whether it was over the limit
        (then it is read to its end and thrown away)."""
        too_long = False
        while True:
            try:
                line = await self.reader.readuntil(b"\n")
                return (b"" if too_long else line), too_long
            except asyncio.LimitOverrunError as exc:
                too_long = True
                await self.reader.readexactly(exc.consumed)
            except asyncio.IncompleteReadError as exc:
                if too_long:
                    return b"", True
                return (exc.partial or None), False

    async def close(self) -> None:
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self.writer.close()
            except (OSError, RuntimeError):
                pass


def private_stdout() -> int:
    """A private descriptor for the protocol's output; descriptor 1 now goes to stderr."""
    sys.stdout.flush()
    fd = os.dup(1)
    os.dup2(2, 1)
    return fd


async def stdio(out_fd: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Streams over stdin and ``out_fd`` (pipes, as editors start agents)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(out_fd, "wb", buffering=0))
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return reader, writer
