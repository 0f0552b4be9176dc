"""The MCP wiring: the SDK's low-level server over stdio, the tools of :mod:`.tools`.

The low-level server, not the decorator API, because the tools' schemas are
the pydantic models of :mod:`.models` as they are -- plain field names, one
object per tool -- and the list is ours to order.  A call's arguments are
validated by its model; a refusal, a bad diff or a root outside git comes
back as a tool error (``isError``) the calling agent can read and act on,
and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp.types.jsonrpc import INVALID_REQUEST, PARSE_ERROR
from pydantic import BaseModel, ValidationError

from ornith_lsp import settings as settings_mod
from ornith_lsp.agent.service import (
    BackendUnavailable,
    Event,
    PatchError,
    StepEvent,
    TestsCannotRun,
    WorkspaceError,
)
from ornith_lsp.guard.verdict import GuardError
from ornith_lsp.mcp.models import (
    FixInput,
    FixOutcome,
    GuardCheckInput,
    GuardVerdict,
    PatchResult,
    RunTestsInput,
    TestsResult,
    VerifyPatchInput,
)
from ornith_lsp.mcp.tools import Refusal, Workbench

log = logging.getLogger(__name__)

# what a caller can set right: each says why in its message
REFUSALS = (Refusal, WorkspaceError, PatchError, GuardError, TestsCannotRun, BackendUnavailable,
            settings_mod.SettingsError)


@dataclass(frozen=True)
class ToolSpec:
    name: str
    title: str
    description: str
    input: type[BaseModel]
    output: type[BaseModel]
    read_only_world: bool = True  # only the user's tree is never written; fix also calls the model

    def tool(self) -> types.Tool:
        return types.Tool(
            name=self.name, title=self.title, description=self.description,
            input_schema=self.input.model_json_schema(), output_schema=self.output.model_json_schema(),
            annotations=types.ToolAnnotations(read_only_hint=True, destructive_hint=False,
                                              idempotent_hint=self.read_only_world, open_world_hint=False))


# the order tools/list gives, always
TOOLS = (
    ToolSpec("run_tests", "Run the project's tests", (
        "Run the project's tests in a shadow copy of root (its own test command, found as the project "
        "sets it up) and list each failure with its test id, message, file and line, plus how many passed. "
        "Nothing is written to root."), RunTestsInput, TestsResult),
    ToolSpec("guard_check", "Check a diff for reward hacking", (
        "Ask the reward-hacking guard about a diff against root as it is now: edits to tests or their "
        "data, skipped or weakened assertions, special-casing of test inputs, suppression comments, and "
        "the named tests graded on the original test files. Returns the verdict with its findings. "
        "Nothing is written to root."), GuardCheckInput, GuardVerdict),
    ToolSpec("verify_patch", "Verify a patch", (
        "Verify a diff the way ornith verifies its own fixes: apply it in a shadow worktree, run the "
        "named tests and every test that passes now on the original (pristine) test files, and run the "
        "guard. Returns verified or why not. Nothing is written to root."), VerifyPatchInput, PatchResult),
    ToolSpec("fix", "Fix a failing test or a problem", (
        "Have the local model fix one task -- a failing test (test_id) or a problem at file:line "
        "(message) -- in a shadow worktree, verified like verify_patch. Returns the verified patch as a "
        "diff to apply, or why there is none. Starts the configured model backend on first use. "
        "Nothing is written to root."), FixInput, FixOutcome, read_only_world=False),
)


class Front:
    """Protocol in, the workbench's typed calls, protocol out."""

    def __init__(self, bench: Workbench) -> None:
        self.bench = bench
        self.specs = {spec.name: spec for spec in TOOLS}

    async def list_tools(self, ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[spec.tool() for spec in TOOLS])

    async def call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        spec = self.specs.get(params.name)
        if spec is None:
            return refused(f"no tool named {params.name!r}; the tools are {', '.join(self.specs)}")
        try:
            args = spec.input.model_validate(params.arguments or {})
        except ValidationError as exc:
            return refused(f"{spec.name}: the arguments do not fit its schema:\n{brief(exc)}")
        try:
            out = await self.run(spec.name, args, ctx)
        except REFUSALS as exc:
            return refused(str(exc))
        except Exception as exc:  # the call fails, the server goes on
            log.exception("tool %s failed", spec.name)
            return refused(f"{spec.name} failed: {type(exc).__name__}: {exc}")
        return types.CallToolResult(content=[types.TextContent(type="text", text=out.model_dump_json(indent=1))],
                                    structured_content=out.model_dump(mode="json"))

    async def run(self, name: str, args: Any, ctx: Any) -> BaseModel:
        calls: dict[str, Callable[[], Awaitable[BaseModel]]] = {
            "run_tests": lambda: self.bench.run_tests(args),
            "guard_check": lambda: self.bench.guard_check(args),
            "verify_patch": lambda: self.bench.verify_patch(args),
            "fix": lambda: self.fix(args, ctx),
        }
        return await calls[name]()

    async def fix(self, args: FixInput, ctx: Any) -> FixOutcome:
        """A fix reports its steps as progress when the caller asked for progress."""
        token = progress_token(ctx)
        if token is None:
            return await self.bench.fix(args)
        sent: list[asyncio.Task[None]] = []

        def on_event(event: Event) -> None:
            if isinstance(event, StepEvent):
                sent.append(asyncio.ensure_future(ctx.session.send_progress_notification(
                    token, event.index, event.of, message=event.intent)))

        try:
            return await self.bench.fix(args, on_event)
        finally:
            await asyncio.gather(*sent, return_exceptions=True)


def progress_token(ctx: Any) -> str | int | None:
    meta = getattr(ctx, "meta", None) or {}
    return meta.get("progress_token", meta.get("progressToken"))


def refused(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)


def brief(exc: ValidationError) -> str:
    """One line per bad field, without pydantic's links."""
    return "\n".join(f"- {'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}" for e in exc.errors())


def build(bench: Workbench) -> Server:
    from ornith_lsp import __version__

    front = Front(bench)
    return Server("ornith-lsp", version=__version__, title="Ornith: verified fixes",
                  instructions=("Tools to run the project's tests, check a diff for reward hacking, verify a "
                                "patch against pristine tests, and have a local model fix a failing test. "
                                "Nothing is written to the project: patches come back as diffs."),
                  on_list_tools=front.list_tools, on_call_tool=front.call_tool)


class AnswerBadLines:
    """The SDK drops a line that is no JSON-RPC message; JSON-RPC asks for an
    error response (id null), so the client learns its line went nowhere."""

    def __init__(self, read: Any, write: Any) -> None:
        self._read, self._write = read, write

    @property
    def last_context(self) -> Any:
        return getattr(self._read, "last_context", None)

    async def receive(self) -> Any:
        while True:
            item = await self._read.receive()
            if not isinstance(item, Exception):
                return item
            await self._write.send(SessionMessage(bad_line(item)))

    def __aiter__(self) -> AnswerBadLines:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._read.aclose()

    async def __aenter__(self) -> AnswerBadLines:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def bad_line(exc: Exception) -> types.JSONRPCError:
    unreadable = isinstance(exc, ValidationError) and any(e["type"] == "json_invalid" for e in exc.errors())
    code, what = (PARSE_ERROR, "Parse error: the line is not JSON") if unreadable else (
        INVALID_REQUEST, "Invalid Request: the line is not a JSON-RPC 2.0 message")
    return types.JSONRPCError(jsonrpc="2.0", id=None, error=types.ErrorData(code=code, message=what))


async def serve(bench: Workbench) -> None:
    """Until the client closes stdin; the backend stops with it."""
    server = build(bench)
    try:
        async with stdio_server() as (read, write):
            await server.run(AnswerBadLines(read, write), write, server.create_initialization_options())
    finally:
        await bench.close()
