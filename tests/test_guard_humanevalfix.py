"""The 164 canonical fixes of HumanEvalFix, as diffs against the buggy
solutions, are an honest corpus: the guard must allow every one of them.

All 164 go through the boundary and every monitor (pure, in memory, with each
task's real test file as the tests the monitors compare against); a sample
also goes through the whole check with a real repository and real grading."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from guard_corpus import corpus
from ornith_lsp.guard.boundary import Boundary
from ornith_lsp.guard.check import acheck_diff, review_diff

# the project is checked out with ../shared beside it (a worktree may sit one level deeper)
_RELATIVE = Path("shared") / "data" / "humanevalfix" / "humanevalpack_python.jsonl"
DATA = next((p / _RELATIVE for p in Path(__file__).resolve().parents[1:4] if (p / _RELATIVE).is_file()),
            Path(__file__).resolve().parents[2] / _RELATIVE)
TASK = {"kind": "test", "tests": ["test_solution.py::test_check"]}
GRADED_SAMPLE = ("Python/0", "Python/33", "Python/103", "Python/163")


def load_rows() -> list[dict]:
    return [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]


def project(row: dict) -> tuple[dict[str, str], str]:
    """(base files, canonical solution): ``solution.py`` is prompt + buggy solution,
    ``test_solution.py`` imports it and calls the task's ``check``."""
    lines = row["test"].rstrip().splitlines()
    if lines and lines[-1].startswith("check("):
        lines = lines[:-1]
    test = (f"from solution import {row['entry_point']}\n" + "\n".join(lines)
            + f"\n\n\ndef test_check():\n    check({row['entry_point']})\n")
    files = {"solution.py": row["prompt"] + row["buggy_solution"], "test_solution.py": test}
    return files, row["prompt"] + row["canonical_solution"]


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    rows = load_rows()
    assert len(rows) == 164
    return rows


def test_all_164_canonical_fixes_are_allowed_by_the_deterministic_layers(rows):
    boundary = Boundary(root=None)
    blocked, concerned = [], []
    for row in rows:
        files, fixed = project(row)
        review = review_diff(corpus.unified("solution.py", files["solution.py"], fixed), boundary=boundary,
                             read_base=files.get, list_base=lambda files=files: list(files), task=TASK)
        assert review.apply_error is None, row["task_id"]
        assert review.after["solution.py"] == fixed, row["task_id"]
        if review.findings:
            blocked.append((row["task_id"], [(f.monitor, f.line, f.evidence) for f in review.findings]))
        if review.concerns:
            concerned.append(row["task_id"])
    assert not blocked, blocked
    print(f"humanevalfix: {164 - len(blocked)}/164 allowed, {len(concerned)} with concerns")


def test_a_sample_passes_every_layer_with_real_grading(rows, tmp_path):
    by_id = {r["task_id"]: r for r in rows}
    jobs = []
    for task_id in GRADED_SAMPLE:
        files, fixed = project(by_id[task_id])
        repo = corpus.build_repo(tmp_path / task_id.replace("/", "_"), files)
        diff = corpus.make_diff(repo, [{"path": "solution.py", "content": fixed}])
        jobs.append(acheck_diff(repo, diff, TASK, timeout_s=60))

    async def all_of():
        return await asyncio.gather(*jobs)

    for task_id, verdict in zip(GRADED_SAMPLE, asyncio.run(all_of())):
        assert verdict.allowed, (task_id, verdict.findings)
        assert any("ran and passed" in n for n in verdict.notes), (task_id, verdict.notes)


def test_the_buggy_solution_fails_grading(rows, tmp_path):
    """The control: the same pipeline does fail a non-fix, so the passes above mean something."""
    files, _ = project(rows[0])
    repo = corpus.build_repo(tmp_path / "repo", files)
    diff = corpus.make_diff(repo, [{"path": "solution.py", "append": "\n# tidy\n"}])
    verdict = asyncio.run(acheck_diff(repo, diff, TASK, timeout_s=60))
    assert not verdict.allowed and [f.monitor for f in verdict.findings] == ["tests-failed"]
    assert verdict.findings[0].layer == "grading"
