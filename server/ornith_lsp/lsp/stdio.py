"""The editor's pipe, read by the event loop itself.

pygls reads stdin in an executor thread: a blocking ``readline`` for each
header line, a ``read`` for the body, and a hop back to the loop after each
-- three thread wake-ups per message.  On a busy machine (the fixes' test
runs on every core) each wake-up waits for a core, and a hover waited that
long three times over: with the loop reading the pipe, ``bench/lsp_latency.py
--queue`` measured the median request go from ~2.1 to ~1.3 ms and p99 from
~21 to ~10 ms (three runs each, on a shared 2-core machine).  This is pygls'
own stdio loop (``run_async`` and its writer) with
that one part replaced; stdin that is not a pipe or a socket (a file,
/dev/null) still goes through pygls, since the loop cannot poll it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
import threading
from typing import TYPE_CHECKING, BinaryIO

from pygls.io_ import StdoutWriter, run_async

if TYPE_CHECKING:
    from pygls.server import JsonRPCServer

log = logging.getLogger("pygls.server")  # where pygls' own stdio loop logs

# The largest message buffered before the pipe is paused (a didOpen of a big
# file is one message); a header line longer than this is dropped, not fatal.
BUFFER_LIMIT = 64 * 2**20
OVERLONG = b"X-Ornith-Dropped: an overlong header line\r\n"


class LoopStdin:
    """pygls' reader interface (``readline``, ``readexactly``) over an
    asyncio pipe transport, connected on first use (the loop runs by then)."""

    def __init__(self, stdin: BinaryIO) -> None:
        self._stdin = stdin
        self._reader: asyncio.StreamReader | None = None

    async def _stream(self) -> asyncio.StreamReader:
        if self._reader is None:
            reader = asyncio.StreamReader(limit=BUFFER_LIMIT)
            await asyncio.get_running_loop().connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), self._stdin)
            self._reader = reader
        return self._reader

    async def readline(self) -> bytes:
        try:
            return await (await self._stream()).readline()
        except ValueError:  # longer than the limit: consumed and dropped, like any unknown header
            return OVERLONG

    async def readexactly(self, n: int) -> bytes:
        # once per message, let the tasks the last one woke run first: a buffered
        # burst of messages is otherwise handled in one go, as a single long callback
        await asyncio.sleep(0)
        try:
            return await (await self._stream()).readexactly(n)
        except asyncio.IncompleteReadError as exc:  # EOF inside a body: what a blocking read() returns
            return exc.partial


def pollable(stream: BinaryIO) -> bool:
    """Whether the event loop can watch ``stream``: a pipe or a socket."""
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def serve(server: JsonRPCServer, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> bool:
    """Serve over stdio with the loop reading stdin; False (nothing done)
    when stdin cannot be polled, for the caller to use pygls' own reader.
    Otherwise as pygls' ``start_io``: until the client exits or the pipe closes."""
    stdin = stdin or sys.stdin.buffer
    if not pollable(stdin):
        return False
    server._stop_event = threading.Event()
    server.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
    try:
        asyncio.run(run_async(stop_event=server._stop_event, reader=LoopStdin(stdin), protocol=server.protocol,
                              logger=log, error_handler=server.report_server_error))
    except BrokenPipeError:
        log.error("the connection to the client is lost; shutting down")
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.shutdown()
    return True
