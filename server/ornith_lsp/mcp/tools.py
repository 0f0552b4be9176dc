"""The four tools, as adapters over the fix service: no protocol here.

Each call names its workspace (``root``); the service for it is kept, so the
regression baseline and the resolved test command carry over between calls.
One model backend serves every root: it starts on the first ``fix`` (the
other tools never need it), from the settings of the folder the server was
started in and its command line, and stops with the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ornith_lsp import settings as settings_mod
from ornith_lsp.agent.service import (
    EventSink,
    FixService,
    TestRun,
    ignore,
    workspace_root,
)
from ornith_lsp.mcp.models import (
    Failure,
    FixInput,
    FixOutcome,
    GuardCheckInput,
    GuardVerdict,
    PatchResult,
    RunTestsInput,
    TestsResult,
    VerifyPatchInput,
)
from ornith_lsp.tasks import Task
from ornith_lsp.tasks.model import Location
from ornith_lsp.workspace.diffs import DiffError, safe_relpath


class Refusal(Exception):
    """A call that cannot be served as asked; the message tells the calling agent what to change."""


class Workbench:
    """What the tools share: a fix service per root, and the one backend."""

    def __init__(self, home: Path, cli: Mapping[str, Any] | None = None) -> None:
        self.home = home  # the folder the server was started in: the default root, and the backend's settings
        self.cli = dict(cli or {})
        self._services: dict[Path, FixService] = {}
        self._backend = FixService(None, settings_mod.load(home, cli=self.cli))
        self._starting = asyncio.Lock()

    def service(self, root: str | None) -> FixService:
        """The service for ``root`` (default: home) with its settings read afresh,
        so an edited ornith.toml counts from the next call."""
        path = workspace_root(Path(root).expanduser() if root else self.home.resolve())
        settings = settings_mod.load(path, cli=self.cli)
        if path not in self._services:
            self._services[path] = FixService(path, settings)
        service = self._services[path]
        service.settings = settings
        service.backend = self._backend.backend
        return service

    # -- the tools -------------------------------------------------------------------------
    async def run_tests(self, args: RunTestsInput) -> TestsResult:
        found = await self.service(args.root).collect()
        return tests_result(found)

    async def guard_check(self, args: GuardCheckInput) -> GuardVerdict:
        check = await self.service(args.root).check_patch(args.diff, args.tests)
        return GuardVerdict.of(check.verdict)

    async def verify_patch(self, args: VerifyPatchInput) -> PatchResult:
        check = await self.service(args.root).verify_patch(args.diff, args.tests)
        return PatchResult(verified=check.verified, reason=check.reason, graded=check.graded,
                           verdict=GuardVerdict.of(check.verdict))

    async def fix(self, args: FixInput, on_event: EventSink = ignore) -> FixOutcome:
        service = self.service(args.root)
        task = await self._task(service, args)
        service.backend = await self._start_backend()
        async with service.slot():
            result = await service.fix(task, on_event=on_event)
        report = result.report
        return FixOutcome(status=report.status, verified=result.verified, reason=report.reason, task=task.title,
                          diff=result.diff if result.verified else "",
                          verdict=GuardVerdict.of(result.verdict) if result.verdict else None)

    # -- helpers ---------------------------------------------------------------------------
    async def _task(self, service: FixService, args: FixInput) -> Task:
        """The task the call names; the tests run first either way, since
        their passes are the baseline the fix must keep passing."""
        if not args.test_id and not (args.file and args.message):
            raise Refusal("name the task: test_id (a failing test, as run_tests gives it), "
                          "or file and message (and line) of a problem")
        if args.test_id:
            return failing_test(await service.collect(), args.test_id)
        path = inside(service.workspace, args.file or "")
        if not (service.workspace / path).is_file():
            raise Refusal(f"{args.file}: no such file in {service.workspace}")
        await service.collect()
        return Task(source="diagnostic", title=f"fix {path}:{args.line or 1}: {(args.message or '')[:60]}",
                    message=args.message or "", location=Location(path=path, line=args.line or 1))

    async def _start_backend(self) -> Any:
        """The backend, started by the first call that needs it; a failed start
        is tried again by the next call."""
        async with self._starting:
            backend = self._backend.backend
            if backend is None or backend.endpoint is None:
                try:
                    backend = await self._backend.start_backend()
                except Exception as exc:  # PlanError, BackendUnavailable: both say why
                    await self._backend.stop_backend()
                    self._backend.backend = None
                    raise Refusal(f"the model backend could not start: {exc}") from None
            return backend

    async def close(self) -> None:
        await self._backend.stop_backend()

    def kill_now(self) -> None:
        """For a signal handler: no awaiting."""
        if self._backend.backend is not None:
            self._backend.backend.kill_now()


def tests_result(found: TestRun) -> TestsResult:
    failures = [Failure(id=t.test_id or t.id, message=t.message,
                        file=t.location.path if t.location else None, line=t.location.line if t.location else None)
                for t in found.tasks]
    return TestsResult(passed=len(found.baseline), failed=len(failures), failures=failures,
                       command=found.command.shown() if found.command else None, notes=found.notes)


def failing_test(found: TestRun, test_id: str) -> Task:
    for task in found.tasks:
        if task.test_id == test_id:
            return task
    failing = ", ".join(t.test_id or t.id for t in found.tasks[:10]) or "none"
    raise Refusal(f"{test_id} is not a failing test of this project (failing now: {failing})")


def inside(root: Path, path: str) -> str:
    """``path`` (relative to root, or absolute inside it) as a root-relative path."""
    given = Path(path)
    if given.is_absolute():
        try:
            path = given.resolve().relative_to(root).as_posix()
        except ValueError:
            raise Refusal(f"{path} is outside the root {root}") from None
    try:
        return safe_relpath(path, "file")
    except DiffError:
        raise Refusal(f"{path} is not a path inside the root {root}") from None
