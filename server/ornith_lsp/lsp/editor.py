"""The language server object: its protocol's edge cases (every request
answered, even one that cannot be read), its settings, its fix service and
model backend, and what it remembers.  The handlers live in ``server.py``
and ``fixes.py``; they import this, never the other way round."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from pathlib import Path
from typing import Any, BinaryIO

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidRequest, JsonRpcParseError
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from ornith_lsp import __version__
from ornith_lsp import settings as settings_mod
from ornith_lsp.agent.service import FixService
from ornith_lsp.backends.runtime import Backend, BackendUnavailable
from ornith_lsp.lsp import stdio
from ornith_lsp.lsp.state import Fixes
from ornith_lsp.lsp.wire import BackendStatus

log = logging.getLogger("ornith_lsp.lsp")

class _Answered:
    """Marks a request already answered with an error during deserialisation."""

    jsonrpc = None


class OrnithProtocol(LanguageServerProtocol):
    """pygls logs and drops a request whose params fail to deserialise, leaving
    the client waiting forever; here every such request gets an error response."""

    def structure_message(self, data: dict[str, Any]):
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if "id" in data and "method" in data:
                self._send_response(data["id"], error=exc.to_response_error())
                return _Answered()
            raise

    def handle_message(self, message):
        if isinstance(message, _Answered):
            return
        if (self._shutdown and getattr(message, "method", None) not in (None, types.EXIT)
                and getattr(message, "id", None) is not None):
            # pygls drops it with a log line; the LSP says InvalidRequest
            self._send_response(message.id, error=JsonRpcInvalidRequest(
                f"the server is shutting down; {message.method} is not accepted after shutdown").to_response_error())
            return
        super().handle_message(message)


class OrnithServer(LanguageServer):
    def __init__(self, cli_settings: dict[str, Any] | None = None) -> None:
        super().__init__("ornith-lsp", __version__, protocol_cls=OrnithProtocol)
        self.cli_settings = cli_settings or {}
        self.editor_settings: dict[str, Any] = {}
        self.root: Path | None = None
        self.settings = settings_mod.Settings()
        self.service = FixService(None, self.settings)  # given its root at initialize
        self._backend_task: asyncio.Task[None] | None = None
        self._housekeeping: asyncio.Task[Any] | None = None
        self.fixes = Fixes()

    @property
    def backend(self) -> Backend | None:
        return self.service.backend

    def start_io(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """stdio with the event loop reading the pipe (see :mod:`ornith_lsp.lsp.stdio`)."""
        if not stdio.serve(self, stdin, stdout):
            super().start_io(stdin, stdout)

    def report_server_error(self, error: Exception, source) -> None:
        """A body that is not JSON cannot be tied to a request id; JSON-RPC says
        to answer it with a Parse error and a null id, so the client hears something."""
        if isinstance(error, json.JSONDecodeError):
            self.protocol._send_data(
                {"jsonrpc": "2.0", "id": None, "error": {"code": JsonRpcParseError.CODE, "message": f"Parse error: {error}"}}
            )
            return
        super().report_server_error(error, source)

    # -- messages to the user ---------------------------------------------------------
    def say(self, message: str, level: types.MessageType = types.MessageType.Info, *, show: bool = False) -> None:
        self.window_log_message(types.LogMessageParams(type=level, message=message))
        if show:
            self.window_show_message(types.ShowMessageParams(type=level, message=message))

    # -- settings -----------------------------------------------------------------------
    def reload_settings(self) -> bool:
        try:
            self.settings = settings_mod.load(self.root, editor=self.editor_settings, cli=self.cli_settings)
        except settings_mod.SettingsError as exc:
            self.say(f"ornith: {exc}", types.MessageType.Error, show=True)
            return False
        self.service.settings = self.settings
        return True

    # -- backend ------------------------------------------------------------------------
    async def start_backend(self) -> None:
        """Plan, start and report with work-done progress; failures become one
        clear message and the server keeps answering everything else."""
        token = f"ornith-backend-{uuid.uuid4().hex[:8]}"
        progress = self._supports_progress()
        if progress:
            with contextlib.suppress(Exception):
                await self.work_done_progress.create_async(token)

        def on_event(kind: str, message: str) -> None:
            level = types.MessageType.Error if kind == "failed" else types.MessageType.Info
            self.say(f"ornith: {message}", level, show=kind in ("failed", "crashed"))
            if progress and kind in ("starting", "crashed"):
                self.work_done_progress.report(token, types.WorkDoneProgressReport(message=message))

        if progress:
            self.work_done_progress.begin(token, types.WorkDoneProgressBegin(title="Ornith: starting model backend", cancellable=False))
        outcome = "backend unavailable"
        try:
            backend = await self.service.start_backend(
                on_event, on_problem=lambda problem: self.say(f"ornith: {problem}", types.MessageType.Warning))
            the_plan = backend.plan
            outcome = f"{the_plan.backend} ready: {the_plan.model_size or the_plan.model}, context {the_plan.context_length}"
        except BackendUnavailable:
            pass  # on_event has already told the user
        except Exception as exc:  # planning errors, bad hardware file, ...
            self.say(f"ornith: backend not started: {exc}", types.MessageType.Error, show=True)
            outcome = str(exc)
        finally:
            if progress:
                self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=outcome))

    def _supports_progress(self) -> bool:
        caps = self.client_capabilities.window
        return bool(caps and caps.work_done_progress)

    async def restart_backend(self) -> None:
        await self.stop_backend()
        self._backend_task = asyncio.create_task(self.start_backend())

    async def stop_backend(self) -> None:
        if self._backend_task is not None and not self._backend_task.done():
            self._backend_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._backend_task
        await self.service.stop_backend()

    async def backend_status(self) -> BackendStatus:
        if self.backend is None:
            return BackendStatus(state="starting" if self._backend_task else "stopped", health="down")
        return BackendStatus.model_validate(await self.backend.status())
