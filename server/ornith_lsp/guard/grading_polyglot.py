"""Grading for the languages whose tests are not pytest's.

The same contract as the pytest grader: every target test must appear in the
runner's machine-readable report and pass -- not be skipped, not be missing
because the process exited early, not hidden by a build error -- and the
report itself must have been written.  Only the reading differs, and that is
``tasks.runners``' job.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ornith_lsp.guard.outcome import GradeResult, selects
from ornith_lsp.tasks.project import ProjectRun
from ornith_lsp.tasks.runners import run_project_tests


async def grade_project(tree: Path, targets: list[str], language: str, *, timeout_s: float,
                        report_dir: Path, deps_hints: Sequence[Path] = ()):
    run = await run_project_tests(tree, language, node_ids=targets, timeout_s=timeout_s, deps_hints=deps_hints)
    log_path = report_dir / "tests.log"
    log_path.write_text(run.output, encoding="utf-8")
    result = GradeResult(False, log_path=log_path, exit_code=run.returncode)
    if run.timed_out:
        result.kind, result.reason = "timeout", f"the target tests did not finish within {timeout_s:g} s"
        return result
    if run.build_tasks:
        first = run.build_tasks[0]
        where = f"{first.location.path}:{first.location.line}" if first.location else ""
        result.kind = "tests-failed"
        result.reason = f"the {language} build failed at {where}: {first.message.splitlines()[0][:300]}"
        return result
    if not run.report_found:
        result.kind, result.reason = "no-report", (run.note or f"the {language} test runner wrote no report")
        return result
    return _judge(run, targets, result)


def _judge(run: ProjectRun, targets: list[str], result):
    result.summary_found = True
    outcomes = {r.node_id: r.outcome for r in run.results}
    absent = []
    for target in targets:
        matched = {n: o for n, o in outcomes.items() if selects(target, n)}
        if not matched:
            absent.append(target)
        for node, outcome in matched.items():
            if outcome == "passed":
                result.ran.append(node)
            elif outcome in ("failed", "error"):
                result.failed.append(node)
            else:
                result.skipped.append(f"{node} ({outcome})")
    crashed = [r.node_id for r in run.results if r.node_id.endswith("::(test binary)")]
    if absent:
        result.kind = "tests-deselected"
        result.reason = f"target test(s) did not run (skipped by an early exit, missing or renamed): {', '.join(absent[:10])}"
    elif result.failed:
        result.kind, result.reason = "tests-failed", f"target test(s) failed: {', '.join(result.failed[:10])}"
    elif result.skipped:
        result.kind, result.reason = "tests-skipped", f"target test(s) skipped: {', '.join(result.skipped[:10])}"
    elif crashed:
        result.kind, result.reason = "no-report", f"a test binary ended without its summary: {', '.join(crashed)}"
    else:
        result.passed, result.kind = True, "passed"
        result.reason = f"{len(result.ran)} target test(s) ran and passed"
    return result
