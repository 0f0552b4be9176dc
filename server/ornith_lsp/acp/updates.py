"""The fix service's events as ACP ``session/update`` payloads.

The panel draws what the protocol has words for: the scaffold becomes a
``plan`` whose entries move from pending to in progress to completed as the
steps run (a replan replaces it), every tool call a ``tool_call`` and its
``tool_call_update``, a verification an ``execute`` call of its own, and the
rest (strategy, candidates, endings) a line of text.  Nothing here sends; the
agent sends what these functions return, in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from acp import (
    plan_entry,
    start_tool_call,
    text_block,
    tool_content,
    tool_diff_content,
    update_agent_message_text,
    update_agent_thought_text,
    update_plan,
    update_tool_call,
)
from acp.schema import (
    AgentMessageChunk,
    AgentPlanUpdate,
    AgentThoughtChunk,
    ContentToolCallContent,
    FileEditToolCallContent,
    PlanEntry,
    TerminalToolCallContent,
    ToolCallLocation,
    ToolCallProgress,
    ToolCallStart,
    UsageUpdate,
)

from ornith_lsp.agent.service import (
    CandidateEvent,
    DoneEvent,
    Event,
    FixResult,
    PlanEvent,
    StepEvent,
    StrategyEvent,
    ToolEvent,
    VerifyEvent,
)

Update = (AgentMessageChunk | AgentThoughtChunk | AgentPlanUpdate | ToolCallStart | ToolCallProgress
          | UsageUpdate)
ToolContent = ContentToolCallContent | FileEditToolCallContent | TerminalToolCallContent
OUTPUT_CHARS = 2000


class Stream:
    """One prompt's translation: the plan's entries live between events."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.entries: list[PlanEntry] = []
        self.verifications = 0

    def translate(self, event: Event) -> list[Update]:
        if isinstance(event, PlanEvent):
            return self._plan(event)
        if isinstance(event, StepEvent):
            return self._step(event)
        if isinstance(event, ToolEvent):
            said = [update_agent_thought_text(event.thought + "\n")] if event.thought else []
            return [*said, tool_update(event, self.root)]
        if isinstance(event, VerifyEvent):
            self.verifications += 1
            return [verification(event, f"verify-{event.task_id}-{self.verifications}")]
        if isinstance(event, StrategyEvent):
            why = f": {event.why}" if event.why else ""
            return [update_agent_thought_text(f"Strategy {event.name} (chosen by {event.chosen_by}){why}\n")]
        if isinstance(event, CandidateEvent):
            return [update_agent_thought_text(f"Checking candidate fix {event.n} of {event.of}\n")]
        if isinstance(event, DoneEvent):
            return self._done(event)
        return []

    def _plan(self, event: PlanEvent) -> list[Update]:
        s = event.scaffold
        self.entries = [plan_entry(step.intent, priority="high" if n == 0 else "medium")
                        for n, step in enumerate(s.steps)]
        head = f"Replanning: {event.replan}\n" if event.replan else ""
        return [update_agent_thought_text(f"{head}Goal: {s.goal}\nStrategy: {s.strategy}\n"), update_plan(self.entries)]

    def _step(self, event: StepEvent) -> list[Update]:
        if len(self.entries) != event.of:  # a step without its plan: show the step alone
            self.entries = [plan_entry(event.intent) for _ in range(event.of)]
        self.entries = [e.model_copy(update={"status": "completed" if n < event.index - 1 else
                                             "in_progress" if n == event.index - 1 else e.status})
                        for n, e in enumerate(self.entries)]
        return [update_plan(self.entries)]

    def _done(self, event: DoneEvent) -> list[Update]:
        out: list[Update] = []
        if event.verified and self.entries:
            self.entries = [e.model_copy(update={"status": "completed"}) for e in self.entries]
            out.append(update_plan(self.entries))
        title = event.title.removeprefix("Ornith: ")
        if event.verified:
            out.append(update_agent_message_text(f"Verified: {title}. {event.reason}\n"))
        else:
            out.append(update_agent_message_text(f"No verified fix ({event.status}): {title}. {event.reason}\n"))
        return out


def tool_update(event: ToolEvent, root: Path) -> ToolCallStart | ToolCallProgress:
    """``started`` opens the call; ``completed``/``failed`` closes it with the tool's answer."""
    if event.state == "started":
        title = f"{event.tool} {event.summary}".strip()
        return start_tool_call(event.call_id, title, kind=event.tool_kind, status="in_progress",
                               locations=_locations(event.summary, root), raw_input={"summary": event.summary})
    content = [tool_content(text_block(event.output[:OUTPUT_CHARS]))] if event.output else None
    return update_tool_call(event.call_id, status="completed" if event.state == "completed" else "failed",
                            content=content)


def _locations(summary: str, root: Path) -> list[ToolCallLocation] | None:
    """The ``path=`` of a tool's summary as an absolute path in the workspace,
    so a panel can follow along (the tool read the shadow copy of that file)."""
    for word in summary.split():
        if word.startswith("path="):
            return [ToolCallLocation(path=str(root / word[len("path="):]))]
    return None


def verification(event: VerifyEvent, call_id: str) -> ToolCallStart:
    """A verification is already over when its event comes: one closed call."""
    what = "vetoed by the guard" if event.vetoed else ("verified" if event.ok else "not verified")
    return start_tool_call(call_id, f"Verify the change: {what}", kind="execute",
                           status="completed" if event.ok else "failed",
                           content=[tool_content(text_block(event.summary[:OUTPUT_CHARS]))])


def usage(result: FixResult, context_length: int) -> UsageUpdate | None:
    """The context the last model call used, against the window."""
    turns = result.report.turns
    if not turns or context_length <= 0:
        return None
    last = turns[-1]
    return UsageUpdate(session_update="usage_update", used=last.prompt_tokens + last.completion_tokens,
                       size=context_length)


def diff_contents(root: Path, before: Mapping[str, str | None],
                  after: Mapping[str, str]) -> list[ToolContent]:
    """Each changed file as ACP ``diff`` content: absolute path, old and new text."""
    return [tool_diff_content(str(root / rel), after[rel], before.get(rel)) for rel in sorted(after)]


def message(text: str) -> AgentMessageChunk:
    return update_agent_message_text(text if text.endswith("\n") else text + "\n")


def thought(text: str) -> AgentThoughtChunk:
    return update_agent_thought_text(text if text.endswith("\n") else text + "\n")
