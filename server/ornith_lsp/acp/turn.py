"""One prompt, start to finish: read it, find its tasks, fix them, offer the change.

The order is the promise the panel relies on: the editor's unsaved text is
read first (so the tests run on what the user sees), the fixes run one after
another in shadows (each laid over the previous verified ones, so they never
conflict), and only then -- verified, shown as a diff, and allowed through
``session/request_permission`` -- is anything written.  Refused, cancelled or
unverified: the user's files stay as they were.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from acp import RequestError, start_tool_call, text_block, tool_content, update_tool_call
from acp.schema import AllowedOutcome, PermissionOption, StopReason, ToolCallLocation, ToolCallUpdate

from ornith_lsp.acp import files, intent, updates
from ornith_lsp.acp.updates import Update, message, thought
from ornith_lsp.agent.service import BackendUnavailable, Event, FixService, TestRun, TestsCannotRun
from ornith_lsp.tasks import Task
from ornith_lsp.workspace.repo import WorkspaceError

if TYPE_CHECKING:
    from ornith_lsp.acp.agent import OrnithAgent

log = logging.getLogger(__name__)

MAX_TASKS = 10
ALLOW = "allow"
OPTIONS = [PermissionOption(option_id=ALLOW, name="Apply the verified fix", kind="allow_once"),
           PermissionOption(option_id="reject", name="Leave my files as they are", kind="reject_once")]


@dataclass
class Session:
    """One panel conversation: a workspace and the prompt running in it, if any."""

    id: str
    root: Path
    service: FixService
    job: asyncio.Task[StopReason] | None = None
    cancelled: bool = False
    notes: list[str] = field(default_factory=list)


class Outbox:
    """``session/update`` notifications in the order they were made: the
    service's events arrive through a plain callback, the sending is async."""

    def __init__(self, send: Callable[[Update], Any]) -> None:
        self.send = send
        self.queue: asyncio.Queue[Update | None] = asyncio.Queue()
        self.closed = False
        self.pump = asyncio.create_task(self._pump())

    def put(self, update: Update) -> None:
        if not self.closed:
            self.queue.put_nowait(update)

    async def _pump(self) -> None:
        while True:
            update = await self.queue.get()
            try:
                if update is None:
                    return
                await self.send(update)
            except (ConnectionError, OSError):
                pass  # the client went away; the prompt ends on its own
            except Exception:
                log.exception("could not send a session update")
            finally:
                self.queue.task_done()

    async def drain(self) -> None:
        """Everything put so far is sent (before a request that must follow it)."""
        await self.queue.join()

    async def close(self) -> None:
        """Send the rest, then stop: a prompt's response comes after its updates."""
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)
        await self.pump


class Turn:
    def __init__(self, agent: OrnithAgent, session: Session, text: str, embedded: dict[str, str],
                 out: Outbox) -> None:
        self.agent, self.session, self.text, self.embedded, self.out = agent, session, text, embedded, out

    @property
    def root(self) -> Path:
        return self.session.root

    async def run(self) -> StopReason:
        say, service = self.out.put, self.session.service
        for note in self.session.notes:  # what the session's start tidied away, said once
            say(thought(note))
        self.session.notes = []
        buffers = {**await self.agent.buffers(self.session), **self.embedded}
        listing = await asyncio.to_thread(files.listed, self.root)
        reading = intent.read_prompt(self.text, listing)
        found = await self._collect(service, reading, buffers)
        if found is None:
            return "end_turn"
        tasks, why = choose(reading, found)
        say(message(why))
        if not tasks:
            return "end_turn"
        backend = await self.agent.backend_for(service, say)
        if backend is None:
            return "end_turn"
        work = dict(buffers)
        for task in tasks:
            await self._fix(service, task, work, backend.plan.context_length)
        before = await asyncio.to_thread(files.disk_texts, self.root, sorted(work))
        before.update(buffers)
        changed = {rel: text for rel, text in work.items() if text != before.get(rel)}
        if not changed:
            return "end_turn"
        return await self.offer(changed, before)

    async def _collect(self, service: FixService, reading: intent.Intent, buffers: dict[str, str]) -> TestRun | None:
        """The tests (and linters the prompt names) on the user's current text."""
        say = self.out.put
        say(thought(f"Reading the prompt as: {describe(reading)}"))
        try:
            await service.test_command()
            found = await service.collect(reading.linters, overlays=buffers, progress=lambda line: say(thought(line)),
                                          resolved=True)
        except TestsCannotRun as exc:
            say(message(str(exc)))
            return None
        except (WorkspaceError, OSError) as exc:
            say(message(f"The tests could not run here: {exc}"))
            return None
        for note in found.notes:
            say(thought(note))
        return found

    async def _fix(self, service: FixService, task: Task, work: dict[str, str], context_length: int) -> None:
        say = self.out.put
        stream = updates.Stream(self.root)

        def sink(event: Event) -> None:
            try:
                for update in stream.translate(event):
                    say(update)
            except Exception:  # a view of the work must never stop the work
                log.exception("could not translate %s", event.kind)

        say(message(f"Working on: {task.title.removeprefix('Ornith: ')}"))
        try:
            result = await service.fix(task, overlays=work, on_event=sink)
        except (BackendUnavailable, WorkspaceError, OSError) as exc:
            say(message(f"{task.title.removeprefix('Ornith: ')}: {exc}"))
            return
        if (used := updates.usage(result, context_length)) is not None:
            say(used)
        await service.lay(result, work)

    async def offer(self, changed: dict[str, str], before: dict[str, str | None]) -> StopReason:
        """The verified change as a diff, behind the user's permission."""
        say, call_id = self.out.put, f"apply-{uuid.uuid4().hex[:8]}"
        title = f"Apply the verified fix to {len(changed)} file(s)"
        content = updates.diff_contents(self.root, before, changed)
        locations = [ToolCallLocation(path=str(self.root / rel)) for rel in sorted(changed)]
        say(start_tool_call(call_id, title, kind="edit", status="pending", content=content, locations=locations))
        await self.out.drain()
        try:
            answer = await self.agent.conn.request_permission(
                session_id=self.session.id, options=OPTIONS,
                tool_call=ToolCallUpdate(tool_call_id=call_id, title=title, kind="edit", status="pending",
                                         content=content, locations=locations))
            allowed = isinstance(answer.outcome, AllowedOutcome) and answer.outcome.option_id == ALLOW
        except RequestError as exc:  # a client that cannot ask is a client that did not allow
            say(thought(f"The permission request failed: {exc}"))
            allowed = False
        if not allowed:
            say(update_tool_call(call_id, status="failed", content=[tool_content(text_block("Not applied."))]))
            say(message("Not applied: your files were left as they were."))
            return "cancelled" if self.session.cancelled else "end_turn"
        try:
            await self.agent.write(self.session, changed, before)
        except files.WriteRefused as exc:
            say(update_tool_call(call_id, status="failed", content=[tool_content(text_block(str(exc)))]))
            say(message(str(exc)))
            return "end_turn"
        say(update_tool_call(call_id, status="completed"))
        say(message(f"Applied to {', '.join(sorted(changed))}."))
        return "end_turn"


def describe(reading: intent.Intent) -> str:
    what = {"tests": "fix failing tests", "findings": "fix findings", "request": "a request"}[reading.kind]
    parts = [what]
    for label, items in (("tests", reading.tests), ("files", reading.files), ("linters", reading.linters),
                         ("codes", reading.codes)):
        if items:
            parts.append(f"{label}: {', '.join(items)}")
    return "; ".join(parts)


def choose(reading: intent.Intent, found: TestRun) -> tuple[list[Task], str]:
    """The tasks to run and one line that says why (or why none)."""
    chosen = intent.select(reading, found.tasks)
    if chosen:
        shown = "; ".join(t.title.removeprefix("Ornith: ") for t in chosen[:MAX_TASKS])
        more = f" (the first {MAX_TASKS} of {len(chosen)})" if len(chosen) > MAX_TASKS else ""
        return chosen[:MAX_TASKS], f"{len(chosen[:MAX_TASKS])} task(s){more}: {shown}"
    if reading.kind != "request" and not intent.specific(reading):
        missing = [n for n in found.notes if "not installed" in n]
        what = ("no test fails" if reading.kind == "tests" else "; ".join(missing) if missing
                else f"{' and '.join(reading.linters)} report nothing")
        return [], f"Nothing to fix: {what}."
    known = found.baseline + [t.test_id for t in found.tasks if t.test_id]
    tests, unknown = intent.resolve(reading.tests, known)
    if not tests and not found.baseline:
        return [], ("Nothing could verify this change: no test passes now and the prompt names no test that "
                    "exists. Name a test (tests/test_x.py::test_y) that should pass afterwards.")
    task = intent.request_task(reading, tests)
    named = f"; these must pass: {', '.join(tests)}" if tests else ""
    skipped = f" (no test is named {', '.join(unknown)})" if unknown else ""
    return [task], (f"A request, verified by the tests: none of the {len(found.baseline)} passing now may fail"
                    f"{named}{skipped}.")
