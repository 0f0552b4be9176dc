"""The published schemas the model answers under.

Ornith proposes its own scaffold before acting: a goal, a strategy, ordered
steps (each with the tools it will use and a check that says it is done),
the conditions under which it will replan, and a budget.  The loop holds the
model to that plan: a step's check is evaluated by the harness, not taken on
the model's word.

Actions use one flat object (``tool`` + optional argument fields) rather than
a ``oneOf`` per tool, because a flat schema compiles into a small grammar
that even a tiny model follows under constrained decoding; the harness then
validates the arguments each tool needs.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError

ToolName = Literal["read_file", "search", "edit", "run_tests", "run_diagnostics", "step_done", "finish"]
CheckKind = Literal["target_tests_pass", "diagnostics_clean", "edit_applied", "context_read"]


class Check(BaseModel):
    kind: CheckKind = Field(description="What the harness verifies before the step counts as done.")
    description: str = Field("", max_length=120)


class Step(BaseModel):
    intent: str = Field(max_length=120)
    tools: list[ToolName] = Field(min_length=1, max_length=7)
    check: Check


class Budget(BaseModel):
    turns: int = Field(ge=1, le=200)
    tokens: int = Field(ge=256, le=2_000_000)


class Scaffold(BaseModel):
    goal: str = Field(max_length=160)
    strategy: str = Field(max_length=240)
    steps: list[Step] = Field(min_length=1, max_length=5)
    replan_when: list[Annotated[str, Field(max_length=120)]] = Field(default_factory=list, max_length=3)
    budget: Budget


class Action(BaseModel):
    thought: str = Field("", max_length=240)
    tool: ToolName
    path: str | None = Field(None, max_length=300)
    start_line: int | None = None
    end_line: int | None = None
    query: str | None = Field(None, max_length=200)
    search: str | None = None
    replace: str | None = None
    summary: str | None = Field(None, max_length=300)


class ParseError(ValueError):
    """The model's output is not a valid object of the schema; the text goes back to the model."""


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
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


def parse(text: str, model: type[BaseModel], *, cut_off: bool = False) -> BaseModel:
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
