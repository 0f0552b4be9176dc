"""The pygls wiring: protocol at the edge, logic in plain modules.

Handlers here only convert protocol types and call into ``settings``,
``backends`` and friends; anything worth testing without a client lives there.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.uris import to_fs_path

from ornith_lsp.agent.service import wire
from ornith_lsp.lsp import fixes
from ornith_lsp.lsp.editor import OrnithServer
from ornith_lsp.tasks import Task

log = logging.getLogger("ornith_lsp.lsp")

CMD_BACKEND_STATUS = "ornith.backendStatus"
SHUTDOWN_GRACE_S = 10.0  # running fixes get this long to reap their tests and remove their shadows
SETTINGS_SECTION = "ornith"


def _editor_options(raw: Any) -> dict[str, Any]:
    """Accept both ``{"ornith": {...}}`` and a bare ``{...}`` (clients differ)."""
    if not isinstance(raw, dict):
        return {}
    inner = raw.get(SETTINGS_SECTION)
    return inner if isinstance(inner, dict) else raw


def build(cli_settings: dict[str, Any] | None = None) -> OrnithServer:
    server = OrnithServer(cli_settings)

    @server.feature(types.INITIALIZE)
    def initialize(ls: OrnithServer, params: types.InitializeParams) -> None:
        root_uri = params.root_uri or (params.workspace_folders[0].uri if params.workspace_folders else None)
        root = to_fs_path(root_uri) if root_uri else params.root_path
        ls.root = Path(root) if root else None
        ls.service.root = ls.root
        ls.editor_settings = _editor_options(params.initialization_options)
        if not ls.reload_settings():
            ls.editor_settings = {}
            ls.reload_settings()

    @server.feature(types.INITIALIZED)
    def initialized(ls: OrnithServer, params: types.InitializedParams) -> None:
        ls._backend_task = asyncio.create_task(ls.start_backend())
        if ls.root is not None:
            ls._housekeeping = asyncio.create_task(ls.service.tidy())

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(ls: OrnithServer, params: types.DidChangeConfigurationParams) -> None:
        before = ls.settings
        ls.editor_settings = _editor_options(params.settings)
        if ls.reload_settings() and ls.settings.backend != before.backend:
            ls.say("ornith: backend settings changed; restarting the backend")
            await ls.restart_backend()

    @server.command(CMD_BACKEND_STATUS)
    async def backend_status(ls: OrnithServer, *args: Any) -> dict[str, Any]:
        return wire(await ls.backend_status())

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]),
    )
    def code_action(ls: OrnithServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        return fixes.code_actions(ls, params)

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def hover(ls: OrnithServer, params: types.HoverParams) -> types.Hover | None:
        return fixes.hover(ls, params.text_document.uri, params.position)

    @server.feature(types.TEXT_DOCUMENT_CODE_LENS)
    def code_lens(ls: OrnithServer, params: types.CodeLensParams) -> list[types.CodeLens]:
        return fixes.code_lenses(ls, params.text_document.uri)

    @server.command("ornith.fix")
    async def fix_command(ls: OrnithServer, task: dict[str, Any]) -> dict[str, Any]:
        return wire(await fixes.start_fix(ls, Task.model_validate(task)))

    @server.command("ornith.fixTests")
    async def fix_tests(ls: OrnithServer, *args: Any) -> dict[str, Any]:
        return wire(await fixes.fix_tests(ls))

    @server.command("ornith.runTests")
    async def run_tests(ls: OrnithServer, *args: Any) -> dict[str, Any]:
        return wire(await fixes.run_tests_command(ls))

    @server.command("ornith.apply")
    async def apply(ls: OrnithServer, task_id: str) -> dict[str, Any]:
        return wire(await fixes.apply(ls, task_id))

    @server.command("ornith.showDiff")
    def show_diff(ls: OrnithServer, task_id: str) -> dict[str, Any]:
        return wire(fixes.show(ls, task_id))

    @server.command("ornith.showPlan")
    def show_plan(ls: OrnithServer, task_id: str) -> dict[str, Any]:
        return wire(fixes.show(ls, task_id))

    @server.command("ornith.tasks")
    def list_tasks(ls: OrnithServer, *args: Any) -> list[dict[str, Any]]:
        return [wire(t) for t in fixes.list_tasks(ls)]

    @server.command("ornith.cancel")
    def cancel(ls: OrnithServer, task_id: str | None = None) -> dict[str, Any]:
        return wire(fixes.cancel(ls, task_id))

    @server.command("ornith.cancelAll")
    def cancel_all(ls: OrnithServer, *args: Any) -> dict[str, Any]:
        return wire(fixes.cancel(ls, None))

    @server.command("ornith.queue")
    def queue(ls: OrnithServer, *args: Any) -> dict[str, Any]:
        return wire(fixes.queue_status(ls))

    @server.command("ornith.rollback")
    async def roll_back(ls: OrnithServer, task_id: str) -> dict[str, Any]:
        return wire(await fixes.roll_back(ls, task_id))

    @server.feature(types.SHUTDOWN)
    async def shutdown(ls: OrnithServer, *args: Any) -> None:
        await fixes.cancel_and_wait(ls, timeout_s=SHUTDOWN_GRACE_S)
        await ls.stop_backend()

    return server
