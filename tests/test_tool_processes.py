"""Tools (test runs, linters) start without forking the whole server on the
event loop, and keep what a fork gave them: a lower CPU priority, death with
the server, and an OSError for a tool that is not there."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import alive, wait_until
from ornith_lsp import procs

SPAWNER = """
import asyncio, sys, time
from pathlib import Path
from ornith_lsp import procs

async def main():
    proc = await procs.spawn(["sleep", "120"], log_path=Path(sys.argv[1]), nice=True)
    print(proc.pid, flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_a_tool_is_niced_and_dies_with_the_server(tmp_path):
    server = subprocess.Popen([sys.executable, "-c", SPAWNER, str(tmp_path / "tool.log")],
                              stdout=subprocess.PIPE, text=True)
    try:
        tool = int(server.stdout.readline())
        assert wait_until(lambda: Path(f"/proc/{tool}/comm").read_text().strip() == "sleep", timeout=10)
        assert niceness(tool) == min(19, niceness(server.pid) + procs.TOOL_NICENESS)
        server.send_signal(signal.SIGKILL)  # the editor killed the server: nothing can clean up
        server.wait(10)
        assert wait_until(lambda: not alive(tool), timeout=10), "the tool outlived the server"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_a_tool_that_is_not_there_is_an_oserror(tmp_path):
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")

    async def start(argv: list[str]) -> None:
        await procs.spawn(argv, log_path=tmp_path / "tool.log", nice=True)

    with pytest.raises(FileNotFoundError):
        asyncio.run(start(["ornith-no-such-tool-here"]))
    with pytest.raises(FileNotFoundError):
        asyncio.run(start([str(tmp_path / "missing")]))
    with pytest.raises(PermissionError):
        asyncio.run(start([str(script)]))


def test_starting_a_tool_does_not_fork_the_server(tmp_path):
    """A server of a few hundred MB: with a fork, each start copied its page
    tables on the event loop (~15 ms of its CPU); a vfork costs next to none.
    CPU time of the loop's thread, so a busy machine does not blur it."""
    ballast = [bytearray(2**20) for _ in range(300)]  # noqa: F841 -- RSS a fork would have to copy

    async def starts() -> list[float]:
        took = []
        for _ in range(5):
            t0 = time.thread_time()
            proc = await procs.spawn(["true"], log_path=tmp_path / "tool.log", nice=True)
            took.append(time.thread_time() - t0)
            await proc.wait()
        return took

    took = asyncio.run(starts())
    if procs._wrapper:  # setpriv with --pdeathsig is there: no preexec_fn, so no fork
        assert sorted(took)[len(took) // 2] < 0.005, took
