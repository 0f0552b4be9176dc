"""bench/fixrate.py scores honestly: a right answer counts as fixed, a wrong
one does not, for both the agent and the one-shot baseline.

The model is the ScriptedPolicyServer TEST DOUBLE (the embedded model cannot
be made to give a known-right answer); the HumanEvalFix project, pytest, the
headless ``ornith-lsp fix`` process and the guard are real."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from common import failing_tasks, humanevalfix_project, humanevalfix_rows, make_repo  # noqa: E402
from fixrate import run_agent, run_one_shot  # noqa: E402
from ornith_lsp.llm.client import ChatClient  # noqa: E402
from policy_double import ScriptedPolicyServer  # noqa: E402

BUGGY, FIXED = "distance = elem - elem2", "distance = abs(elem - elem2)"
BUDGETS = {"turns": 8, "output_tokens": 256, "wall_s": 120, "one_shot_tokens": 256, "one_shot_temperature": 0.0}
PLAN = {"goal": "make test_check pass", "strategy": "read, fix the distance, verify",
        "steps": [{"intent": "read solution.py", "tools": ["read_file"], "check": {"kind": "context_read", "description": ""}},
                  {"intent": "fix the distance", "tools": ["edit", "run_tests"],
                   "check": {"kind": "target_tests_pass", "description": ""}},
                  {"intent": "finish", "tools": ["finish"], "check": {"kind": "target_tests_pass", "description": ""}}],
        "budget": {"turns": 8, "tokens": 20000}}


@pytest.fixture
def row():
    row = humanevalfix_rows()[0]
    assert row["task_id"] == "Python/0" and BUGGY in row["buggy_solution"] and FIXED in row["canonical_solution"]
    return row


def repo_of(row, tmp_path) -> tuple[Path, object]:
    repo = make_repo(tmp_path / "task", humanevalfix_project(row))
    tasks, _ = asyncio.run(failing_tasks(repo, timeout_s=60))
    assert len(tasks) == 1
    return repo, tasks[0]


@pytest.mark.parametrize("right", [True, False])
def test_one_shot_counts_only_a_passing_answer_and_restores_the_file(row, tmp_path, right):
    repo, task = repo_of(row, tmp_path)
    before = (repo / "solution.py").read_text()
    code = row["prompt"] + (row["canonical_solution"] if right else row["buggy_solution"].replace(BUGGY, "distance = 0"))

    async def go():
        with ScriptedPolicyServer([{"code": code}]) as policy:
            async with ChatClient(policy.url, "scripted", flavor="openai") as llm:
                return await run_one_shot(repo, llm, task, BUDGETS)

    result = asyncio.run(go())
    assert (repo / "solution.py").read_text() == before
    if right:
        assert result["status"] == "fixed" and result["guard_allowed"] is True, result
    else:
        assert result["status"] == "unfixed" and "guard_allowed" not in result, result


def test_one_shot_garbage_is_unparsable(row, tmp_path):
    repo, task = repo_of(row, tmp_path)

    async def go():
        with ScriptedPolicyServer(["def has_close_elements(): pass"]) as policy:
            async with ChatClient(policy.url, "scripted", flavor="openai") as llm:
                return await run_one_shot(repo, llm, task, BUDGETS)

    assert asyncio.run(go())["status"] == "unparsable"


def test_one_shot_in_free_text_reads_the_fenced_block(row, tmp_path):
    repo, task = repo_of(row, tmp_path)
    answer = f"Here is the fix:\n```python\n{row['prompt'] + row['canonical_solution']}\n```\n"

    async def go(text):
        with ScriptedPolicyServer([text]) as policy:
            async with ChatClient(policy.url, "scripted", flavor="openai") as llm:
                return await run_one_shot(repo, llm, task, BUDGETS, "text"), policy.requests[0]

    result, request = asyncio.run(go(answer))
    assert result["status"] == "fixed" and result["guard_allowed"] is True, result
    assert "response_format" not in request and "```python" in request["messages"][-1]["content"]
    assert asyncio.run(go("no code block at all"))[0]["status"] == "unparsable"


@pytest.mark.parametrize("right", [True, False])
def test_agent_counts_a_verified_fix_and_not_a_wrong_one(row, tmp_path, right):
    repo, _ = repo_of(row, tmp_path)
    edit = {"tool": "edit", "path": "solution.py", "search": BUGGY, "replace": FIXED if right else "distance = 0"}
    answers = [PLAN, {"tool": "read_file", "path": "solution.py"}, {"tool": "step_done"}, edit, {"tool": "step_done"},
               {"tool": "finish", "summary": "distance is absolute"}]

    async def go():
        with ScriptedPolicyServer(answers) as policy:
            return await run_agent(repo, policy.url, "scripted", 8192, BUDGETS, None)

    result = asyncio.run(go())
    assert (result["status"] == "fixed") is right, result
    assert result["turns"] >= 3 and result["vetoes_by_rule"] == 0, result
    assert BUGGY in (repo / "solution.py").read_text(), "the headless run without --apply wrote the workspace"
