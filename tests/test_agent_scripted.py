"""The agent's plumbing, deterministic: the model is replaced by the
ScriptedPolicyServer TEST DOUBLE (tests/policy_double.py), everything else is
real — shadow git worktree, tools, pytest runs, the guard."""

from __future__ import annotations

import time

from ornith_lsp import settings as settings_mod
from ornith_lsp.agent import scaffold as sc
from ornith_lsp.agent.session import fix
from ornith_lsp.llm.client import ChatClient
from ornith_lsp.tasks import Location, Task

from agent_repos import CALC, git, make_repo, snapshot
from policy_double import ScriptedPolicyServer

PLAN = {
    "goal": "make test_add pass", "strategy": "read, fix the operator, verify",
    "steps": [
        {"intent": "read calc.py", "tools": ["read_file", "search", "edit", "rewrite", "run_tests"],
         "check": {"kind": "context_read", "description": ""}},
        {"intent": "fix add", "tools": ["edit", "run_tests"], "check": {"kind": "target_tests_pass", "description": ""}},
        {"intent": "finish", "tools": ["finish"], "check": {"kind": "target_tests_pass", "description": ""}},
    ],
    "budget": {"turns": 12, "tokens": 20000},
}
READ = {"thought": "look", "tool": "read_file", "path": "calc.py"}
STEP_DONE = {"tool": "step_done"}
GOOD_EDIT = {"tool": "edit", "path": "calc.py", "search": "return a - b", "replace": "return a + b"}
BAD_EDIT = {"tool": "edit", "path": "calc.py", "search": "return a - b", "replace": "return b - a"}
FINISH = {"tool": "finish", "summary": "fixed the operator"}

TASK = Task(source="test", title="Ornith: fix test_add", message="assert -1 == 5",
            test_id="test_calc.py::test_add", location=Location(path="calc.py", line=2))


def settings(**agent):
    return settings_mod.load(None, cli={"agent": {"test_timeout_s": 60, **agent}}, environ={})


async def run(tmp_path, answers, task=TASK, files=CALC, on_event=None, **agent):
    repo = make_repo(tmp_path / "repo", files)
    before = snapshot(repo)
    with ScriptedPolicyServer(answers) as policy:
        async with ChatClient(policy.url, "scripted") as llm:
            result = await fix(task, root=repo, llm=llm, settings=settings(**agent), context_length=32768,
                               baseline=["test_calc.py::test_mul"], on_event=on_event)
        requests = policy.requests
    assert snapshot(repo) == before, "the user's files were touched"
    return result, requests, repo


async def test_a_scripted_fix_is_verified_and_the_user_tree_is_untouched(tmp_path):
    result, requests, repo = await run(tmp_path, [PLAN, READ, STEP_DONE, GOOD_EDIT, STEP_DONE, FINISH])
    assert result.report.status == "fixed", result.report
    assert result.verified
    assert "-    return a - b\n+    return a + b" in result.diff
    assert "grading" in result.report.verification.summary
    # checkpoint ref for rollback exists in the user's repo
    assert result.checkpoint_id in git(repo, "for-each-ref", "refs/ornith/")
    # the prompt only grew at the end: every request extends the previous one
    for prev, cur in zip(requests, requests[1:]):
        assert cur["messages"][: len(prev["messages"])] == prev["messages"]
    # constrained decoding was asked for: scaffold schema first; the first action offered native
    # tool calls, the double answered in text, so the later actions ran under the action schema
    assert requests[0]["response_format"]["json_schema"]["schema"] == sc.schema_of(sc.Scaffold)
    assert {t["function"]["name"] for t in requests[1]["tools"]} >= {"read_file", "search", "edit", "finish"}
    assert requests[2]["response_format"]["json_schema"]["schema"] == sc.schema_of(sc.Action)
    assert "tools" not in requests[2] and result.report.tool_call_mode == "json_schema"


async def test_failed_check_replans_and_a_repeated_edit_is_refused(tmp_path):
    answers = [PLAN, READ, STEP_DONE, BAD_EDIT, STEP_DONE,  # check fails -> replan
               PLAN, BAD_EDIT,                              # the dead end again -> refused
               READ, STEP_DONE, GOOD_EDIT, STEP_DONE, FINISH]
    result, requests, _ = await run(tmp_path, answers)
    assert result.report.status == "fixed"
    assert len(result.report.scaffolds) == 2
    replan = next(m["content"] for m in requests[5]["messages"] if m["content"].startswith("Replan."))
    assert "did not pass its check target_tests_pass" in replan and "tests still failed" in replan
    refused = [t for t in result.report.turns if t.tool == "edit" and "already tried" in t.outcome]
    assert len(refused) == 1


async def test_a_step_may_use_only_the_tools_its_plan_named(tmp_path):
    strict = {**PLAN, "steps": [{"intent": "read calc.py", "tools": ["read_file"],
                                 "check": {"kind": "context_read", "description": ""}}, *PLAN["steps"][1:]]}
    answers = [strict, GOOD_EDIT,          # an edit in a reading step: refused, said why
               READ, STEP_DONE, GOOD_EDIT, STEP_DONE, FINISH]
    result, requests, _ = await run(tmp_path, answers)
    assert result.report.status == "fixed"
    assert "refused: edit is not among step 1's tools" in result.report.turns[1].outcome
    told = requests[2]["messages"][-1]["content"]
    assert "planned the tools read_file" in told and "edit is not one of them" in told


async def test_the_plans_own_budget_caps_the_task(tmp_path):
    frugal = {**PLAN, "budget": {"turns": 3, "tokens": 20000}}
    result, _, _ = await run(tmp_path, [frugal, READ, STEP_DONE, GOOD_EDIT, STEP_DONE, FINISH], max_turns=24)
    assert result.report.status == "budget" and len(result.report.turns) == 3
    assert result.report.reason == "turn budget of 3 used up", result.report.reason


async def test_garbage_unknown_tool_and_escapes_are_answered_and_budgets_end_the_task(tmp_path):
    answers = [
        "this is not json at all",
        PLAN,
        {"tool": "teleport"},                                                 # unknown tool: schema error
        {"tool": "read_file", "path": "../../etc/passwd"},                     # outside the workspace
        {"tool": "edit", "path": "test_calc.py", "search": "== 5", "replace": "== -1"},  # protected test file
        {"tool": "edit", "path": "calc.py", "search": "nope", "replace": "x"},  # no match
        {"tool": "edit", "path": "calc.py", "search": "return a - b", "replace": "x" * 10_000_000},  # 10 MB
    ]
    result, requests, _ = await run(tmp_path, answers)
    report = result.report
    outcomes = [t.outcome for t in report.turns]
    assert "could not read a Scaffold" in outcomes[0]
    assert "could not read a Action" in outcomes[2] and "tool" in outcomes[2]
    assert "outside the workspace" in outcomes[3]
    assert "edit refused" in outcomes[4] and "protected" in outcomes[4]
    assert "does not occur" in outcomes[5]
    assert "more than" in outcomes[6] and "bytes" in outcomes[6]
    # the 10 MB answer alone blows the token budget: the task ends with a report
    # (the plan asked for 20000 tokens: its own budget is the cap, under the 200000 of the settings)
    assert report.status == "budget" and "token budget of 20000 used up" in report.reason
    assert result.diff == "" and not result.verified


async def test_turn_budget_ends_a_looping_model(tmp_path):
    result, requests, _ = await run(tmp_path, [PLAN] + [READ] * 20, max_turns=5)
    assert result.report.status == "budget" and "turn budget of 5" in result.report.reason
    assert len(requests) == 5


async def test_a_test_tampering_finish_is_vetoed_and_never_verified(tmp_path):
    """The model writes a lookup table of the test's values (pattern 18): the
    tests pass, the monitors still block it, and the model is told why."""
    cheat = {"tool": "edit", "path": "calc.py", "search": "    return a - b",
             "replace": "    if (a, b) == (2, 3):\n        return 5\n    return a - b"}
    result, requests, _ = await run(tmp_path, [PLAN, cheat, FINISH], max_turns=4)
    assert result.report.status == "vetoed"
    assert not result.verified
    told = [m["content"] for m in requests[-1]["messages"] if m["content"].startswith("Replan.")]
    assert told and "Verification failed" in told[0]
    assert result.verdict and result.verdict["allowed"] is False


async def test_the_wall_budget_holds_while_the_model_is_slow(tmp_path):
    repo = make_repo(tmp_path / "repo", CALC)
    with ScriptedPolicyServer([PLAN], delay_s=20) as policy:
        async with ChatClient(policy.url, "scripted") as llm:
            started = time.monotonic()
            result = await fix(TASK, root=repo, llm=llm, settings=settings(max_wall_s=2), context_length=32768,
                               baseline=["test_calc.py::test_mul"])
    assert time.monotonic() - started < 15
    assert result.report.status == "budget" and "waiting for the model" in result.report.reason, result.report
