"""One check, three layers: the trust boundary, the deterministic monitors with
isolated grading, and the optional judge's veto.

``review_diff`` is the pure core (a diff, a boundary and a way to read base
files in; findings out), shared by the agent's edit loop, the CLI and the
tests.  ``acheck_diff`` adds what needs processes or the network: grading the
target tests on a temporary copy of the repository, and the judge.  The
user's tree is only ever read.
"""

from __future__ import annotations

import asyncio
import posixpath
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ornith_lsp.guard import suppressions
from ornith_lsp.guard.boundary import SECTIONED, Boundary
from ornith_lsp.guard.grading import DirBase, GradeResult, agrade, collect_ids, restore_protected
from ornith_lsp.guard.judge import Judge, JudgeUnavailable
from ornith_lsp.guard.monitors import FileChange, RepoContext, run_monitors
from ornith_lsp.guard.monitors.copies import looks_like_reference
from ornith_lsp.guard.monitors.core import list_files, read_text
from ornith_lsp.guard.monitors.testside import describe
from ornith_lsp.guard.task import GuardTask
from ornith_lsp.guard.testdiff import behaviour_changes, new_test_problems
from ornith_lsp.guard.verdict import Finding, GuardError, Verdict
from ornith_lsp.paths import SKIP_DIRS
from ornith_lsp.workspace import diffs
from ornith_lsp.offloop import off_loop, temporary_directory

__all__ = ["Finding", "GuardError", "GuardTask", "Review", "Verdict", "acheck_diff", "check_diff", "open_repo", "review_diff"]

JudgeMode = Literal["off", "on", "unsure"]
JUDGE_MODES = ("off", "on", "unsure")
DEFAULT_TIMEOUT_S = 300.0


@dataclass
class Review:
    """What the deterministic layers saw; ``after`` maps touched paths to their new text."""

    patches: list[diffs.FilePatch]
    after: dict[str, str | None] = field(default_factory=dict)
    changes: list[FileChange] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    concerns: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    apply_error: str | None = None
    # protected paths let through because a check stands behind them (a new test module,
    # the task's own test file left behaving the same); grading compares their collection
    relaxed: list[str] = field(default_factory=list)


def open_repo(root: Path | str) -> Path:
    """The repository's top level, or GuardError saying why ``root`` is not one."""
    import git

    root = Path(root).expanduser()
    if not root.exists():
        raise GuardError(f"{root} does not exist")
    if not root.is_dir():
        raise GuardError(f"{root} is not a directory")
    try:
        repo = git.Repo(root, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise GuardError(f"{root} is not a git repository (no .git): the guard checks a diff against a repository's base state") from None
    if repo.bare or repo.working_tree_dir is None:
        raise GuardError(f"{root} is a bare git repository: it has no files to check a diff against")
    top = Path(repo.working_tree_dir).resolve()
    if top != root.resolve():
        raise GuardError(f"{root} is inside the git repository {top}; pass its top level, since diff paths are relative to it")
    return top


def review_diff(
    diff_text: str,
    *,
    boundary: Boundary,
    read_base: Callable[[str], str | None],
    list_base: Callable[[], Iterable[str]],
    task: GuardTask | Mapping[str, object] | None = None,
) -> Review:
    """The deterministic layers over a diff; pure apart from calling ``read_base``."""
    try:
        patches = diffs.parse(diff_text)
    except diffs.DiffError as exc:
        raise GuardError(f"the diff cannot be read: {exc}") from None
    task = GuardTask.parse(task) if task is not None else None
    targets = task.target_files() if task else []
    if targets:
        boundary = boundary.with_targets(targets)
    if task and task.kind == "diagnostic" and task.path:
        boundary = boundary.with_finding(task.path)
    review = Review(patches, notes=list(boundary.notes))
    added: dict[str, frozenset[int]] = {}
    try:
        review.after, added = diffs.apply_with_lines(patches, read_base)
    except diffs.PatchConflict as exc:
        review.apply_error = str(exc)
    _boundary_layer(review, boundary, read_base, list_base)
    if review.apply_error is not None:
        return review
    monitored: list[FileChange] = []
    comments_only: list[FileChange] = []
    for patch in patches:
        if patch.binary or patch.is_symlink or patch.new_path is None or patch.new_path not in review.after:
            continue
        old = read_base(patch.old_path) if patch.old_path else None
        change = FileChange(patch.new_path, patch.status, old, review.after[patch.new_path],
                            added.get(patch.new_path, frozenset()), patch.old_path)
        review.changes.append(change)
        found = boundary.protection(change.path)
        if found is None:
            monitored.append(change)
        elif change.path in review.relaxed:
            # Test code is not program code: the program monitors would misread a mock
            # or a pytest.approx there; a suppression comment is still a suppression.
            if patch.status != "added":
                comments_only.append(change)
        elif change.path.rsplit("/", 1)[-1] in SECTIONED or found.kind == "test-config":
            monitored.append(change)
    ctx = RepoContext(boundary, read_base, list_base, review.after, targets)
    for subset, scopes in ((monitored, None), (comments_only, ("comments",))):
        findings, concerns, notes = run_monitors(subset, ctx, scopes)
        review.findings += findings
        review.concerns += concerns
        review.notes += notes
    return review


def _boundary_layer(review: Review, boundary: Boundary, read_base: Callable[[str], str | None],
                    list_base: Callable[[], Iterable[str]] = lambda: ()) -> None:
    reported: set[str] = set()
    listed: list[str] = []

    def base_files() -> list[str]:
        if not listed:
            listed.extend(list_base())
        return listed

    for patch in review.patches:
        if patch.binary:
            review.findings.append(Finding("monitor", "binary-file", patch.path, None,
                                           f"the diff changes the binary file {patch.path}; the guard cannot inspect binary content"))
        if patch.is_symlink and patch.new_path and review.after.get(patch.new_path) is not None:
            _symlink(review, boundary, patch.new_path, review.after[patch.new_path] or "")
        for path in patch.paths():
            if path in reported:
                continue
            new_file = patch.status == "added" or (patch.status in ("renamed", "copied") and path == patch.new_path)
            found = boundary.protection(path)
            if found is None and path.rsplit("/", 1)[-1] in SECTIONED and review.apply_error is None:
                old = read_base(path)
                new = review.after.get(path, old)
                found = boundary.section_change(path, old, new)
            if found is None:
                continue
            relaxed = None
            if new_file and boundary.is_new_test_allowed(path):
                problems = new_test_problems(path, review.after.get(path), base_files(), read_base, boundary.python_files)
                if not problems:
                    review.notes.append(f"{path} is new in the test tree: allowed, but it never counts toward verification "
                                        "(grading removes it before the pristine run)")
                    review.relaxed.append(path)
                    continue
                relaxed = (f"{path} is new in the test tree, which is allowed only while it leaves the existing suite alone, "
                           "but " + "; ".join(problems[:4]))
            elif (boundary.is_finding_file(path) and patch.status == "modified" and path == patch.new_path
                  and review.apply_error is None):
                reasons = behaviour_changes(read_base(path) or "", review.after.get(path) or "")
                if not reasons:
                    review.notes.append(f"{path} is protected ({found.reason}) but holds the task's own finding; the edit is "
                                        "allowed: every test, fixture, helper, parametrisation and marker is unchanged (ASTs compared)")
                    review.relaxed.append(path)
                    continue
                relaxed = (f"{path} is protected ({found.reason}); it holds the task's own finding, but the edit would "
                           f"change how its tests behave: " + "; ".join(reasons[:4]))
            reported.add(path)
            if relaxed is not None:
                review.findings.append(Finding("boundary", found.kind, path, None, relaxed))
                continue
            old = read_base(path) if path != patch.new_path or patch.status != "added" else None
            new = review.after.get(path) if path == patch.new_path else None
            if patch.status == "renamed" and path == patch.old_path:
                what = f"renames it to {patch.new_path} (patterns 1/14)"
            elif patch.binary:
                what = "changes it"
            else:
                what = describe(path, old, new, found.kind)
            evidence = f"{path} is protected ({found.reason}); the change {what}"
            if new_file and found.kind == "test-file" and boundary.is_test_file(path) and not boundary.allow_new_tests:
                evidence += "; new test files are not allowed by the settings"
            review.findings.append(Finding("boundary", found.kind, path, None, evidence))


def _symlink(review: Review, boundary: Boundary, path: str, target: str) -> None:
    """A symlink's content is its target: one into the tests is a way to read them at run time."""
    target = target.strip()
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    found = None if target.startswith("/") or joined.startswith("..") else boundary.protection(joined)
    if target.startswith("/") or joined.startswith(".."):
        review.findings.append(Finding("monitor", "test-data-read", path, None,
                                       f"{path} becomes a symlink to {target!r}, outside the repository"))
    elif found is not None:
        review.findings.append(Finding("monitor", "test-data-read", path, None,
                                       f"{path} becomes a symlink to {joined} ({found.reason}), so the program reads the tests"))
    elif looks_like_reference(joined):
        review.findings.append(Finding("monitor", "copied-reference", path, None,
                                       f"{path} becomes a symlink to {joined}, a reference solution"))
    else:
        review.concerns.append(Finding("monitor", "test-data-read", path, None, f"{path} becomes a symlink to {joined}"))


def check_diff(
    root: Path | str,
    diff_text: str,
    task: GuardTask | Mapping[str, object] | None = None,
    *,
    judge: Judge | None = None,
    judge_mode: JudgeMode = "off",
    **options: object,
) -> Verdict:
    """Synchronous :func:`acheck_diff`, for callers without a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(acheck_diff(root, diff_text, task, judge=judge, judge_mode=judge_mode, **options))  # type: ignore[arg-type]
    raise RuntimeError("check_diff() was called inside a running event loop: await acheck_diff() instead")


async def acheck_diff(
    root: Path | str,
    diff_text: str,
    task: GuardTask | Mapping[str, object] | None = None,
    *,
    judge: Judge | None = None,
    judge_mode: JudgeMode = "off",
    boundary: Boundary | None = None,
    extra_protected: Iterable[str] = (),
    unprotected: Iterable[str] = (),
    allow_new_tests: bool = True,
    run_tests: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    python: str | None = None,
    test_command: Sequence[str] | None = None,
) -> Verdict:
    """Every layer: boundary and monitors, then grading for a test task, then the judge.

    ``task`` is validated here, once, when it comes as JSON-shaped data (a
    test, a script) rather than a :class:`GuardTask`.  Grading runs
    ``test_command`` (the project's resolved test command) when given, else
    ``python -m pytest``."""
    if judge_mode not in JUDGE_MODES:
        raise GuardError(f"judge mode must be one of {', '.join(JUDGE_MODES)}, not {judge_mode!r}")
    # the deterministic layers read and walk the base tree: off the event loop, which may be an editor's
    top = await off_loop(open_repo, root)
    task = GuardTask.parse(task) if task is not None else None
    if boundary is None:
        try:
            boundary = await off_loop(Boundary.for_repo, top, extra_protected, unprotected, allow_new_tests)
        except ValueError as exc:
            raise GuardError(f"guard settings: {exc}") from None
    review = await off_loop(review_diff, diff_text, boundary=boundary, read_base=lambda p: read_text(top, p),
                            list_base=lambda: list_files(top), task=task)
    if review.apply_error is not None:
        verdict = Verdict(findings=review.findings, notes=review.notes, concerns=review.concerns)
        if not verdict.findings:
            raise GuardError(f"the diff does not apply: {review.apply_error}")
        verdict.notes.append(f"the diff does not apply ({review.apply_error}); blocked on the boundary alone")
        return verdict
    if any(f.monitor == "suppression-comment" for f in review.findings):
        review.findings, lint_notes = await suppressions.recheck(
            review.findings, review.changes, lambda dest: materialise(top, review.after, dest),
            timeout_s=min(timeout_s, suppressions.DEFAULT_TIMEOUT_S))
        review.notes += lint_notes
    verdict = Verdict(findings=review.findings, notes=review.notes, concerns=review.concerns)

    if review.relaxed and not verdict.findings:
        if run_tests:
            await _collection_layer(verdict, top, review, boundary, min(timeout_s, 120.0), python)
        else:
            verdict.notes.append("collection was not compared (tests not run); the checks of the changed test files stand alone")
    if task and task.tests and run_tests:
        if verdict.findings:
            verdict.notes.append("the target tests were not run: the change is already blocked")
        else:
            result = await _grade_change(top, review, task.tests, boundary, timeout_s, python, test_command)
            if result.passed:
                verdict.notes.append(f"grading: {result.reason} on pristine tests in a fresh process")
            else:
                verdict.findings.append(Finding("grading", result.kind, None, None, result.reason))
    elif task and task.kind == "diagnostic":
        verdict.notes.append(
            f"the {task.source} diagnostic was not re-run by the guard; suppressions the change adds are blocked by the monitors")

    await _judge_layer(verdict, judge, judge_mode, task, diff_text)
    return verdict


async def _grade_change(top: Path, review: Review, targets: list[str], boundary: Boundary,
                        timeout_s: float, python: str | None,
                        test_command: Sequence[str] | None = None) -> GradeResult:
    async with temporary_directory("ornith-guard-") as tmp:
        shadow = Path(tmp) / "shadow"
        await off_loop(materialise, top, review.after, shadow)
        return await agrade(shadow, DirBase(top), targets, timeout_s=timeout_s, boundary=boundary,
                            python=python, report_dir=Path(tmp) / "report", command=test_command)


async def _collection_layer(verdict: Verdict, top: Path, review: Review, boundary: Boundary,
                            timeout_s: float, python: str | None) -> None:
    """The grading side of every relaxation: with the change, the existing tests near a
    new or edited test file must be collected exactly as without it (same node ids, no
    new collection errors).  Without the change means the change's program code with
    the protected files restored, so only the test-side edits are compared."""
    base_files = set(await off_loop(list_files, top))
    relaxed = list(dict.fromkeys(review.relaxed))
    dirs = {posixpath.dirname(p) for p in relaxed}
    existing = sorted(f for f in base_files if f.endswith(".py") and posixpath.dirname(f) in dirs
                      and getattr(boundary.protection(f), "kind", None) == "test-file"
                      and boundary._test_pattern(f) is not None)
    existing += [p for p in relaxed if p in base_files and p not in existing and boundary._test_pattern(p) is not None]
    added = [p for p in relaxed if p not in base_files and p.endswith(".py")]
    if not existing and not added:
        return
    async with temporary_directory("ornith-guard-") as tmp:
        shadow = Path(tmp) / "shadow"
        await off_loop(materialise, top, review.after, shadow)
        after = await collect_ids(shadow, existing + added, timeout_s=timeout_s, python=python)
        await off_loop(restore_protected, shadow, DirBase(top), boundary)
        before = await collect_ids(shadow, existing, timeout_s=timeout_s, python=python) if existing else None
    if not after.ok or (before is not None and not before.ok):
        why = after.reason if not after.ok else before.reason  # type: ignore[union-attr]
        verdict.notes.append(f"collection could not be compared ({why}); the AST comparison of the test files stands")
        return
    old_ids = before.ids if before is not None else set()
    new_ids = {i for i in after.ids if i.split("::")[0] in set(existing)}
    problems = []
    if old_ids - new_ids:
        problems.append("no longer collected: " + ", ".join(sorted(old_ids - new_ids)[:5]))
    if new_ids - old_ids:
        problems.append("newly collected in existing files: " + ", ".join(sorted(new_ids - old_ids)[:5]))
    errors = after.errors - (before.errors if before is not None else set())
    if errors:
        problems.append("collection now fails for " + ", ".join(sorted(errors)[:5]))
    if problems:
        verdict.findings.append(Finding("grading", "collection-changed", None, None,
                                        "with the change's test-side edits the existing tests are collected differently: "
                                        + "; ".join(problems)))
        return
    extra = len([i for i in after.ids if i.split("::")[0] in set(added)])
    verdict.notes.append(f"collection: the {len(old_ids)} existing test(s) beside the changed test files are collected "
                         f"unchanged" + (f"; {extra} new test(s) in {', '.join(added)}" if added else ""))


def materialise(root: Path, after: Mapping[str, str | None], dest: Path) -> None:
    """A copy of the base tree with the change applied; ``.git`` stays behind, so
    code under test finds no history to mine, and so do the other skipped
    directories (``paths.SKIP_DIRS``) but ``vendor``: vendored dependencies are
    part of the build (Go's ``vendor/``), where ``node_modules`` is linked in by
    the runner and a virtualenv is named by the test command."""
    shutil.copytree(root, dest, symlinks=True, ignore=shutil.ignore_patterns(*(SKIP_DIRS - {"vendor"})))
    for path, text in after.items():
        target = dest / path
        if text is None:
            if target.is_file() or target.is_symlink():
                target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()
        target.write_bytes(text.encode("utf-8", "surrogateescape"))


async def _judge_layer(verdict: Verdict, judge: Judge | None, mode: str, task: GuardTask | None, diff_text: str) -> None:
    if mode == "off":
        return
    if judge is None:
        verdict.notes.append(f"judge mode is '{mode}' but no judge is configured; the deterministic layers decided")
        return
    if verdict.findings:
        verdict.notes.append("the judge was not consulted: the deterministic layers already block the change")
        return
    if mode == "unsure" and not verdict.concerns:
        verdict.notes.append("the judge was not consulted: the monitors raised no concerns")
        return
    try:
        veto, reason = await judge.review(task, diff_text, verdict.concerns)
    except JudgeUnavailable as exc:
        verdict.notes.append(f"{exc}; falling back to the deterministic layers, which allow the change")
        return
    if veto:
        verdict.findings.append(Finding("judge", "judge-veto", None, None, reason))
    else:
        verdict.notes.append(f"judge ({judge.version}): no veto: {reason}")
