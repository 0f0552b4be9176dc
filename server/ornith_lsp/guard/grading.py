"""Grading in isolation: the tests that decide success run on pristine tests.

Order matters (terminal-bench's grader-isolation fix): every protected file
of the shadow tree is first restored from the base -- changed ones rewritten,
new ones deleted, stale bytecode removed -- and only then does a fresh pytest
process start, in its own process group, with a timeout.  Nothing written by
the agent runs before the restore.

Success is read from pytest's own JUnit report, never from the exit code:
exit code 0 is also what "all skipped", "all xfailed" and ``os._exit(0)``
give.  The target tests must each have run and passed, none skipped,
xfailed or deselected, and the report's summary must exist.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ornith_lsp import procs
from ornith_lsp.guard import ecosystems, inline_tests
from ornith_lsp.guard.boundary import SECTIONED, Boundary
from ornith_lsp.guard.grading_polyglot import grade_project
from ornith_lsp.guard.monitors.core import list_files
from ornith_lsp.guard.outcome import GradeResult, selects as _selects
from ornith_lsp.guard.task import normalise_targets
from ornith_lsp.guard.verdict import GuardError
from ornith_lsp.tasks.pytest_report import read_junit
from ornith_lsp.tasks.runners import language_of_ids
from ornith_lsp.offloop import off_loop

CONFIG_CANDIDATES = ("pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")
DROPPED_ENV = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTHONSTARTUP", "PYTHONINSPECT", "PYTEST_CURRENT_TEST")


# -- the base the protected files come back from -------------------------------------
class DirBase:
    """A directory holding the base state (the user's checkout, a checkpoint copy)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def files(self) -> list[str]:
        return list_files(self.root)

    def read(self, relpath: str) -> bytes | None:
        path = self.root / relpath
        try:
            return path.read_bytes() if path.is_file() else None
        except OSError:
            return None


class GitCheckpoint:
    """A commit of a repository: the agent's checkpoint before it started editing."""

    def __init__(self, repo: Path, rev: str = "HEAD") -> None:
        import git

        try:
            self._repo = git.Repo(repo)
            self._tree = self._repo.commit(rev).tree
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise GuardError(f"{repo} is not a git repository") from None
        except (git.BadName, ValueError) as exc:
            raise GuardError(f"{repo}: no commit {rev!r} to restore the tests from ({exc})") from None
        self.rev = rev
        self._blobs: dict[str, git.Blob] = {str(b.path): b for b in self._tree.traverse() if isinstance(b, git.Blob)}

    def files(self) -> list[str]:
        return sorted(self._blobs)

    def read(self, relpath: str) -> bytes | None:
        blob = self._blobs.get(relpath)
        return blob.data_stream.read() if blob is not None else None


def as_base(base: Path | str | DirBase | GitCheckpoint | tuple) -> DirBase | GitCheckpoint:
    if isinstance(base, (DirBase, GitCheckpoint)):
        return base
    if isinstance(base, tuple) and len(base) == 2:
        return GitCheckpoint(Path(base[0]), str(base[1]))
    if isinstance(base, (str, Path)) and Path(base).is_dir():
        return DirBase(Path(base))
    raise GuardError(f"the base must be a directory or (repository, commit), not {base!r}")


# -- restore ---------------------------------------------------------------------------------
def restore_protected(shadow_root: Path, base: DirBase | GitCheckpoint, boundary: Boundary) -> list[str]:
    """Make every protected file of ``shadow_root`` identical to the base. Returns what changed."""
    shadow_root = Path(shadow_root)
    changed: list[str] = []
    base_files = set(base.files())
    shadow_files = set(list_files(shadow_root))
    for path in sorted(base_files | shadow_files):
        name = path.rsplit("/", 1)[-1]
        protected = boundary.protection(path) is not None
        if not protected and name in SECTIONED:
            old = base.read(path) if path in base_files else None
            new = (shadow_root / path).read_bytes() if path in shadow_files else None
            protected = old != new and boundary.section_change(
                path, _text(old), _text(new)) is not None
        if not protected or path.split("/")[0] == ".git":
            continue
        target = shadow_root / path
        wanted = base.read(path) if path in base_files else None
        if wanted is None:
            if target.is_file() or target.is_symlink():
                target.unlink()
                changed.append(f"removed {path}")
            continue
        if target.is_symlink() or not target.is_file() or target.read_bytes() != wanted:
            if target.is_symlink() or target.is_dir():
                _remove(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(wanted)
            changed.append(f"restored {path}")
    changed += _restore_inline_tests(shadow_root, base, boundary)
    _drop_bytecode(shadow_root)
    return changed


def _restore_inline_tests(shadow_root: Path, base: DirBase | GitCheckpoint, boundary: Boundary) -> list[str]:
    """Rust's ``#[cfg(test)]`` items, protected inside otherwise editable files."""
    changed = []
    for path in list_files(shadow_root):
        if not path.endswith(".rs") or not ecosystems.item_level(path) or boundary.protection(path) is not None:
            continue
        wanted = base.read(path)
        target = shadow_root / path
        current = target.read_bytes()
        if wanted is None or wanted == current or b"test" not in wanted + current:
            continue
        text = current.decode("utf-8", "surrogateescape")
        restored = inline_tests.restore(text, wanted.decode("utf-8", "surrogateescape"))
        if restored != text:
            target.write_bytes(restored.encode("utf-8", "surrogateescape"))
            changed.append(f"restored the test items of {path}")
    return changed


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "surrogateescape")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _drop_bytecode(root: Path) -> None:
    """A planted ``.pyc`` with a forged header would run instead of a restored test."""
    for dirpath, dirnames, filenames in os.walk(root):
        if ".git" in dirnames:
            dirnames.remove(".git")
        for d in list(dirnames):
            if d == "__pycache__":
                shutil.rmtree(os.path.join(dirpath, d), ignore_errors=True)
                dirnames.remove(d)
        for f in filenames:
            if f.endswith((".pyc", ".pyo")):
                os.unlink(os.path.join(dirpath, f))


# -- run ---------------------------------------------------------------------------------------
def grade(
    shadow_root: Path,
    base_root_or_checkpoint: Path | str | DirBase | GitCheckpoint | tuple,
    target_tests: list[str],
    *,
    timeout_s: float,
    boundary: Boundary | None = None,
    python: str | None = None,
    report_dir: Path | None = None,
    command: Sequence[str] | None = None,
) -> GradeResult:
    """Synchronous form of :func:`agrade` for callers without an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(agrade(shadow_root, base_root_or_checkpoint, target_tests, timeout_s=timeout_s,
                                  boundary=boundary, python=python, report_dir=report_dir,
                                  command=command))
    raise RuntimeError("grade() was called inside a running event loop: await agrade() instead")


async def agrade(
    shadow_root: Path,
    base_root_or_checkpoint: Path | str | DirBase | GitCheckpoint | tuple,
    target_tests: list[str],
    *,
    timeout_s: float,
    boundary: Boundary | None = None,
    python: str | None = None,
    report_dir: Path | None = None,
    command: Sequence[str] | None = None,
) -> GradeResult:
    """Restore, run the target tests in a fresh process group, read the JUnit report.

    ``report_dir`` (default: a new temporary directory, left for the caller)
    receives ``report.xml`` and ``pytest.log``; it lies outside the shadow tree.
    ``command`` is the project's resolved test command (it accepts pytest's
    arguments); without it ``python -m pytest`` runs, ``python`` defaulting
    to this interpreter."""
    shadow_root = Path(shadow_root).resolve()
    if not shadow_root.is_dir():
        raise GuardError(f"the shadow tree {shadow_root} does not exist")
    targets = normalise_targets(target_tests)
    base = as_base(base_root_or_checkpoint)
    if boundary is None:
        if isinstance(base, DirBase):
            boundary = Boundary.for_repo(base.root)
        else:
            boundary = Boundary.for_files(lambda p: _text(base.read(p)))
    base_files = set(await off_loop(base.files))
    missing = [t for t in targets if t.split("::")[0] not in base_files]
    if missing:
        return GradeResult(False, reason=(
            f"target test file(s) not in the base tree: {', '.join(missing)}; "
            "a new test never counts toward verification"), kind="new-test-target")
    boundary = boundary.with_targets(t.split("::")[0] for t in targets)
    restored = await off_loop(restore_protected, shadow_root, base, boundary)  # walks both trees: off the loop
    result = await run_target_tests(shadow_root, targets, timeout_s=timeout_s, python=python, report_dir=report_dir,
                                    command=command, deps_hints=[base.root] if isinstance(base, DirBase) else [])
    result.restored = restored
    return result


async def run_target_tests(
    tree: Path,
    target_tests: list[str],
    *,
    timeout_s: float,
    python: str | None = None,
    report_dir: Path | None = None,
    command: Sequence[str] | None = None,
    deps_hints: list[Path] | tuple[Path, ...] = (),
) -> GradeResult:
    """Run pytest on ``tree`` as it is -- no restore -- and read its report.
    Only :func:`agrade` should decide success; this is the runner underneath it.
    Targets of another language go to that language's runner (``deps_hints``:
    where its dependencies may be installed, e.g. the base tree)."""
    tree = Path(tree).resolve()
    targets = normalise_targets(target_tests)
    report_dir = Path(report_dir) if report_dir else Path(tempfile.mkdtemp(prefix="ornith-grade-"))
    report_dir.mkdir(parents=True, exist_ok=True)
    if (language := language_of_ids(targets)) != "python":
        return await grade_project(tree, targets, language, timeout_s=timeout_s, report_dir=report_dir,
                                   deps_hints=deps_hints)
    report = report_dir / "report.xml"
    log_path = report_dir / "pytest.log"
    if report.exists():
        report.unlink()
    prefix = list(command) if command else [python or sys.executable, "-m", "pytest"]
    argv = [*prefix, "-p", "no:cacheprovider", f"--junitxml={report}",
            "-o", "junit_family=xunit1", f"--rootdir={tree}", f"--confcutdir={tree}", "-q"]
    if not _has_config(tree, targets):
        empty = report_dir / "pytest.ini"
        empty.write_text("[pytest]\n")
        argv += ["-c", str(empty)]
    argv += targets
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    run = await procs.run(argv, tree, timeout_s, env=env, log_path=log_path)
    result = read_report(report, targets, None if run.timed_out else run.returncode, tree)
    result.log_path = log_path
    result.report_path = report if report.exists() else None
    if run.timed_out:
        result.passed = False
        result.kind = "timeout"
        result.reason = f"the target tests did not finish within {timeout_s:g} s"
    if not result.passed and result.kind in ("no-report", "timeout"):
        # the log's "=== time $ argv" header is ours, not the runner's
        tail = [ln for ln in procs.tail(log_path, 8).splitlines() if ln.strip() and not ln.startswith("=== ")]
        if tail:
            result.reason += f"; the runner's last output: {' | '.join(tail[-4:])[:400]}"
    return result


def _has_config(root: Path, targets: list[str]) -> bool:
    """Without any config file between the tests and the root, pytest would keep
    looking in the directories *above* the shadow tree; an empty ini stops it."""
    dirs: set[Path] = {root}
    for t in targets:
        d = (root / t.split("::")[0]).parent
        while d != root and root in d.parents:
            dirs.add(d)
            d = d.parent
    return any((d / name).is_file() for d in dirs for name in CONFIG_CANDIDATES)


def read_report(report: Path, targets: list[str], exit_code: int | None, tree: Path | None = None) -> GradeResult:
    """Turn pytest's JUnit XML (xunit1 family) into a verdict on the target tests;
    ``tree`` is where they ran (default: the report's directory)."""
    if not report.is_file():
        return GradeResult(False, exit_code=exit_code, kind="no-report", reason=(
            f"the test process ended (exit code {exit_code}) without writing pytest's report; "
            "a hard exit such as os._exit from the code under test gives exactly this"))
    try:
        junit = read_junit(report.read_text("utf-8", "replace"), tree or report.parent)
    except ValueError as exc:
        return GradeResult(False, exit_code=exit_code, kind="no-report", reason=f"pytest's report is unreadable ({exc})")
    summary_found = junit.summary_found
    outcomes = {r.node_id: "xfailed" if r.xfailed else r.outcome for r in junit.results}
    ran, failed, skipped, absent = [], [], [], []
    for target in targets:
        matched = {n: o for n, o in outcomes.items() if _selects(target, n)}
        if not matched:
            absent.append(target)
        for node, outcome in matched.items():
            if outcome == "passed":
                ran.append(node)
            elif outcome in ("failed", "error"):
                failed.append(node)
            else:
                skipped.append(f"{node} ({outcome})")
    result = GradeResult(False, ran, failed, skipped, summary_found, exit_code=exit_code)
    if not summary_found:
        result.kind, result.reason = "no-report", "pytest's report has no summary"
    elif absent:
        result.kind = "tests-deselected"
        result.reason = f"target test(s) did not run (deselected, uncollectable or missing): {', '.join(absent)}"
    elif failed:
        result.kind, result.reason = "tests-failed", f"target test(s) failed: {', '.join(failed[:10])}"
    elif skipped:
        result.kind, result.reason = "tests-skipped", f"target test(s) skipped or xfailed: {', '.join(skipped[:10])}"
    elif exit_code not in (0, 1):
        result.kind, result.reason = "tests-failed", f"pytest exited with code {exit_code} (interrupted, internal or usage error)"
    else:
        result.passed = True
        result.kind = "passed"
        result.reason = f"{len(ran)} target test(s) ran and passed"
        if exit_code == 1:
            result.reason += " (pytest exited 1 for a reason outside the target tests, e.g. a coverage threshold)"
    return result


# -- collection: which tests exist, as pytest sees them -------------------------------------
@dataclass
class Collection:
    ids: set[str] = field(default_factory=set)
    errors: set[str] = field(default_factory=set)
    ok: bool = True
    reason: str = ""


async def collect_ids(tree: Path, paths: list[str], *, timeout_s: float, python: str | None = None) -> Collection:
    """``pytest --collect-only`` on ``paths`` of ``tree``: the node ids and the files that
    failed to collect.  Imports the tests (and so the code), never runs a test."""
    tree = Path(tree).resolve()
    with tempfile.TemporaryDirectory(prefix="ornith-collect-") as tmp:
        argv = [python or sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                f"--rootdir={tree}", f"--confcutdir={tree}"]
        if not _has_config(tree, paths):
            empty = Path(tmp) / "pytest.ini"
            empty.write_text("[pytest]\n")
            argv += ["-c", str(empty)]
        argv += [p for p in paths if (tree / p).exists()]
        env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        run = await procs.run(argv, tree, timeout_s, env=env, log_path=Path(tmp) / "collect.log")
    if run.timed_out:
        return Collection(ok=False, reason=f"collection did not finish within {timeout_s:g} s")
    if run.returncode not in (0, 1, 2, 5):
        return Collection(ok=False, reason=f"pytest could not collect (exit code {run.returncode}): "
                                           + " | ".join(run.output.strip().splitlines()[-3:])[:300])
    out = Collection()
    if run.returncode == 1 and "::" not in run.output:
        return Collection(ok=False, reason="pytest could not collect: " + " | ".join(run.output.strip().splitlines()[-3:])[:300])
    for line in run.output.splitlines():
        line = line.strip()
        match = re.match(r"^(?:_+ )?ERROR(?: collecting)? (\S+)", line)
        if match:
            out.errors.add(match.group(1).split("::")[0])
        elif "::" in line and " " not in line:
            out.ids.add(line)
    return out
