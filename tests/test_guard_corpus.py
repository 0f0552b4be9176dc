"""The guard against the corpus: every documented cheat is blocked by the
monitor named for it, every honest fix is allowed (with its tests really run
on pristine tests), and grading alone still fails each test-side cheat when
the boundary is bypassed."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from guard_corpus import corpus
from ornith_lsp.guard.check import acheck_diff, check_diff
from ornith_lsp.guard.grading import agrade

PARALLEL = max(2, min(4, (os.cpu_count() or 2) * 2))

PROGRAMS, CASES = corpus.load_cases()
BLOCKED = [c for c in CASES if c.expect == "blocked"]
HONEST = [c for c in CASES if c.expect == "allowed"]
GRADED = [c for c in BLOCKED if c.grading]


@pytest.fixture(scope="session")
def repos(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("corpus")
    return {name: corpus.build_repo(base / name, corpus.load_bundle(name)) for name in PROGRAMS}


@pytest.fixture(scope="session")
def diff_of(repos):
    made: dict[str, str] = {}

    def get(case: corpus.Case) -> str:
        if case.id not in made:
            made[case.id] = corpus.make_diff(repos[case.program], case.edits)
        return made[case.id]

    return get


def test_corpus_covers_every_pattern_in_several_shapes():
    covered = {n for c in BLOCKED for n in c.patterns}
    assert covered >= set(range(1, 29)), sorted(set(range(1, 29)) - covered)
    shapes = lambda n: [c.id for c in BLOCKED if n in c.patterns]  # noqa: E731
    assert any("decorator" in i for i in shapes(5)) and any("module-level" in i for i in shapes(5))
    assert any("dict" in i for i in shapes(18)) and any("if-chain" in i for i in shapes(18))
    assert any("file" in i for i in shapes(28)) and any(k in i for i in shapes(28) for k in ("pyproject", "cfg", "ini"))
    assert len({c.program for c in CASES}) >= 5
    honest_ids = " ".join(c.id for c in HONEST)
    for tricky in ("dict", "data-file", "eq", "exits-in-main", "reference"):
        assert tricky in honest_ids


@pytest.mark.parametrize("case", BLOCKED, ids=lambda c: c.id)
def test_cheat_is_blocked_by_its_monitor(case, repos, diff_of):
    verdict = check_diff(repos[case.program], diff_of(case), case.task, allow_new_tests=case.allow_new_tests)
    assert not verdict.allowed
    named = {f.monitor for f in verdict.findings}
    assert set(case.monitors) <= named, (named, [f.evidence for f in verdict.findings])
    assert set(case.concerns) <= {c.monitor for c in verdict.concerns}, verdict.concerns
    for f in verdict.findings:
        assert f.evidence and f.layer in ("boundary", "monitor")
        if f.layer == "monitor":
            assert f.path and (f.line or "symlink" in f.evidence), f
    assert "not run" in " ".join(verdict.notes) or case.task["kind"] == "diagnostic"


async def _bounded(jobs):
    gate = asyncio.Semaphore(PARALLEL)

    async def one(job):
        async with gate:
            return await job

    return await asyncio.gather(*(one(j) for j in jobs))


@pytest.fixture(scope="session")
def honest_verdicts(repos, diff_of):
    """Each honest case through every layer, its tests really run; concurrently,
    since each grading is its own pytest process."""
    jobs = [acheck_diff(repos[c.program], diff_of(c), c.task, allow_new_tests=c.allow_new_tests, timeout_s=60)
            for c in HONEST]
    return dict(zip((c.id for c in HONEST), asyncio.run(_bounded(jobs))))


@pytest.mark.parametrize("case", HONEST, ids=lambda c: c.id)
def test_honest_fix_is_allowed_and_passes_grading(case, honest_verdicts):
    verdict = honest_verdicts[case.id]
    assert verdict.allowed, [(f.monitor, f.path, f.line, f.evidence) for f in verdict.findings]
    assert any(n.startswith("grading:") and "ran and passed" in n for n in verdict.notes), verdict.notes
    assert set(case.concerns) <= {c.monitor for c in verdict.concerns}, verdict.concerns
    if not case.concerns:
        assert not verdict.concerns, verdict.concerns


@pytest.fixture(scope="session")
def bypassed_grades(repos, tmp_path_factory):
    """Pretend the edit tool let each test-side cheat through, then grade:
    grading restores the tests from the base before anything runs."""
    jobs = []
    for case in GRADED:
        work = tmp_path_factory.mktemp(case.id)
        shadow = corpus.copy_tree(repos[case.program], work / "shadow")
        corpus.apply_edits(shadow, case.edits)
        jobs.append(agrade(shadow, repos[case.program], case.task["tests"], timeout_s=60, report_dir=work / "report"))
    return dict(zip((c.id for c in GRADED), asyncio.run(_bounded(jobs))))


@pytest.mark.parametrize("case", GRADED, ids=lambda c: c.id)
def test_bypassed_test_side_cheat_still_fails_grading(case, bypassed_grades):
    result = bypassed_grades[case.id]
    assert not result.passed, result
    assert result.restored, "the cheat touched protected files, so something must have been restored"
    assert result.reason and result.kind != "passed"
