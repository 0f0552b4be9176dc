"""The repository changes under the agent: a commit, a checkout of another
branch, a deleted file.  The fix is made for real (the ScriptedPolicyServer
TEST DOUBLE plays the model; shadow, pytest and the guard are real), the
repository is changed, and the fix is re-checked before it may be offered."""

from __future__ import annotations

from agent_repos import CALC, git, make_repo
from ornith_lsp.agent.recheck import base_changed, recheck
from ornith_lsp.agent.session import fix
from ornith_lsp.llm.client import ChatClient
from policy_double import ScriptedPolicyServer
from test_agent_scripted import FINISH, GOOD_EDIT, PLAN, READ, STEP_DONE, TASK, settings

FIXING = [PLAN, READ, STEP_DONE, GOOD_EDIT, STEP_DONE, FINISH]
BASELINE = ["test_calc.py::test_mul"]


async def verified_fix(tmp_path):
    repo = make_repo(tmp_path / "repo", CALC)
    with ScriptedPolicyServer(FIXING) as policy:
        async with ChatClient(policy.url, "scripted") as llm:
            result = await fix(TASK, root=repo, llm=llm, settings=settings(), context_length=32768, baseline=BASELINE)
    assert result.verified, result.report
    return repo, result


async def test_an_unchanged_repository_needs_no_recheck(tmp_path):
    repo, result = await verified_fix(tmp_path)
    diff = result.diff
    assert base_changed(repo, result) is None
    again = await recheck(result, root=repo, settings=settings(), baseline=BASELINE)
    assert again.verified and again.diff == diff and again.notes == []


async def test_an_unrelated_commit_is_re_verified_and_the_fix_rebased(tmp_path):
    repo, result = await verified_fix(tmp_path)
    (repo / "calc.py").write_text(CALC["calc.py"] + "\n\ndef sub(a, b):\n    return a - b\n")
    git(repo, "commit", "-qam", "add sub")
    assert "HEAD moved" in base_changed(repo, result) and "calc.py" in base_changed(repo, result)
    again = await recheck(result, root=repo, settings=settings(), baseline=BASELINE)
    assert again.verified, again.report.reason
    assert "re-verified against the new base" in again.notes[-1]
    blob = git(repo, "rev-parse", "HEAD:calc.py").strip()
    assert f"index {blob}.." in again.diff  # the diff is now against the new calc.py


async def test_a_deleted_file_refuses_the_fix_with_the_reason(tmp_path):
    repo, result = await verified_fix(tmp_path)
    (repo / "calc.py").unlink()
    again = await recheck(result, root=repo, settings=settings(), baseline=BASELINE)
    assert not again.verified and again.report.status == "unfixed"
    assert "the repository changed while the fix was made" in again.report.reason
    assert "calc.py (deleted)" in again.report.reason and "no longer applies" in again.report.reason


async def test_a_checkout_where_the_fix_no_longer_passes_is_refused(tmp_path):
    repo, result = await verified_fix(tmp_path)
    git(repo, "checkout", "-qb", "other")
    (repo / "test_calc.py").write_text(CALC["test_calc.py"].replace("== 5", "== 6"))
    git(repo, "commit", "-qam", "a different expectation")
    again = await recheck(result, root=repo, settings=settings(), baseline=BASELINE)
    assert not again.verified
    assert "HEAD moved" in again.report.reason and "fails verification" in again.report.reason
    assert git(repo, "worktree", "list").count("\n") == 1  # the recheck's shadows are gone
