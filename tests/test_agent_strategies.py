"""The built-in strategies, deterministic: the model is replaced by the
ScriptedPolicyServer TEST DOUBLE (tests/policy_double.py); the shadow
worktree, the edit formats, pytest and the guard are real."""

from __future__ import annotations

from ornith_lsp.agent import scaffold as sc

from agent_repos import snapshot
from test_agent_scripted import PLAN, TASK, run

WRONG = "```python\ndef add(a, b):\n    return b - a\n```"
RIGHT = "The bug is the operator.\n```python\ndef add(a, b):\n    return a + b\n```"
CHEAT = "```python\ndef add(a, b):\n    if (a, b) == (2, 3):\n        return 5\n    return a - b\n```"
ASSERT_TASK = TASK.model_copy(update={"location": None})  # the assertion failed in the test itself


async def test_a_small_model_picks_sample_and_verify_and_the_first_verified_sample_wins(tmp_path):
    answers = [{"strategy": "sample-and-verify"},
               WRONG, "```python\ndef add(a, b):\n    # same thing\n    return b-a\n```", RIGHT]
    result, requests, repo = await run(tmp_path, answers, task=ASSERT_TASK, model_class="small")
    r = result.report
    assert r.status == "fixed" and result.verified, r
    assert (r.strategy, r.strategy_chosen_by) == ("sample-and-verify", "model")
    assert r.focus == "calc.py:add" and r.edit_format == "symbol" and r.tool_call_mode == "free_text"
    outcomes = [c.outcome for c in r.candidates]
    assert "failed" in outcomes[0] and outcomes[1] == "duplicate of an earlier attempt"
    assert outcomes[2] == "verified" and [c.temperature for c in r.candidates] == [0.2, 0.65, 0.8]
    assert "-    return a - b\n+    return a + b" in result.diff
    # the strategy choice ran under its own small schema; candidates are free text, never JSON
    assert requests[0]["response_format"]["json_schema"]["schema"]["properties"]["strategy"]["enum"]
    assert all("response_format" not in q for q in requests[1:])
    # localisation for free: the first candidate's prompt holds the test, the failure and the code
    first = requests[1]["messages"][-1]["content"]
    assert "assert add(2, 3) == 5" in first and "def add(a, b):\n    return a - b" in first
    # a later sample is told what failed before
    assert "These earlier attempts failed" in requests[3]["messages"][-1]["content"]


async def test_a_cheating_sample_is_vetoed_and_sampling_goes_on(tmp_path):
    answers = [{"strategy": "direct-rewrite"}, CHEAT, RIGHT]
    result, _, _ = await run(tmp_path, answers, task=ASSERT_TASK, model_class="small")
    r = result.report
    assert r.status == "fixed", r
    assert r.strategies_run == ["direct-rewrite", "sample-and-verify"]
    assert r.candidates[0].outcome.startswith("vetoed")
    assert "(2, 3)" not in result.diff


async def test_garbage_instead_of_a_choice_falls_back_and_garbage_code_writes_nothing(tmp_path):
    answers = ["I think we should maybe", "no code here", "```python\ndef add(a, b:\n```", RIGHT]
    result, _, repo = await run(tmp_path, answers, task=ASSERT_TASK, model_class="small")
    r = result.report
    assert (r.strategy, r.strategy_chosen_by) == ("sample-and-verify", "fallback")
    assert [c.outcome.split(":")[0] for c in r.candidates] == ["unusable answer", "unusable answer", "verified"]
    assert r.status == "fixed" and result.verified


async def test_a_capable_model_whose_plan_never_validates_hands_over(tmp_path):
    answers = ["not a plan", '{"goal": 1}', RIGHT]
    result, _, _ = await run(tmp_path, answers, task=ASSERT_TASK)
    r = result.report
    assert r.strategy == "sample-and-verify" and r.strategy_chosen_by == "fallback", r
    assert r.strategies_run == ["model-plan", "sample-and-verify"]
    assert r.status == "fixed"


async def test_the_setting_forces_a_strategy_and_an_edit_format(tmp_path):
    blocks = "<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE"
    result, requests, _ = await run(tmp_path, [blocks], task=ASSERT_TASK, strategy="direct-rewrite",
                                    edit_format="search-replace")
    r = result.report
    assert (r.strategy, r.strategy_chosen_by, r.edit_format) == ("direct-rewrite", "setting", "search-replace")
    assert r.status == "fixed"
    assert "SEARCH" in requests[0]["messages"][-1]["content"]


async def test_tool_calls_are_valid_by_construction_and_a_repeated_failing_call_replans(tmp_path):
    schema = sc.schema_of(sc.Action)
    search = next(v for k, v in schema["$defs"].items() if k == "Search")
    assert "query" in search["required"]
    answers = [PLAN, {"tool": "search"},                       # no query: a schema error now
               {"tool": "read_file", "path": "nope.py"},       # fails
               {"tool": "read_file", "path": "nope.py"},       # the same failing call: replan
               PLAN, {"tool": "rewrite", "path": "calc.py", "symbol": "add"}, RIGHT,
               {"tool": "run_tests"}, {"tool": "finish", "summary": "fixed"}]
    result, requests, _ = await run(tmp_path, answers)
    r = result.report
    outcomes = [t.outcome for t in r.turns]
    assert "query" in outcomes[1] and "Field required" in outcomes[1]
    assert "does not exist" in outcomes[2] and outcomes[3].startswith("repeated a failing call")
    assert len(r.scaffolds) == 2
    assert r.status == "fixed", r
    assert any("rewrote calc.py" in o for o in outcomes)


async def test_the_users_tree_is_untouched_by_every_strategy(tmp_path):
    answers = [{"strategy": "reproduce-then-fix"}, WRONG, RIGHT]
    result, requests, repo = await run(tmp_path, answers, task=ASSERT_TASK, model_class="small")
    assert result.report.status == "fixed"
    # repair keeps the earlier answer and its failure in the conversation
    assert "That did not work" in requests[2]["messages"][-1]["content"]
    assert requests[2]["messages"][-2]["content"] == WRONG
    assert snapshot(repo)["calc.py"] == b"def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"


async def test_native_tool_calls_are_used_when_the_model_makes_them(tmp_path):
    from policy_double import native

    answers = [PLAN, native({"tool": "read_file", "path": "calc.py"}), native({"tool": "step_done"}),
               native({"tool": "edit", "path": "calc.py", "search": "return a - b", "replace": "return a + b"}),
               native({"tool": "step_done"}), native({"tool": "finish", "summary": "done"})]
    result, requests, _ = await run(tmp_path, answers)
    r = result.report
    assert r.status == "fixed" and r.tool_call_mode == "native", r
    assert all("tools" in q and "response_format" not in q for q in requests[1:])
    # a native call without its required argument is refused and answered, never run
    answers = [PLAN, native({"tool": "search"}), native({"tool": "read_file", "path": "calc.py"})]
    result, _, _ = await run(tmp_path / "again", answers, max_turns=3)
    assert "invalid native tool call" in result.report.turns[1].outcome


async def test_a_project_in_a_folder_of_a_larger_repository_is_graded_there(tmp_path):
    """Like the README's demo inside this repository: the tasks name tests from
    the project folder, the guard grades from the repository's top."""
    from ornith_lsp.agent.session import fix
    from ornith_lsp.llm.client import ChatClient

    from agent_repos import CALC, make_repo
    from policy_double import ScriptedPolicyServer
    from test_agent_scripted import settings

    files = {f"demo/{k}": v for k, v in CALC.items()}
    files["demo/pytest.ini"] = "[pytest]\n"
    files["pyproject.toml"] = "[tool.pytest.ini_options]\ntestpaths = ['nowhere']\n"
    repo = make_repo(tmp_path / "repo", files)
    with ScriptedPolicyServer([RIGHT]) as policy:
        async with ChatClient(policy.url, "scripted") as llm:
            result = await fix(ASSERT_TASK, root=repo / "demo", llm=llm, settings=settings(strategy="direct-rewrite"),
                               context_length=32768, baseline=["test_calc.py::test_mul"])
    assert result.report.status == "fixed", (result.report.reason, result.verdict)
    assert "grading: 2 target test(s)" in result.report.verification.summary


async def test_a_rewrite_strategy_shows_its_steps_as_a_plan(tmp_path):
    """A small model's built-in strategy reaches every front end as a plan and
    its steps, like a model's own scaffold; the report's scaffolds stay the model's."""
    from ornith_lsp.agent.events import PlanEvent, StepEvent

    events = []
    result, _, _ = await run(tmp_path, [WRONG, RIGHT], task=ASSERT_TASK, strategy="sample-and-verify",
                             on_event=events.append)
    assert result.report.status == "fixed" and result.report.scaffolds == []
    plans = [e for e in events if isinstance(e, PlanEvent)]
    assert len(plans) == 1 and plans[0].scaffold.strategy == "sample-and-verify (built in)"
    assert "add in calc.py" in plans[0].scaffold.steps[0].intent
    steps = [(e.index, e.of) for e in events if isinstance(e, StepEvent)]
    assert steps == [(1, 2), (2, 2), (2, 2)]  # rewrite, then a check per candidate written
