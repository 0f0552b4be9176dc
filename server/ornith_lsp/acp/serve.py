"""Run the ACP agent on stdin/stdout until the client goes away.

Closing stdin ends the connection: running prompts are cancelled (their
shadows and test runs go with them) and the backend is stopped before the
process exits.  SIGTERM and SIGHUP exit at once, after killing the backend and
every process group the fixes started, as ``serve`` does.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import signal
from typing import Any, cast

from acp import Agent, run_agent

from ornith_lsp import procs
from ornith_lsp.acp import wire
from ornith_lsp.acp.agent import OrnithAgent
from ornith_lsp.workspace import leftovers


def main(cli_layer: dict[str, Any]) -> int:
    out_fd = wire.private_stdout()
    agent = OrnithAgent(cli_layer)

    def reap(*_: Any) -> None:
        agent.kill_now()
        procs.kill_all_groups()
        leftovers.remove_tracked()

    def on_signal(signum: int, frame: Any) -> None:
        reap()
        logging.shutdown()
        os._exit(128 + signum)

    atexit.register(reap)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        asyncio.run(_serve(agent, out_fd))
    finally:
        reap()
    return 0


async def _serve(agent: OrnithAgent, out_fd: int) -> None:
    reader, writer = await wire.stdio(out_fd)
    try:
        # the methods the agent leaves out (session/load, authenticate, ...) the SDK answers with method-not-found
        await run_agent(cast(Agent, agent), wire.LineTransport(reader, writer))  # returns when stdin closes
    finally:
        await agent.shutdown()
