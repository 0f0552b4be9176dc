"""The published schemas the model answers under.

Ornith proposes its own scaffold before acting: a goal, a strategy, ordered
steps (each with the tools it will use and a check that says it is done)
and a budget.  The loop holds the
model to that plan: a step's check is evaluated by the harness, not taken on
the model's word.

Actions are a union with one member per tool, each naming the arguments that
tool needs, so constrained decoding cannot produce a call no tool accepts.
"""

from __future__ import annotations

import functools
import json
import typing
import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, Field, RootModel, ValidationError

ToolName = Literal["read_file", "search", "edit", "rewrite", "run_tests", "run_diagnostics", "step_done", "finish"]
ALL_TOOLS: tuple[ToolName, ...] = typing.get_args(ToolName)
CheckKind = Literal["target_tests_pass", "diagnostics_clean", "edit_applied", "context_read"]


class Check(BaseModel):
    kind: CheckKind = Field(description="What the harness verifies before the step counts as done.")
    description: str = Field("", max_length=120)


class Step(BaseModel):
    intent: str = Field(max_length=120)
    tools: list[ToolName] = Field(min_length=1, max_length=8)
    check: Check


class Budget(BaseModel):
    turns: int = Field(ge=1, le=200)
    tokens: int = Field(ge=256, le=2_000_000)


class Scaffold(BaseModel):
    """Every field is held to: the steps' checks by the harness, each step's
    tools by refusing any other (``step_done`` and ``finish`` always answer),
    the budget as a cap under the user's own limits.  When to replan is not
    the model's to say: a failed check replans."""

    goal: str = Field(max_length=160)
    strategy: str = Field(max_length=240)
    steps: list[Step] = Field(min_length=1, max_length=5)
    budget: Budget


class _Call(BaseModel):
    thought: str = Field("", max_length=240)


class ReadFile(_Call):
    tool: Literal["read_file"]
    path: str = Field(max_length=300)
    start_line: int | None = Field(None, ge=1)
    end_line: int | None = Field(None, ge=1)


class Search(_Call):
    tool: Literal["search"]
    query: str = Field(min_length=1, max_length=200)


class Edit(_Call):
    tool: Literal["edit"]
    path: str = Field(max_length=300)
    search: str
    replace: str


class Rewrite(_Call):
    """Names a definition (or a small file); its new text follows as plain
    code in the next answer, because code inside JSON strings is where small
    models break (unescaped quotes, runaway ``\\n``)."""

    tool: Literal["rewrite"]
    path: str = Field(max_length=300)
    symbol: str = Field("", max_length=120, description="function, Class or Class.method; empty: the whole file")


class RunTests(_Call):
    tool: Literal["run_tests"]


class RunDiagnostics(_Call):
    tool: Literal["run_diagnostics"]


class StepDone(_Call):
    tool: Literal["step_done"]


class Finish(_Call):
    tool: Literal["finish"]
    summary: str = Field("", max_length=300)


AnyCall = Annotated[ReadFile | Search | Edit | Rewrite | RunTests | RunDiagnostics | StepDone | Finish,
                    Field(discriminator="tool")]


class Action(RootModel[AnyCall]):
    """One tool call.  A discriminated union, so a call is valid by construction
    under constrained decoding: ``search`` cannot come without its ``query``,
    as it could when every argument of one flat object was optional."""

    @property
    def call(self) -> ReadFile | Search | Edit | Rewrite | RunTests | RunDiagnostics | StepDone | Finish:
        return self.root

    @property
    def tool(self) -> str:
        return self.root.tool


class ParseError(ValueError):
    """The model's output is not a valid object of the schema; the text goes back to the model."""


@functools.cache
def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """Built once per model (tens of ms on a busy machine, and asked for on
    every turn, on the event loop); callers only read it."""
    return model.model_json_schema()


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def _objects(text: str):
    """Every balanced ``{...}`` in ``text``, outermost first, respecting strings."""
    start = text.find("{")
    while start != -1:
        depth, in_str, escape = 0, False, False
        for i in range(start, len(text)):
            ch = text[i]
            if in_str:
                if escape:
                    escape = False
                elif ch == "\\":
                    escape = True
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    yield text[start : i + 1]
                    break
        start = text.find("{", start + 1)


M = TypeVar("M", bound=BaseModel)


def parse(text: str, model: type[M], *, cut_off: bool = False) -> M:
    """Strict JSON first; then the fallback for backends without constrained
    decoding: a fenced block, or a balanced object in prose.  The error names
    the first problem, so the model's retry can correct it."""
    candidates = [text.strip()] + [m.strip() for m in _FENCE.findall(text)] + list(_objects(text))
    first_error = None
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError as exc:
            first_error = first_error or f"invalid JSON: {exc}"
            continue
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            first_error = first_error or "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()[:5]
            )
    if cut_off:
        raise ParseError(f"could not read a {model.__name__}: the answer was cut off at the token limit; keep every string short")
    raise ParseError(f"could not read a {model.__name__}: {first_error or 'no JSON object found'}")
