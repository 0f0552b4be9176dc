"""Named built-in strategies: what a small model runs instead of its own plan.

A capable model writes its own scaffold (``model-plan``).  A model configured
or detected as small, or one whose plan does not validate, picks one of these
by name -- a choice among four words, which a 1.5B model makes reliably under
constrained decoding, where it does not reliably write a five-step plan:

- ``direct-rewrite``: one rewrite of the code under test, verified.
- ``reproduce-then-fix``: run the failing test in the shadow first, then
  rewrite, then repair from each failure's output (the answer stays in the
  conversation).
- ``sample-and-verify``: independent rewrites at rising temperature, each
  verified in the shadow; the first that passes wins, the rest become dead
  ends named in the next prompt.  Verified sampling is where small models
  gain most: a wrong sample costs one test run, never a wrong fix.
- ``read-then-edit``: the tool loop with a built-in plan (read, edit, test,
  finish) -- the one left when the harness cannot tell which code to change.

The rewrite strategies need a :class:`~ornith_lsp.agent.localize.Focus`; the
code comes back as plain code in a fenced block (:mod:`.edits`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from ornith_lsp.agent import edits
from ornith_lsp.agent.events import CandidateEvent, EventSink, PlanEvent, StepEvent, VerifyEvent
from ornith_lsp.agent.localize import Focus, numbered
from ornith_lsp.agent.report import Candidate, Stop
from ornith_lsp.agent.scaffold import ALL_TOOLS, Check, ParseError, Scaffold, Step, parse
from ornith_lsp.agent.tools import Tools
from ornith_lsp.tasks import Task

Builtin = Literal["direct-rewrite", "reproduce-then-fix", "sample-and-verify", "read-then-edit"]
BUILTIN: tuple[Builtin, ...] = ("direct-rewrite", "reproduce-then-fix", "sample-and-verify", "read-then-edit")
STRATEGIES = ("model-plan", *BUILTIN)
REWRITES = ("direct-rewrite", "reproduce-then-fix", "sample-and-verify")
REPAIR_ROUNDS = 3
FAILURE_CHARS = 1500

READ_THEN_EDIT = Scaffold(
    goal="make the failing check pass by changing the code under test",
    strategy="read-then-edit (built in): read the code, edit it, run the tests, finish",
    steps=[
        # a small model strays from the order; every step lets it use every tool
        Step(intent="read the code the failure points at", tools=list(ALL_TOOLS), check=Check(kind="context_read")),
        Step(intent="change the code under test", tools=list(ALL_TOOLS), check=Check(kind="edit_applied")),
        Step(intent="run the target tests and finish", tools=list(ALL_TOOLS), check=Check(kind="target_tests_pass")),
    ],
    # the built-in plan leaves the budget to the user's limits: the caps of the schema
    budget={"turns": 200, "tokens": 2_000_000},
)


class StrategyChoice(BaseModel):
    """One word under the grammar: a dozen tokens, where a free "reason" cost
    a small model on two CPU cores more than the fix itself."""

    strategy: Builtin


class Agent(Protocol):
    """What a strategy needs of the loop (kept to a protocol so the loop can
    import this module without a cycle)."""

    task: Task
    tools: Tools
    focus: Focus | None
    limits: Any
    report: Any
    messages: list[dict[str, str]]
    on_event: EventSink
    verify: Callable[[], Awaitable[Any]]

    async def complete(self, messages: list[dict[str, str]], stage: str, *, schema: type[BaseModel] | None = None,
                       max_tokens: int | None = None, temperature: float | None = None) -> Any: ...
    async def model_plan(self) -> None: ...
    async def plan(self, why: str | None, scaffold: Scaffold | None = None) -> Scaffold: ...
    async def run_steps(self, scaffold: Scaffold) -> str | None: ...


# -- choosing -------------------------------------------------------------------------
async def choose(agent: Agent) -> tuple[str, Literal["model", "setting", "fallback"]]:
    """The setting wins; a capable model plans for itself; a small one picks a name."""
    wanted = agent.limits.strategy
    if wanted != "auto":
        if wanted in REWRITES and agent.focus is None:
            return "read-then-edit", "fallback"
        return wanted, "setting"
    if not agent.limits.small_model:
        return "model-plan", "model"
    menu = [s for s in BUILTIN if agent.focus is not None or s == "read-then-edit"]
    if len(menu) == 1:
        return menu[0], "fallback"
    prompt = (f"{_task_text(agent)}\n\nChoose how to fix this. Strategies:\n"
              "- sample-and-verify: write several candidate fixes; each is tested, the first that passes is kept\n"
              "- reproduce-then-fix: run the test, write a fix, then repair it from each failure\n"
              "- direct-rewrite: write one corrected version of the code\n"
              "- read-then-edit: read files and edit them step by step with tools\n"
              'Answer with one JSON object: {"strategy": ...}')
    messages = [{"role": "system", "content": "You choose a strategy for fixing a bug."},
                {"role": "user", "content": prompt}]
    try:
        done = await agent.complete(messages, "strategy", schema=StrategyChoice, max_tokens=32, temperature=0.0)
        choice = parse(done.text, StrategyChoice, cut_off=done.finish_reason == "length")
    except ParseError as exc:
        agent.report.turns[-1].outcome = str(exc)
        return ("sample-and-verify" if agent.focus else "read-then-edit"), "fallback"
    agent.report.turns[-1].outcome = f"chose {choice.strategy}"
    if choice.strategy not in menu:
        return menu[0], "fallback"
    return choice.strategy, "model"


def sequence(name: str, agent: Agent) -> list[str]:
    """The chosen strategy, then verified sampling with whatever budget is left
    (a failed strategy is a dead end, never repeated)."""
    fallback = "sample-and-verify" if agent.focus is not None else "read-then-edit"
    return [name] if name == fallback else [name, fallback]


async def run(name: str, agent: Agent) -> None:
    """Run one strategy; it returns when it gave up, raises Stop when done."""
    if name == "model-plan":
        await agent.model_plan()
    elif name == "read-then-edit":
        await _read_then_edit(agent)
    elif name == "direct-rewrite":
        await _rewrite(agent, name, rounds=1, repair=False)
    elif name == "reproduce-then-fix":
        await _rewrite(agent, name, rounds=REPAIR_ROUNDS, repair=True, reproduce=True)
    elif name == "sample-and-verify":
        await _rewrite(agent, name, rounds=agent.limits.candidates, repair=False)
    else:
        raise ValueError(f"unknown strategy {name!r}")


async def _read_then_edit(agent: Agent) -> None:
    why: str | None = None
    scaffold = READ_THEN_EDIT
    for _ in range(2):
        await agent.plan(why, scaffold)
        why = await agent.run_steps(scaffold)


# -- rewriting ------------------------------------------------------------------------
def _task_text(agent: Agent) -> str:
    t = agent.task
    failure = "\n".join(x for x in (t.message, t.traceback or "") if x).strip()
    if len(failure) > FAILURE_CHARS:
        failure = failure[:300] + "\n...\n" + failure[-(FAILURE_CHARS - 300):]
    if t.source == "request":
        named = f" Afterwards these tests must pass: {', '.join(t.tests)}." if t.tests else ""
        return f"The user asks for a change: {t.message[:FAILURE_CHARS]}\nNo test that passes now may fail.{named}"
    if t.test_id:
        head = f"The test {t.test_id} fails."
    else:
        where = f" at {t.location.path}:{t.location.line}" if t.location else ""
        head = f"{t.diagnostic_source or t.source} reports {t.code or 'a problem'}{where}."
    return f"{head}\n\nFailure:\n{failure}"


def _test_source(agent: Agent) -> str:
    t = agent.task
    if not t.test_id:
        return ""
    path = t.test_id.split("::")[0]
    try:
        text = (agent.tools.root / path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""
    lines = text.splitlines()
    if len(lines) > 80:
        return ""
    return f"\n\nThe test file {path} (read-only):\n```python\n{text.rstrip()}\n```"


def _ask_for(fmt: edits.EditFormat, focus: Focus) -> str:
    if fmt == "search-replace":
        return ("Answer with SEARCH/REPLACE blocks that fix the bug:\n<<<<<<< SEARCH\n(exact lines now in the file)\n"
                "=======\n(the new lines)\n>>>>>>> REPLACE")
    if fmt == "file" or focus.symbol is None:
        return f"Write the complete corrected {focus.path} in one ```python block."
    return (f"Write the complete corrected definition of `{focus.symbol}` in one ```python block "
            "(keep its name and signature; change only what the bug needs).")


def rewrite_prompt(agent: Agent, fmt: edits.EditFormat) -> list[dict[str, str]]:
    f = agent.focus
    assert f is not None
    shown = numbered(f.code, f.start) if fmt == "search-replace" else f.code
    where = f"{f.path}, `{f.symbol}`, lines {f.start}-{f.end}" if f.symbol else f.path
    user = (f"{_task_text(agent)}{_test_source(agent)}\n\nThe code under test, {where} ({f.why}):\n"
            f"```python\n{shown.rstrip()}\n```\n\nFix the bug in the code under test; never change the tests, never "
            f"special-case the test's inputs.\n{_ask_for(fmt, f)}")
    return [{"role": "system", "content": "You are an expert Python programmer who fixes bugs."},
            {"role": "user", "content": user}]


def _format(agent: Agent) -> edits.EditFormat:
    fmt: edits.EditFormat = agent.limits.edit_format
    focus = agent.focus
    assert focus is not None
    if fmt == "symbol" and focus.symbol is None:
        return "file" if focus.small_file else "search-replace"
    if fmt == "file" and not focus.small_file:
        return "symbol" if focus.symbol else "search-replace"
    return fmt


async def _check(agent: Agent) -> tuple[bool, str]:
    """The cheap check in the shadow first; the full verification only for a
    candidate that passes it."""
    if agent.task.graded_by_tests:
        ok, detail = await agent.tools.checker.run_tests()
        if not ok:
            return False, detail
    else:
        clean, detail = await agent.tools.checker.run_diagnostics()
        if clean is False:
            return False, detail
    verdict = await agent.verify()
    agent.report.verification = verdict
    agent.on_event(VerifyEvent(task_id=agent.task.id, ok=verdict.ok, vetoed=verdict.vetoed, summary=verdict.summary))
    if verdict.ok:
        raise Stop("fixed", verdict.summary)
    return False, ("vetoed: " if verdict.vetoed else "not verified: ") + verdict.summary


def rewrite_plan(name: str, focus: Focus, rounds: int, reproduce: bool) -> Scaffold:
    """A rewrite strategy's steps as a scaffold, so every front end shows the
    small model's work as a plan too (it is not added to the report's
    scaffolds: the model did not write it)."""
    target = f"{focus.symbol} in {focus.path}" if focus.symbol else focus.path
    steps = [Step(intent="run the tests to see the failure", tools=["run_tests"], check=Check(kind="context_read"))
             ] if reproduce else []
    steps += [
        Step(intent=f"rewrite {target}"[:90] + (f" (up to {rounds} tries)" if rounds > 1 else ""), tools=["rewrite"],
             check=Check(kind="edit_applied")),
        Step(intent="check the rewrite in the shadow, then verify it independently", tools=["run_tests", "finish"],
             check=Check(kind="target_tests_pass")),
    ]
    return Scaffold(goal=f"fix {target}"[:160], strategy=f"{name} (built in)", steps=steps,
                    budget={"turns": 200, "tokens": 2_000_000})


async def _rewrite(agent: Agent, name: str, *, rounds: int, repair: bool, reproduce: bool = False) -> None:
    """Sample (or repair) rewrites of the focus, each verified; stop at the first that passes."""
    focus = agent.focus
    assert focus is not None
    plan = rewrite_plan(name, focus, rounds, reproduce)
    agent.on_event(PlanEvent(task_id=agent.task.id, scaffold=plan))

    def step(index: int) -> None:
        agent.on_event(StepEvent(task_id=agent.task.id, title=agent.task.title, index=index, of=len(plan.steps),
                                 intent=plan.steps[index - 1].intent))

    step(1)
    fmt = _format(agent)
    agent.report.edit_format = fmt
    agent.report.tool_call_mode = agent.report.tool_call_mode or "free_text"
    base = rewrite_prompt(agent, fmt)
    if reproduce and agent.task.graded_by_tests:
        ok, detail = await agent.tools.checker.run_tests()
        base[-1]["content"] += f"\n\nThe test run in the workspace just now:\n{detail[-FAILURE_CHARS:]}"
    if reproduce:
        step(2)
    conversation = list(base)
    path = agent.tools.root / focus.path
    failures: list[str] = []
    seen: set[str] = set()
    temperature = agent.limits.temperature
    for n in range(1, rounds + 1):
        started = time.monotonic()
        if repair:
            messages = conversation
        else:
            note = "" if not failures else ("\n\nThese earlier attempts failed; write a different fix:\n"
                                            + "\n".join(f"- {x}" for x in failures[-4:]))
            messages = [base[0], {"role": "user", "content": base[1]["content"] + note}]
        done = await agent.complete(messages, "candidate", max_tokens=agent.limits.output_tokens * 2,
                                    temperature=temperature)
        old = path.read_text(encoding="utf-8")
        outcome, verified = "", None
        try:
            new = edits.apply(fmt, old, done.text, focus.symbol)
            if new == old:
                outcome = "unchanged: the answer repeats the current code"
            elif edits.normalised(new) in seen:
                outcome = "duplicate of an earlier attempt"
            else:
                seen.add(edits.normalised(new))
                path.write_text(new, encoding="utf-8")
                agent.tools.edits_applied += 1
                agent.on_event(CandidateEvent(task_id=agent.task.id, n=n, of=rounds))
                step(len(plan.steps))
                outcome = _first_failure((await _check(agent))[1])
        except edits.EditError as exc:
            outcome = f"unusable answer: {exc}"
        except Stop as stop:  # verified: the fix stays in the shadow
            outcome, verified = "verified", stop
        agent.report.turns[-1].outcome = outcome[:200]
        agent.report.turns[-1].tool = "rewrite"
        agent.report.candidates.append(Candidate(n=len(agent.report.candidates) + 1, temperature=temperature,
                                                 outcome=outcome[:300], wall_s=round(time.monotonic() - started, 2)))
        if verified is not None:
            raise verified
        await agent.tools.reset()
        failures.append(outcome[:200])
        if repair:
            conversation = [*conversation, {"role": "assistant", "content": done.text},
                            {"role": "user", "content": f"That did not work: {outcome[:FAILURE_CHARS]}\n"
                                                        f"{_ask_for(fmt, focus)}"}]
        # a repeat or a failure at low temperature asks for more variety next time
        temperature = min(1.0, max(temperature, 0.5) + 0.15)


def _first_failure(detail: str) -> str:
    """One line for the report and the next prompt: the head, then what names
    the failure (an assertion, an error, or the guard's findings)."""
    lines = [x for x in detail.splitlines() if x.strip()]
    interesting = [x for x in lines[1:] if "Error" in x or "assert" in x or x.startswith(("E ", "- ["))]
    return " | ".join(lines[:1] + interesting[:3])[:400]
