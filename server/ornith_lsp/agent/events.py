"""What a fix tells its front end while it runs, as typed events.

Every front end (the editor's notifications and progress, the CI log, an
agent panel's ``session/update``, another agent's MCP progress) translates
these and nothing else, so none of them reads an untyped dict and none can
drift from the others.  The LSP notifications are these models serialised;
``ornith_lsp.lsp.wire`` exports their JSON Schema for the clients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.alias_generators import to_camel

from ornith_lsp.agent.report import Status
from ornith_lsp.agent.scaffold import Scaffold

ToolKind = Literal["read", "search", "edit", "execute", "other"]
TOOL_KINDS: dict[str, ToolKind] = {
    "read_file": "read", "search": "search", "edit": "edit", "rewrite": "edit",
    "run_tests": "execute", "run_diagnostics": "execute",
}

# what a fix can end as: the agent's own statuses, plus the ones a front end
# sees when it never ran to its end
DoneStatus = Status


class _Event(BaseModel):
    """camelCase on the wire (JSON-RPC's convention), snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)
    task_id: str


class PlanEvent(_Event):
    """The model's scaffold (or a built-in strategy's), again on every replan."""

    kind: Literal["plan"] = "plan"
    scaffold: Scaffold
    replan: str | None = Field(None, description="why the previous plan was abandoned; null for the first plan")


class StepEvent(_Event):
    kind: Literal["step"] = "step"
    title: str = ""
    index: int = Field(ge=1)
    of: int = Field(ge=1)
    intent: str


class ToolEvent(_Event):
    """One tool call: ``started``, then ``completed`` or ``failed`` with the same ``call_id``."""

    kind: Literal["tool"] = "tool"
    call_id: str
    tool: str
    tool_kind: ToolKind
    state: Literal["started", "completed", "failed"]
    summary: str = Field("", description="the call in a few words: the file read, the pattern searched")
    thought: str = Field("", description="what the model said it was thinking when it made the call")
    output: str = Field("", description="the head of what the tool answered")


class StrategyEvent(_Event):
    kind: Literal["strategy"] = "strategy"
    name: str
    chosen_by: Literal["model", "setting", "fallback"]
    why: str = ""


class CandidateEvent(_Event):
    """A sampled rewrite about to be checked (sample-and-verify strategies)."""

    kind: Literal["candidate"] = "candidate"
    n: int
    of: int


class VerifyEvent(_Event):
    kind: Literal["verify"] = "verify"
    ok: bool
    vetoed: bool = False
    summary: str


class DoneEvent(_Event):
    """The one ending every fix has, with the same fields whatever the ending."""

    kind: Literal["done"] = "done"
    title: str = ""
    status: DoneStatus
    reason: str = ""
    verified: bool = False


Event = Annotated[PlanEvent | StepEvent | ToolEvent | StrategyEvent | CandidateEvent | VerifyEvent | DoneEvent,
                  Field(discriminator="kind")]
EventSink = Callable[[Event], None]
EVENTS: TypeAdapter[Event] = TypeAdapter(Event)


def ignore(event: Event) -> None:
    """The sink of a caller that does not listen."""


def wire(event: BaseModel) -> dict[str, Any]:
    """An event (or any wire model) as the JSON a client receives."""
    return event.model_dump(mode="json", by_alias=True)
