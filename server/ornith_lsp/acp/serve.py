"""Run the ACP agent on stdin/stdout until the client goes away.

Closing stdin ends the connection: running prompts are cancelled (their
shadows and test runs go with them) and the backend is stopped before the
process exits.  SIGTERM and SIGHUP are the command line's, as for ``serve``.
"""

from __future__ import annotations

import asyncio
from typing import cast

from acp import Agent, run_agent

from ornith_lsp.acp import wire
from ornith_lsp.acp.agent import OrnithAgent


def main(agent: OrnithAgent, out_fd: int) -> None:
    """Serve until stdin closes; the caller reaps what the agent started
    (``cli._reap_on_exit``, as for ``serve`` and ``mcp``)."""
    asyncio.run(_serve(agent, out_fd))


async def _serve(agent: OrnithAgent, out_fd: int) -> None:
    reader, writer = await wire.stdio(out_fd)
    try:
        # the methods the agent leaves out (session/load, authenticate, ...) the SDK answers with method-not-found
        await run_agent(cast(Agent, agent), wire.LineTransport(reader, writer))  # returns when stdin closes
    finally:
        await agent.shutdown()
