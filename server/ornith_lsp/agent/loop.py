"""The self-scaffolding loop: propose a plan, run it, replan on failure.

Stage 1 asks the model for a :class:`Scaffold`.  Stage 2 walks its steps; each
turn is one :class:`Action`.  ``step_done`` makes the harness run the step's
check; ``finish`` makes it run the independent verification.  A failed check
or verification appends a replan request that names what failed and every
dead end so far; an edit already tried is refused by the tools.

Two kinds of trouble, as in mini-swe-agent: recoverable ones (unparsable
output, a refused tool call) go back to the model as the next message and
cost budget; terminal ones (verified, budget exhausted, cancelled) end the
run with a report.  The prompt only ever grows at the end, so each turn
reuses the backend's KV cache of the previous one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from pydantic import BaseModel, Field

from ornith_lsp.agent.scaffold import Action, ParseError, Scaffold, Step, parse, schema_of
from ornith_lsp.agent.tools import ToolError, Tools, tool_help
from ornith_lsp.llm.client import ChatClient, Completion, LLMError
from ornith_lsp.tasks import Task

OBSERVATION_CHARS = 3000
EventSink = Callable[[str, dict[str, Any]], None]


class Limits(BaseModel):
    turns: int = 24
    tokens: int = 200_000
    wall_s: float = 600.0
    output_tokens: int = 512
    context_length: int = 8192
    temperature: float = 0.2


class Verification(BaseModel):
    ok: bool
    vetoed: bool = False
    summary: str
    findings: list[dict[str, Any]] = Field(default_factory=list)


class Turn(BaseModel):
    n: int
    stage: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    prefill_ms: float | None = None
    decode_ms: float | None = None
    tool: str | None = None
    outcome: str = ""


class Report(BaseModel):
    task_id: str
    status: str = "unfixed"  # fixed | unfixed | vetoed | budget | error | cancelled
    reason: str = ""
    scaffolds: list[dict[str, Any]] = Field(default_factory=list)
    turns: list[Turn] = Field(default_factory=list)
    verification: Verification | None = None
    dead_ends: list[str] = Field(default_factory=list)
    wall_s: float = 0.0

    def tokens(self) -> dict[str, int]:
        return {"prompt": sum(t.prompt_tokens for t in self.turns),
                "completion": sum(t.completion_tokens for t in self.turns)}

    def cache(self) -> dict[str, Any]:
        later = self.turns[1:]
        prompt = sum(t.prompt_tokens for t in later)
        cached = sum(t.cached_tokens for t in later)
        return {"prompt_tokens": sum(t.prompt_tokens for t in self.turns),
                "cached_tokens": sum(t.cached_tokens for t in self.turns),
                "reused_fraction_after_first_turn": round(cached / prompt, 4) if prompt else None}


def _prompt(name: str) -> str:
    return resources.files("ornith_lsp.agent").joinpath("prompts", name).read_text(encoding="utf-8")


class _Stop(Exception):
    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


class Loop:
    def __init__(self, task: Task, *, llm: ChatClient, tools: Tools,
                 verify: Callable[[], Awaitable[Verification]], context: str,
                 limits: Limits, on_event: EventSink | None = None) -> None:
        self.task, self.llm, self.tools, self.verify, self.limits = task, llm, tools, verify, limits
        self.on_event = on_event or (lambda kind, data: None)
        self.report = Report(task_id=task.id)
        self.started = time.monotonic()
        self.messages: list[dict[str, str]] = [
            {"role": "system", "content": _prompt("system.md")},
            {"role": "user", "content": _prompt("task.md").format(
                tools=json.dumps(tool_help(), indent=1), context=context,
                task=json.dumps(task.model_dump(exclude_none=True), indent=1),
                scaffold_schema=json.dumps(schema_of(Scaffold)))},
        ]

    # -- model calls ------------------------------------------------------------------
    def _check_budget(self) -> None:
        r = self.report
        if len(r.turns) >= self.limits.turns:
            raise _Stop("budget", f"turn budget of {self.limits.turns} used up")
        used = sum(t.prompt_tokens + t.completion_tokens for t in r.turns)
        if used >= self.limits.tokens:
            raise _Stop("budget", f"token budget of {self.limits.tokens} used up ({used})")
        if time.monotonic() - self.started >= self.limits.wall_s:
            raise _Stop("budget", f"wall-time budget of {self.limits.wall_s:.0f} s used up")
        last = r.turns[-1].prompt_tokens + r.turns[-1].completion_tokens if r.turns else 0
        if last + OBSERVATION_CHARS // 3 + self.limits.output_tokens >= self.limits.context_length:
            raise _Stop("budget", f"the conversation reached the context window ({self.limits.context_length} tokens)")

    async def _ask(self, schema: type[BaseModel], stage: str) -> BaseModel:
        """One model call under the schema; a parse error is told to the model and retried within budget."""
        while True:
            self._check_budget()
            try:
                # a plan is several actions long: give it room to finish its JSON
                budget = self.limits.output_tokens * (2 if schema is Scaffold else 1)
                # the wall budget holds during a slow answer too: the request is cancelled
                remaining = self.limits.wall_s - (time.monotonic() - self.started)
                done: Completion = await asyncio.wait_for(self.llm.complete(
                    self.messages, json_schema=schema_of(schema), max_tokens=budget,
                    temperature=self.limits.temperature), timeout=max(remaining, 0.1))
            except asyncio.TimeoutError:
                raise _Stop("budget", f"wall-time budget of {self.limits.wall_s:.0f} s used up "
                                      "waiting for the model") from None
            except LLMError as exc:
                raise _Stop("error", f"model request failed: {exc}") from None
            t = done.timings
            turn = Turn(n=len(self.report.turns) + 1, stage=stage, prompt_tokens=done.usage.prompt_tokens,
                        cached_tokens=done.usage.cached_tokens, completion_tokens=done.usage.completion_tokens,
                        prefill_ms=t.get("prompt_ms"), decode_ms=t.get("predicted_ms"))
            self.report.turns.append(turn)
            self.messages.append({"role": "assistant", "content": done.text})
            try:
                return parse(done.text, schema, cut_off=done.finish_reason == "length")
            except ParseError as exc:
                turn.outcome = str(exc)
                self.messages.append({"role": "user", "content": f"{exc}. Answer with one JSON object of the schema, nothing else."})

    def _say(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text[:OBSERVATION_CHARS]})

    # -- stages -----------------------------------------------------------------------
    async def _plan(self, why: str | None) -> Scaffold:
        if why is not None:
            self.tools.reset()
            dead = "; ".join(f"{k}: {v}" for k, v in self.tools.tried.items()) or "none yet"
            self._say(f"Replan. {why}\nThe workspace was reset to the original files.\n"
                      f"Dead ends (never repeat these edits): {dead}\n"
                      "Propose a revised scaffold as one JSON object.")
        scaffold = await self._ask(Scaffold, "scaffold" if why is None else "replan")
        self.report.scaffolds.append(scaffold.model_dump())
        self.on_event("plan", {"scaffold": scaffold.model_dump(), "replan": why})
        return scaffold

    async def _check(self, step: Step, edits_before: int, reads_before: int) -> tuple[bool, str]:
        kind = step.check.kind
        if kind == "edit_applied":
            return self.tools.edits_applied > edits_before, "no edit was applied in this step"
        if kind == "context_read":
            return self.tools.reads > reads_before, "nothing was read or searched in this step"
        if kind == "target_tests_pass":
            ok, report = await self.tools.checker.run_tests()
            self.tools.record_outcome("tests passed" if ok else "tests still failed")
            return ok, report
        ok, detail = await self.tools.checker.run_diagnostics()
        if ok is None:
            return False, f"{detail}, so a diagnostics_clean check cannot pass; use target_tests_pass or edit_applied"
        return ok, detail

    async def _run_steps(self, scaffold: Scaffold) -> str | None:
        """Walk the steps; return a replan reason, or None once verified."""
        for index, step in enumerate(scaffold.steps, 1):
            self.on_event("step", {"index": index, "of": len(scaffold.steps), "intent": step.intent})
            self._say(f"Step {index}/{len(scaffold.steps)}: {step.intent}\n"
                      f"Done when: {step.check.kind} ({step.check.description}). Answer with one action as JSON.")
            edits, reads = self.tools.edits_applied, self.tools.reads
            while True:
                action = await self._ask(Action, "act")
                turn = self.report.turns[-1]
                turn.tool = action.tool
                if action.tool == "finish":
                    verdict = await self.verify()
                    self.report.verification = verdict
                    self.on_event("verify", verdict.model_dump())
                    if verdict.ok:
                        raise _Stop("fixed", verdict.summary)
                    self.tools.record_outcome(("vetoed: " if verdict.vetoed else "not verified: ") + verdict.summary[:200])
                    turn.outcome = verdict.summary
                    return f"Verification failed: {verdict.summary}"
                if action.tool == "step_done":
                    ok, detail = await self._check(step, edits, reads)
                    turn.outcome = "check passed" if ok else f"check failed: {detail[:200]}"
                    if ok:
                        break
                    return f"Step {index} ({step.intent}) did not pass its check {step.check.kind}: {detail}"
                try:
                    observation = await self.tools.run(action)
                except ToolError as exc:
                    observation = f"error: {exc}"
                turn.outcome = observation.splitlines()[0][:200] if observation else ""
                self._say(f"{observation}\nNext action as JSON.")
        return "All steps are done but `finish` was never called; finish or plan the remaining work."

    async def run(self) -> Report:
        why: str | None = None
        try:
            while True:
                scaffold = await self._plan(why)
                why = await self._run_steps(scaffold)
        except _Stop as stop:
            self.report.status, self.report.reason = stop.status, stop.reason
            last = self.report.verification
            if stop.status == "budget" and last is not None and last.vetoed:
                self.report.status = "vetoed"
        self.report.dead_ends = [f"{k}: {v}" for k, v in self.tools.tried.items() if v != "tests passed"]
        self.report.wall_s = round(time.monotonic() - self.started, 3)
        self.on_event("done", {"status": self.report.status, "reason": self.report.reason})
        return self.report
