"""The agent's loop: choose a strategy, run it, fall back when it fails.

A capable model writes its own scaffold (stage 1, a :class:`Scaffold`) and
walks it one tool call per turn (stage 2, an :class:`Action`): ``step_done``
makes the harness run the step's check, ``finish`` the independent
verification, and a failed check appends a replan request naming every dead
end.  A small model, or one whose plan does not validate, picks one of the
named built-in strategies instead (:mod:`ornith_lsp.agent.strategies`), and
when the chosen strategy ends unfixed with budget left, sampling with
verification runs next.  The report names the strategy and who chose it.

Two kinds of trouble, as in mini-swe-agent: recoverable ones (unparsable
output, a refused tool call) go back to the model as the next message and
cost budget; terminal ones (verified, budget exhausted, cancelled) end the run
with a report.  The tool conversation only ever grows at the end, so each
turn reuses the backend's KV cache of the previous one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel

from ornith_lsp.agent import edits, strategies
from ornith_lsp.agent.events import (
    TOOL_KINDS,
    DoneEvent,
    EventSink,
    PlanEvent,
    StepEvent,
    StrategyEvent,
    ToolEvent,
    VerifyEvent,
    ignore,
)
from ornith_lsp.agent.localize import Focus
from ornith_lsp.agent.report import Limits, Report, Stop, Turn, Verification
from ornith_lsp.agent.scaffold import Action, Budget, ParseError, Rewrite, Scaffold, Step, parse, schema_of
from ornith_lsp.agent.tools import ToolError, Tools, tool_help
from ornith_lsp.llm.client import ChatClient, Completion, LLMError
from ornith_lsp.tasks import Task

OBSERVATION_CHARS = 3000
SCAFFOLD_TRIES = 2  # a plan that does not validate twice hands over to the built-in strategies


def native_tools() -> list[dict[str, Any]]:
    """The action union as OpenAI function tools: one per member, its own
    arguments required, so a native call is as well-formed as a constrained one."""
    out = []
    for member in schema_of(Action)["$defs"].values():
        props = {k: v for k, v in member["properties"].items() if k != "tool"}
        name = member["properties"]["tool"].get("const")
        out.append({"type": "function", "function": {
            "name": name, "description": member.get("description", name),
            "parameters": {"type": "object", "properties": props,
                           "required": [r for r in member.get("required", []) if r != "tool"]}}})
    return out


def prompt_text(name: str) -> str:
    return resources.files("ornith_lsp.agent").joinpath("prompts", name).read_text(encoding="utf-8")


class _Unplanned(Exception):
    """The model's own plan did not validate: hand over to the built-in strategies."""


class Loop:
    def __init__(self, task: Task, *, llm: ChatClient, tools: Tools,
                 verify: Callable[[], Awaitable[Verification]], context: str,
                 limits: Limits, on_event: EventSink | None = None, focus: Focus | None = None) -> None:
        self.task, self.llm, self.tools, self.verify, self.limits = task, llm, tools, verify, limits
        self.focus = focus
        self.on_event: EventSink = on_event or ignore
        self.report = Report(task_id=task.id, focus=f"{focus.path}:{focus.symbol or '(file)'}" if focus else None)
        self.started = time.monotonic()
        self.budget: Budget | None = None
        self.context = context
        self.native = limits.tool_calls in ("auto", "native")
        self.messages: list[dict[str, str]] = [
            {"role": "system", "content": prompt_text("system.md")},
            {"role": "user", "content": prompt_text("task.md").format(
                tools=json.dumps(tool_help(), indent=1), context=context,
                task=json.dumps(task.model_dump(exclude_none=True), indent=1),
                scaffold_schema=json.dumps(schema_of(Scaffold)))},
        ]

    # -- model calls ------------------------------------------------------------------
    def check_budget(self, messages: list[dict[str, str]] | None = None) -> None:
        r = self.report
        turns, tokens = self.limits.turns, self.limits.tokens
        if self.budget is not None:  # the model's own plan may ask for less, never for more
            turns, tokens = min(turns, self.budget.turns), min(tokens, self.budget.tokens)
        if len(r.turns) >= turns:
            raise Stop("budget", f"turn budget of {turns} used up")
        used = sum(t.prompt_tokens + t.completion_tokens for t in r.turns)
        if used >= tokens:
            raise Stop("budget", f"token budget of {tokens} used up ({used})")
        if time.monotonic() - self.started >= self.limits.wall_s:
            raise Stop("budget", f"wall-time budget of {self.limits.wall_s:.0f} s used up")
        size = (sum(len(m["content"]) for m in messages) // 3 if messages is not None else
                (r.turns[-1].prompt_tokens + r.turns[-1].completion_tokens if r.turns else 0))
        if size + OBSERVATION_CHARS // 3 + self.limits.output_tokens >= self.limits.context_length:
            raise Stop("budget", f"the conversation reached the context window ({self.limits.context_length} tokens)")

    async def complete(self, messages: list[dict[str, str]], stage: str, *, schema: type[BaseModel] | None = None,
                       max_tokens: int | None = None, temperature: float | None = None,
                       tools: list[dict[str, Any]] | None = None) -> Completion:
        """One model call inside every budget; the wall budget holds during a
        slow answer too (the request is cancelled)."""
        self.check_budget(None if messages is self.messages else messages)
        remaining = self.limits.wall_s - (time.monotonic() - self.started)
        try:
            done: Completion = await asyncio.wait_for(self.llm.complete(
                messages, json_schema=schema_of(schema) if schema else None,
                max_tokens=max_tokens or self.limits.output_tokens,
                temperature=self.limits.temperature if temperature is None else temperature,
                tools=tools, tool_choice="required" if tools else None),
                timeout=max(remaining, 0.1))
        except TimeoutError:
            raise Stop("budget", f"wall-time budget of {self.limits.wall_s:.0f} s used up "
                                 "waiting for the model") from None
        except LLMError as exc:
            raise Stop("error", f"model request failed: {exc}") from None
        t = done.timings
        self.report.turns.append(Turn(
            n=len(self.report.turns) + 1, stage=stage, prompt_tokens=done.usage.prompt_tokens,
            cached_tokens=done.usage.cached_tokens, completion_tokens=done.usage.completion_tokens,
            prefill_ms=t.get("prompt_ms"), decode_ms=t.get("predicted_ms")))
        return done

    async def _native(self, stage: str) -> Action | None:
        """A tool call the model makes natively (vLLM's tool parser, llama-server
        with ``--jinja``).  Tried once; a server that refuses ``tools`` or a
        model that answers in text switches the task to schema-constrained
        JSON, so a template that cannot make real tool calls costs one turn."""
        try:
            done = await self.complete(self.messages, stage, tools=native_tools())
        except Stop as stop:
            if stop.status != "error":
                raise
            self.report.turns.append(Turn(n=len(self.report.turns) + 1, stage=stage, prompt_tokens=0,
                                          cached_tokens=0, completion_tokens=0,
                                          outcome=f"native tool calls refused: {stop.reason[:150]}"))
            self.native = False
            return None
        call = next((c.get("function") for c in done.tool_calls if isinstance(c, dict) and c.get("function")), None)
        if call is None:
            self.native = False
            self.messages.append({"role": "assistant", "content": done.text})
            try:  # a call leaked into the text is still a call
                action = parse(done.text, Action, cut_off=done.finish_reason == "length")
            except ParseError as exc:
                self.report.turns[-1].outcome = f"no native tool call; {exc}"
                self._say(f"{exc}. Answer with one JSON object of the schema, nothing else.")
                return None
            self.report.tool_call_mode = self.report.tool_call_mode or "text"
            return action
        try:
            args = json.loads(call.get("arguments") or "{}")
            action = Action.model_validate({**args, "tool": call.get("name")})
        except (ValueError, TypeError) as exc:
            self.messages.append({"role": "assistant", "content": json.dumps({"tool": call.get("name")})})
            self.report.turns[-1].outcome = f"invalid native tool call: {str(exc)[:150]}"
            self._say(f"The tool call was invalid: {str(exc)[:300]}. Call one tool with its required arguments.")
            return None
        self.report.tool_call_mode = "native"
        self.messages.append({"role": "assistant", "content": action.model_dump_json(exclude_none=True)})
        return action

    async def _ask(self, schema: type[BaseModel], stage: str, tries: int | None = None) -> Any:
        """A call under the schema in the tool conversation; a parse error is
        told to the model and retried within budget (or ``tries`` times)."""
        failures = 0
        while True:
            if schema is Action and self.native:
                action = await self._native(stage)
                if action is not None:
                    return action
                continue
            # a plan is several actions long: give it room to finish its JSON
            budget = self.limits.output_tokens * (2 if schema is Scaffold else 1)
            done = await self.complete(self.messages, stage, schema=schema, max_tokens=budget)
            if schema is Action and self.report.tool_call_mode in (None, "text"):
                self.report.tool_call_mode = "json_schema"
            self.messages.append({"role": "assistant", "content": done.text})
            try:
                return parse(done.text, schema, cut_off=done.finish_reason == "length")
            except ParseError as exc:
                self.report.turns[-1].outcome = str(exc)
                failures += 1
                if tries is not None and failures >= tries:
                    raise _Unplanned(str(exc)) from None
                self._say(f"{exc}. Answer with one JSON object of the schema, nothing else.")

    def _say(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text[:OBSERVATION_CHARS]})

    # -- the model's own plan -----------------------------------------------------------
    async def plan(self, why: str | None, scaffold: Scaffold | None = None) -> Scaffold:
        if why is not None:
            await self.tools.reset()
            dead = "; ".join(f"{k}: {v}" for k, v in self.tools.tried.items()) or "none yet"
            self._say(f"Replan. {why}\nThe workspace was reset to the original files.\n"
                      f"Dead ends (never repeat these edits): {dead}\n"
                      "Propose a revised scaffold as one JSON object.")
        if scaffold is None:
            scaffold = await self._ask(Scaffold, "scaffold" if why is None else "replan",
                                       tries=SCAFFOLD_TRIES if why is None else None)
        self.report.scaffolds.append(scaffold.model_dump())
        self.budget = scaffold.budget
        self.on_event(PlanEvent(task_id=self.task.id, scaffold=scaffold, replan=why))
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

    async def _rewrite(self, call: Rewrite) -> str:
        """A rewrite's code comes as plain text in a second answer."""
        path, rel, old = self.tools.rewrite_target(call)
        what = f"`{call.symbol}` in {rel}" if call.symbol else f"the whole of {rel}"
        self._say(f"Write the complete new code of {what} in one ```python block. No JSON this time.")
        done = await self.complete(self.messages, "rewrite", max_tokens=self.limits.output_tokens * 2)
        self.messages.append({"role": "assistant", "content": done.text})
        try:
            new = edits.apply("symbol" if call.symbol else "file", old, done.text, call.symbol or None)
        except edits.EditError as exc:
            raise ToolError(str(exc)) from None
        return self.tools.apply_text(path, rel, old, new, edits.code_blocks(done.text)[-1] if edits.code_blocks(done.text) else new)

    async def run_steps(self, scaffold: Scaffold) -> str | None:
        """Walk the steps; return a replan reason, or raise Stop once verified."""
        failed_calls: dict[str, str] = {}
        for index, step in enumerate(scaffold.steps, 1):
            self.on_event(StepEvent(task_id=self.task.id, title=self.task.title, index=index, of=len(scaffold.steps),
                                    intent=step.intent))
            self._say(f"Step {index}/{len(scaffold.steps)}: {step.intent}\n"
                      f"Done when: {step.check.kind} ({step.check.description}). Answer with one action as JSON.")
            edits_before, reads_before = self.tools.edits_applied, self.tools.reads
            strayed: set[str] = set()
            while True:
                action: Action = await self._ask(Action, "act")
                turn = self.report.turns[-1]
                turn.tool = action.tool
                if action.tool == "finish":
                    verdict = await self.verify()
                    self.report.verification = verdict
                    self.on_event(VerifyEvent(task_id=self.task.id, ok=verdict.ok, vetoed=verdict.vetoed,
                                              summary=verdict.summary))
                    if verdict.ok:
                        raise Stop("fixed", verdict.summary)
                    self.tools.record_outcome(("vetoed: " if verdict.vetoed else "not verified: ") + verdict.summary[:200])
                    turn.outcome = verdict.summary
                    return f"Verification failed: {verdict.summary}"
                if action.tool == "step_done":
                    ok, detail = await self._check(step, edits_before, reads_before)
                    turn.outcome = "check passed" if ok else f"check failed: {detail[:200]}"
                    if ok:
                        break
                    return f"Step {index} ({step.intent}) did not pass its check {step.check.kind}: {detail}"
                key = action.call.model_dump_json(exclude={"thought"})
                if action.tool not in step.tools:
                    # the plan named this step's tools; another one is a change of plan, said out loud
                    why = f"{action.tool} is not among step {index}'s tools"
                    turn.outcome = f"refused: {why}"
                    if action.tool in strayed:
                        return f"{why} ({', '.join(step.tools)}), asked twice; plan the steps with the tools they need"
                    strayed.add(action.tool)
                    self._say(f"Step {index} planned the tools {', '.join(step.tools)}; {action.tool} is not one of "
                              "them. Use one of them, call step_done, or finish.")
                    continue
                if key in failed_calls:
                    # the same failing call twice must change something: say so, then replan
                    turn.outcome = f"repeated a failing call: {failed_calls[key][:150]}"
                    return (f"The same {action.tool} call failed twice ({failed_calls[key][:200]}); "
                            "plan a different approach with other tools or arguments")
                call_id = f"{self.task.id}-{turn.n}"
                self._tool_event(call_id, action, "started")
                try:
                    call = action.call
                    observation = await (self._rewrite(call) if isinstance(call, Rewrite) else self.tools.run(action))
                    self._tool_event(call_id, action, "completed", observation)
                except ToolError as exc:
                    observation = f"error: {exc}"
                    failed_calls[key] = str(exc)
                    self._tool_event(call_id, action, "failed", observation)
                turn.outcome = observation.splitlines()[0][:200] if observation else ""
                self._say(f"{observation}\nNext action as JSON.")
        return "All steps are done but `finish` was never called; finish or plan the remaining work."

    def _tool_event(self, call_id: str, action: Action, state: Literal["started", "completed", "failed"],
                    output: str = "") -> None:
        args = action.call.model_dump(exclude={"tool", "thought"}, exclude_defaults=True)
        summary = " ".join(f"{k}={v}" for k, v in args.items() if isinstance(v, (str, int)) and k != "code")[:160]
        self.on_event(ToolEvent(task_id=self.task.id, call_id=call_id, tool=action.tool,
                                tool_kind=TOOL_KINDS.get(action.tool, "other"), state=state,
                                summary=summary, output=output[:400],
                                thought=action.call.thought if state == "started" else ""))

    async def model_plan(self) -> None:
        """The model's own scaffold, replanned on every failed check, until the budget ends it."""
        why: str | None = None
        while True:
            scaffold = await self.plan(why)
            why = await self.run_steps(scaffold)

    # -- the whole task ---------------------------------------------------------------
    async def run(self) -> Report:
        try:
            name, chosen_by = await strategies.choose(self)
            self.report.strategy, self.report.strategy_chosen_by = name, chosen_by
            self.on_event(StrategyEvent(task_id=self.task.id, name=name, chosen_by=chosen_by))
            for step in strategies.sequence(name, self):
                if self.report.strategies_run and self.report.strategy_chosen_by == "fallback":
                    self.report.strategy = step  # the model's plan did not validate: this one took over
                self.report.strategies_run.append(step)
                try:
                    await strategies.run(step, self)
                except _Unplanned as exc:
                    self.report.strategy_chosen_by = "fallback"
                    self.on_event(StrategyEvent(task_id=self.task.id, name="fallback", chosen_by="fallback",
                                                why=str(exc)))
            raise Stop("unfixed", "; ".join(c.outcome for c in self.report.candidates[-2:])
                       or "every strategy ended without a verified fix")
        except Stop as stop:
            self.report.status, self.report.reason = stop.status, stop.reason
            last = self.report.verification
            if stop.status in ("budget", "unfixed") and last is not None and last.vetoed:
                self.report.status = "vetoed"
        self.report.dead_ends = [f"{k}: {v}" for k, v in self.tools.tried.items() if v != "tests passed"]
        self.report.wall_s = round(time.monotonic() - self.started, 3)
        self.on_event(DoneEvent(task_id=self.task.id, title=self.task.title, status=self.report.status,
                                reason=self.report.reason, verified=self.report.status == "fixed"))
        return self.report
