"""The ACP agent: sessions, prompts and cancellation over the one fix service.

What the protocol asks of an agent and nothing more: ``initialize`` says what
this one supports, ``session/new`` opens a workspace (it must be inside a git
repository: fixes are made in a shadow worktree), ``session/prompt`` runs a
:class:`~ornith_lsp.acp.turn.Turn`, ``session/cancel`` cancels it -- the
asyncio task, and with it the test runs and the shadow, which the service
cleans up on the way out.  One prompt per session at a time; one model
backend for the whole process, started on the first prompt that needs it.
Sessions live as long as the process (``session/load`` is not offered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from acp import PROTOCOL_VERSION, RequestError
from acp.schema import (
    AgentCapabilities,
    ClientCapabilities,
    Implementation,
    InitializeResponse,
    McpCapabilities,
    NewSessionResponse,
    PromptCapabilities,
    PromptResponse,
)

from ornith_lsp import settings as settings_mod
from ornith_lsp.acp import files
from ornith_lsp.acp.turn import Outbox, Session, Turn
from ornith_lsp.acp.updates import message, thought
from ornith_lsp.agent.service import Backend, BackendUnavailable, FixService, PlanError
from ornith_lsp.workspace.repo import WorkspaceError, open_repo

log = logging.getLogger(__name__)

BUFFER_READS = 16  # fs/read_text_file requests in flight at once


def _version() -> str:
    try:
        return version("ornith-lsp")
    except PackageNotFoundError:
        return "0"


class OrnithAgent:
    """The ``acp.Agent`` protocol, implemented.  ``cli_layer``: the command
    line's settings, laid over each workspace's ``ornith.toml``."""

    def __init__(self, cli_layer: dict[str, Any]) -> None:
        self.cli_layer = cli_layer
        self.conn: Any = None
        self.caps = ClientCapabilities()
        self.sessions: dict[str, Session] = {}
        self.backend: Backend | None = None
        self._starting = asyncio.Lock()

    def on_connect(self, conn: Any) -> None:
        self.conn = conn

    # -- the protocol ---------------------------------------------------------------------
    async def initialize(self, protocol_version: int, client_capabilities: ClientCapabilities | None = None,
                         client_info: Any = None, **_: Any) -> InitializeResponse:
        self.caps = client_capabilities or ClientCapabilities()
        return InitializeResponse(
            protocol_version=min(protocol_version, PROTOCOL_VERSION),
            agent_capabilities=AgentCapabilities(
                load_session=False,
                prompt_capabilities=PromptCapabilities(image=False, audio=False, embedded_context=True),
                mcp_capabilities=McpCapabilities(http=False, sse=False)),
            auth_methods=[],
            agent_info=Implementation(name="ornith-lsp", title="Ornith", version=_version()))

    async def new_session(self, cwd: str, mcp_servers: list[Any] | None = None, **_: Any) -> NewSessionResponse:
        """``mcp_servers`` are accepted and not used: the agent's tools are its own."""
        root = Path(cwd)
        if not root.is_absolute():
            raise RequestError.invalid_params({"cwd": cwd, "reason": "cwd must be an absolute path"})
        try:
            await asyncio.to_thread(open_repo, root)
            settings = settings_mod.load(root, cli=self.cli_layer)
        except WorkspaceError as exc:
            raise RequestError.invalid_params({"cwd": cwd, "reason": str(exc)}) from None
        except settings_mod.SettingsError as exc:
            raise RequestError.invalid_params({"cwd": cwd, "reason": f"settings: {exc}"}) from None
        session = Session(id=uuid.uuid4().hex, root=root.resolve(), service=FixService(root.resolve(), settings))
        with contextlib.suppress(Exception):
            session.notes = await session.service.tidy()
        self.sessions[session.id] = session
        return NewSessionResponse(session_id=session.id)

    async def prompt(self, prompt: list[Any], session_id: str, **_: Any) -> PromptResponse:
        session = self.sessions.get(session_id)
        if session is None:
            raise RequestError.invalid_params({"sessionId": session_id,
                                               "reason": "no such session: call session/new first"})
        if session.job is not None:
            raise RequestError.invalid_request({"sessionId": session_id, "reason": "a prompt is already running "
                                                "in this session; wait for it or send session/cancel"})
        text, embedded = files.prompt_text(prompt, session.root)
        out = Outbox(lambda update: self.conn.session_update(session_id=session_id, update=update))
        session.cancelled = False
        job = asyncio.create_task(Turn(self, session, text, embedded, out).run())
        session.job = job
        try:
            await asyncio.wait({job})
        except asyncio.CancelledError:  # the connection is closing: end the work, then go
            job.cancel()
            out.pump.cancel()
            await asyncio.wait({job, out.pump})
            raise
        finally:
            session.job = None
        return await self._ending(job, out)

    async def _ending(self, job: asyncio.Task[Any], out: Outbox) -> PromptResponse:
        """The prompt's answer, after its last update was sent."""
        if job.cancelled():
            await out.close()
            return PromptResponse(stop_reason="cancelled")
        problem = job.exception()
        if problem is not None:
            log.error("the prompt failed", exc_info=problem)
            out.put(message(f"The prompt failed: {type(problem).__name__}: {problem}"))
            await out.close()
            raise RequestError.internal_error({"details": f"{type(problem).__name__}: {problem}"})
        await out.close()
        return PromptResponse(stop_reason=job.result())

    async def cancel(self, session_id: str, **_: Any) -> None:
        session = self.sessions.get(session_id)
        if session is not None and session.job is not None:
            session.cancelled = True
            session.job.cancel()

    # -- what a turn asks of the agent ---------------------------------------------------
    async def backend_for(self, service: FixService, say: Any) -> Backend | None:
        """The process' one backend, started on first use; None (and said why) when it cannot start."""
        async with self._starting:
            gave_up = self.backend is not None and getattr(self.backend.supervisor, "state", None) == "failed"
            if self.backend is not None and gave_up:  # its supervisor stopped restarting it: start another
                await self.backend.stop()
                self.backend = None
            if self.backend is None:
                say(thought("Starting the model backend ..."))
                try:
                    self.backend = await service.start_backend(
                        on_event=lambda kind, text: say(thought(f"[{kind}] {text.splitlines()[0] if text else ''}")),
                        on_problem=lambda text: say(thought(text)))
                except (BackendUnavailable, PlanError) as exc:
                    await service.stop_backend()
                    say(message(f"The model backend did not start: {str(exc).splitlines()[0]}"))
                    return None
            service.backend = self.backend
            return self.backend

    def reads(self) -> bool:
        return bool(self.caps.fs and self.caps.fs.read_text_file)

    def writes(self) -> bool:
        return bool(self.caps.fs and self.caps.fs.write_text_file)

    async def read(self, session: Session, rel: str) -> str | None:
        """A file as the editor has it (through the client), else as on disk."""
        if self.reads():
            try:
                answer = await self.conn.read_text_file(session_id=session.id, path=str(session.root / rel))
                return str(answer.content)
            except (RequestError, ConnectionError, ValueError):
                pass
        return await asyncio.to_thread(files.disk_text, session.root, rel)

    async def buffers(self, session: Session) -> dict[str, str]:
        """The files whose text in the editor differs from the disk: unsaved buffers."""
        if not self.reads():
            return {}
        listing = (await asyncio.to_thread(files.listed, session.root))[:files.BUFFER_FILES]
        disk = await asyncio.to_thread(files.disk_texts, session.root, listing)
        gate = asyncio.Semaphore(BUFFER_READS)

        async def one(rel: str) -> tuple[str, str] | None:
            async with gate:
                text = await self.read(session, rel)
            return (rel, text) if text is not None and text != disk[rel] else None

        candidates = [rel for rel in listing if disk[rel] is not None]
        return dict(pair for pair in await asyncio.gather(*(one(rel) for rel in candidates)) if pair)

    async def write(self, session: Session, changed: dict[str, str], before: dict[str, str | None]) -> None:
        """Write an allowed fix: through the client when it writes, else to disk
        inside the workspace -- only if no file moved since the fix started."""
        rels = sorted(changed)
        for rel in rels:
            if files.inside(session.root, rel) is None:
                raise files.WriteRefused(f"{rel} is outside the workspace; nothing was written")
        await files.unchanged(lambda rel: self.read(session, rel), before, rels)
        if not self.writes():
            await asyncio.to_thread(files.write_to_disk, session.root, changed)
            return
        for rel in rels:
            await self.conn.write_text_file(session_id=session.id, path=str(session.root / rel), content=changed[rel])

    # -- the end ---------------------------------------------------------------------------
    async def shutdown(self) -> None:
        """Cancel what runs, then stop the backend: nothing outlives the agent."""
        jobs = [s.job for s in self.sessions.values() if s.job is not None]
        for job in jobs:
            job.cancel()
        if jobs:
            await asyncio.wait(jobs, timeout=30)
        if self.backend is not None:
            await self.backend.stop()

    def kill_now(self) -> None:
        """From a signal handler: the backend dies at once."""
        if self.backend is not None:
            self.backend.kill_now()
