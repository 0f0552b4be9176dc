"""Which test runner a project uses, and running it: the one dispatch by language.

A language is a row of ``RUNNERS``: how to recognise the project, which suffix
its test files carry (a task's test id starts with its test file, so the id
alone says which runner re-runs it), and the reader that runs the tests.
Python keeps its own path (``pytest_report``); the others return a
:class:`~ornith_lsp.tasks.project.ProjectRun`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ornith_lsp.tasks import cargo_tests, go_tests, node_tests, polyglot_linters
from ornith_lsp.tasks.model import Task
from ornith_lsp.tasks.project import ProjectRun, split_id, tasks_from_cases

PYTHON_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", "pytest.ini", "tox.ini")


class TestsCannotRun(Exception):
    """The project's tests could not run at all; the message says what to do."""

    __test__ = False


@dataclass(frozen=True)
class Runner:
    language: str
    markers: tuple[str, ...]
    suffixes: tuple[str, ...]
    run: Callable[..., Awaitable[ProjectRun]]
    takes_deps: bool = False


RUNNERS = (
    Runner("rust", ("Cargo.toml",), (".rs",), cargo_tests.run_tests),
    Runner("go", ("go.mod",), (".go",), go_tests.run_tests),
    Runner("javascript", ("package.json",), node_tests.SUFFIXES, node_tests.run_tests, takes_deps=True),
)
BY_LANGUAGE = {r.language: r for r in RUNNERS}


def detect(root: Path, setting: str = "auto") -> str:
    """``python``, ``javascript``, ``go`` or ``rust``.  A Python project marker
    wins over the others, so a Python package with a ``package.json`` for its
    docs keeps running pytest; ``agent.language`` settles any other mix."""
    if setting != "auto":
        return setting
    if any((root / m).is_file() for m in PYTHON_MARKERS):
        return "python"
    for runner in RUNNERS:
        if any((root / m).is_file() for m in runner.markers):
            if runner.language == "javascript" and _python_tests_without_js_script(root):
                return "python"
            return runner.language
    return "python"


def _python_tests_without_js_script(root: Path) -> bool:
    """A ``package.json`` with no test script beside Python tests is a Python
    project's front-end tooling, not a JavaScript test suite."""
    pkg = node_tests.package_json(root) or {}
    scripts = s if isinstance(s := pkg.get("scripts"), dict) else {}
    if scripts.get("test"):
        return False
    return any(root.glob("test_*.py")) or any(root.glob("*_test.py")) or (root / "tests").is_dir() and any(
        (root / "tests").glob("test_*.py"))


def language_of_id(node_id: str) -> str:
    """The language a test id belongs to, from its test file's suffix."""
    file = split_id(node_id)[0]
    for runner in RUNNERS:
        if file.endswith(runner.suffixes):
            return runner.language
    if file.endswith(".go") or "_test.go" in file:
        return "go"
    return "python"


def language_of_ids(node_ids: Sequence[str]) -> str:
    languages = {language_of_id(n) for n in node_ids}
    return languages.pop() if len(languages) == 1 else "python"


TOOLS = {"go": ("go",), "rust": ("cargo",), "javascript": ("node", "jest", "vitest", "npx")}


def command_for(language: str, agent: object) -> list[str] | None:
    """The test command set for ``language``: its ``agent.test_commands`` entry,
    else ``agent.test_command`` (``--tests``) when it runs that language's tool."""
    own = agent.test_commands.get(language)  # type: ignore[attr-defined]
    if own:
        return list(own)
    general = agent.test_command  # type: ignore[attr-defined]
    if general and Path(general[0]).name in TOOLS.get(language, ()):
        return list(general)
    return None


async def run_project_tests(root: Path, language: str, *, node_ids: Sequence[str] = (), timeout_s: float = 300,
                            command: Sequence[str] | None = None, deps_hints: Sequence[Path] = ()) -> ProjectRun:
    runner = BY_LANGUAGE[language]
    extra = {"deps_hints": deps_hints} if runner.takes_deps else {}
    return await runner.run(Path(root), node_ids=node_ids, timeout_s=timeout_s, command=command or None, **extra)


async def collect(root: Path, settings: object, diagnostics: Sequence[str], progress: Callable[[str], None]
                  ) -> tuple[list[Task], list[str], list[str]] | None:
    """Tasks, baseline and notes for a non-Python project; None for a Python one.

    Raises TestsCannotRun when the runner produced nothing to believe and no
    build error to fix: "0 tasks" must never stand for "could not run"."""
    agent = settings.agent  # type: ignore[attr-defined]
    language = detect(root, agent.language)
    if language == "python":
        return None
    progress(f"running the {language} tests ...")
    run = await run_project_tests(root, language, timeout_s=agent.test_timeout_s,
                                  command=command_for(language, agent))
    notes = [run.note] if run.note else []
    if run.timed_out and not run.note:
        notes.append(f"the {language} tests timed out after {agent.test_timeout_s:.0f} s")
    if run.could_not_run:
        raise TestsCannotRun(f"the {language} tests could not run: {run.note or 'no report was written'}")
    tasks = run.build_tasks + tasks_from_cases(run.results)
    baseline = [r.node_id for r in run.results if r.outcome == "passed"]
    for name in diagnostics:
        progress(f"running {name} ...")
        lint = await polyglot_linters.run(name, root)
        if lint.error:
            notes.append(lint.error)
        tasks += lint.tasks
    unique = list({t.id: t for t in tasks}.values())  # go vet repeats the build errors go test gave
    return unique, baseline, notes


async def check_tests(root: Path, task: Task, settings: object) -> tuple[bool, str] | None:
    """The agent's ``run_tests`` for a task of another language: (passed, what
    to tell the model); None for a Python task."""
    agent = settings.agent  # type: ignore[attr-defined]
    language = language_of_id(task.test_id) if task.test_id else detect(root, agent.language)
    if language == "python":
        return None
    run = await run_project_tests(root, language, node_ids=[task.test_id] if task.test_id else [],
                                  timeout_s=agent.test_timeout_s, command=command_for(language, agent))
    if run.timed_out:
        return False, f"the tests timed out after {agent.test_timeout_s:.0f} s"
    if run.build_tasks:
        shown = "\n".join(f"{t.location.path}:{t.location.line}: {t.message.splitlines()[0]}"
                          for t in run.build_tasks[:5] if t.location)
        return False, f"the build failed:\n{shown}"
    if not run.report_found:
        return False, f"the test run wrote no report: {run.note or run.output[-500:]}"
    wanted = [r for r in run.results if task.test_id and (r.node_id == task.test_id
                                                          or r.node_id.startswith(task.test_id + "::"))]
    considered = wanted if task.test_id else run.results
    failed = [r for r in considered if r.outcome in ("failed", "error")]
    passed = [r for r in considered if r.outcome == "passed"]
    head = f"{len(passed)} passed, {len(failed)} failed"
    if task.test_id and not wanted:
        return False, f"{task.test_id} did not run (skipped, renamed or the run ended early)"
    if not failed and passed:
        return True, head
    detail = "\n".join(f"{r.node_id}: {r.message}\n{r.traceback[-800:]}" for r in failed[:2])
    return False, f"{head}\n{detail}"
