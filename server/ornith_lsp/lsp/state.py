"""What the language server remembers between requests: each fix's state
(for code actions, hovers, previews and rollback) and the failing tests by
file.  Plain data, below both the server and its handlers, so neither has to
import the other to name it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from ornith_lsp.agent.service import FixResult, Scaffold
from ornith_lsp.lsp.wire import FileText, TaskStatus
from ornith_lsp.tasks import Task

REMEMBERED_FIXES = 100  # finished fixes kept for code actions, hovers and rollback


@dataclass
class FixState:
    task: Task
    versions: dict[str, int | None]
    job: asyncio.Task[Any] | None = None
    result: FixResult | None = None
    step: str = ""
    scaffold: Scaffold | None = None
    error: str | None = None
    files: list[FileText] = field(default_factory=list)  # the verified fix, for the preview

    queued: bool = False

    @property
    def status(self) -> TaskStatus:
        if self.error:
            return "error"
        if self.result is not None:  # done, though the job may still be tidying up
            return self.result.report.status
        if self.job is not None and not self.job.done():
            return "queued" if self.queued else "running"
        return "cancelled" if self.job is not None and self.job.cancelled() else "pending"


@dataclass
class Fixes:
    """What the server remembers between requests: fixes by task id and test
    tasks by uri.  How many run at once is the fix service's (its slots); at
    most ``agent.queue_limit`` may wait."""

    by_task: dict[str, FixState] = field(default_factory=dict)
    test_tasks: dict[str, list[Task]] = field(default_factory=dict)

    def forget_oldest(self, keep: int = REMEMBERED_FIXES) -> None:
        """A long session must not grow without bound: beyond ``keep``
        finished fixes, the oldest are forgotten (running and queued ones never)."""
        finished = [tid for tid, st in self.by_task.items() if st.status not in ("running", "queued")]
        for tid in finished[: max(0, len(finished) - keep)]:
            del self.by_task[tid]

    def waiting(self) -> int:
        return sum(1 for st in self.by_task.values() if st.status == "queued")

    def running(self) -> int:
        return sum(1 for st in self.by_task.values() if st.status == "running")

    def offered(self) -> list[str]:
        """Checkpoints of the verified fixes on offer: a rollback needs them."""
        return [st.result.checkpoint_id for st in self.by_task.values()
                if st.result and st.result.verified and st.result.checkpoint_id]
