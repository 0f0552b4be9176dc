"""The whole loop with the REAL embedded model (llama-server + SmolLM2-135M).

A 135M model rarely fixes anything; these tests check that the loop runs
honestly with it: budgets hold, the user's files stay untouched, every turn is
accounted for, the prompt is laid out so the backend's KV cache is reused, and
the reported status matches what verification found.
"""

from __future__ import annotations

import pytest

from ornith_lsp import settings as settings_mod
from ornith_lsp.agent.session import fix

from agent_repos import CALC, make_repo, snapshot
from bench_support import embedded
from conftest import REAL_MODEL_TEST_S, REAL_MODEL_WALL_S
from test_agent_scripted import TASK

pytestmark = [pytest.mark.usefixtures("no_new_llama_servers"), pytest.mark.timeout(REAL_MODEL_TEST_S)]


async def test_real_model_runs_the_loop_within_budget_and_reports_honestly(tmp_path):
    repo = make_repo(tmp_path / "repo", CALC)
    before = snapshot(repo)
    s = settings_mod.load(None, cli={"agent": {"max_turns": 4, "max_output_tokens": 96, "max_wall_s": REAL_MODEL_WALL_S,
                                               "test_timeout_s": 60},
                                     "backend": {"kind": "embedded"}, "log_dir": str(tmp_path / "logs")}, environ={})
    async with embedded(s) as backend:
        async with backend.client() as llm:
            result = await fix(TASK, root=repo, llm=llm, settings=s, context_length=backend.plan.context_length,
                               baseline=["test_calc.py::test_mul"])
    report = result.report
    assert snapshot(repo) == before
    assert 1 <= len(report.turns) <= 4
    assert report.status in {"fixed", "unfixed", "budget", "vetoed"}, report.reason
    assert report.reason
    assert all(t.prompt_tokens > 0 and t.completion_tokens > 0 for t in report.turns)
    if report.status == "fixed":
        assert result.verified and result.diff and report.verification.ok
        assert result.verdict["allowed"] is True
    else:
        assert not result.verified
    # append-only prompts: from the second turn on, llama-server serves most of the prompt from its cache
    if len(report.turns) >= 2:
        cache = report.cache()
        assert cache["reused_fraction_after_first_turn"] > 0.5, cache
