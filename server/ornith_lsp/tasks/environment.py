"""Which command runs the project's tests: found, not assumed.

A project's tests import the project's dependencies, which live in the
project's own environment; ornith-lsp's interpreter is only the last resort.
The order: the explicit setting (``agent.test_command``); the project's
environment (``.venv``/``venv`` at the root, ``$VIRTUAL_ENV``, then uv,
Poetry, Hatch, PDM and tox when their files are there and the tool is
installed); a ``python3`` on ``PATH`` that can import pytest; ornith-lsp's
own interpreter when it has pytest.

A project environment that was found but cannot run the tests (its Python
does not start, it has no pytest) is an error with one line of advice, not a
reason to fall through: another interpreter would miss the project's
dependencies and turn every test into an ImportError.  A tool that is not
installed is skipped, and the resolution says so.

Poetry, Hatch and PDM keep their environments keyed by the project's path, so
``poetry run`` inside a shadow copy of the tree would find (or build) a
different one; the tool is asked once, in the real root, for its
environment's interpreter, which then runs in any copy.  uv keeps its
environment in ``.venv`` and ``uv run --project ROOT`` names it from
anywhere.  The resolution is a value (argv, source, why), computed once per
run and handed to everything that runs the tests: collection, the agent's
``run_tests`` tool and the guard's grading.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from ornith_lsp import procs

if TYPE_CHECKING:
    from ornith_lsp.settings import Settings
    from ornith_lsp.tasks.pytest_report import TestRun

Source = Literal["setting", "project-venv", "virtual-env", "uv", "poetry", "hatch", "pdm", "tox",
                 "path-python", "ornith"]
PYTEST_ARGS = ("-p", "no:cacheprovider", "-q")
PROBE_TIMEOUT_S = 30.0
TOOL_TIMEOUT_S = 60.0
SET_IT = "or set agent.test_command"
_PROBE = "import sys; print('python', sys.version.split()[0], flush=True); import pytest; print('pytest', pytest.__version__)"
_BIN = "Scripts" if os.name == "nt" else "bin"
_EXE = "python.exe" if os.name == "nt" else "python"


class TestCommand(BaseModel):
    """The command that runs the project's tests, and why it was chosen.

    ``argv`` accepts pytest's arguments.  When ``problem`` is set nothing can
    run the tests and ``argv`` is empty: the problem is the one line to show."""

    __test__ = False

    argv: list[str] = Field(default_factory=list)
    source: Source | None = None
    why: str = ""
    python: str | None = Field(default=None, description="the interpreter that runs pytest, when known")
    skipped: list[str] = Field(default_factory=list, description="candidates passed over, with the reason")
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def shown(self) -> str:
        return shlex.join(self.argv) if self.argv else "(none)"


class RunProblem(BaseModel):
    """A test run that verified nothing: why, in one line for the user."""

    kind: Literal["cannot-start", "no-pytest", "no-report", "timeout", "no-tests", "pytest-error"]
    message: str

    def line(self) -> str:
        return self.message if self.kind == "no-tests" else f"the tests could not run: {self.message}"


class Probe(BaseModel):
    """What starting an interpreter told us."""

    python: str
    starts: bool
    has_pytest: bool = False
    version: str = ""
    detail: str = ""


# -- facts -------------------------------------------------------------------------------
def _pyproject(root: Path) -> dict:
    try:
        return tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def project_tools(root: Path) -> list[tuple[str, str]]:
    """The project tools whose files are in ``root``, in resolution order,
    each with the file that gave it away."""
    tool_tables = _pyproject(root).get("tool", {})
    found = []
    for tool, files in (("uv", ("uv.lock",)), ("poetry", ("poetry.lock",)), ("hatch", ("hatch.toml",)),
                        ("pdm", ("pdm.lock",)), ("tox", ("tox.ini",))):
        hit = next((f for f in files if (root / f).is_file()), None)
        if hit is None and isinstance(tool_tables, dict) and tool in tool_tables:
            hit = f"[tool.{tool}] in pyproject.toml"
        if hit is not None:
            found.append((tool, hit))
    return found


def venv_python(env_dir: Path) -> Path:
    return env_dir / _BIN / _EXE


def python_argv(python: str) -> list[str]:
    return [python, "-m", "pytest", *PYTEST_ARGS]


async def probe(python: str, cwd: Path) -> Probe:
    """Start ``python`` and ask it for pytest: a fresh process, as the tests get."""
    try:
        run = await procs.run([python, "-c", _PROBE], cwd, PROBE_TIMEOUT_S)
    except OSError as exc:
        return Probe(python=python, starts=False, detail=exc.strerror or str(exc))
    lines = run.output.strip().splitlines()
    version = next((ln.split()[1] for ln in lines if ln.startswith("python ") and len(ln.split()) > 1), "")
    if run.timed_out:
        return Probe(python=python, starts=False, detail=f"it did not answer within {PROBE_TIMEOUT_S:g} s")
    if run.returncode == 0:
        return Probe(python=python, starts=True, has_pytest=True, version=version)
    if version:
        return Probe(python=python, starts=True, version=version, detail=(lines or [""])[-1])
    return Probe(python=python, starts=False, detail=(lines or [f"exit code {run.returncode}"])[-1][:200])


async def _ask_tool(argv: Sequence[str], root: Path) -> str | None:
    """The last line a tool prints about its environment (earlier ones are
    warnings), or None when it fails or says nothing."""
    try:
        run = await procs.run(list(argv), root, TOOL_TIMEOUT_S)
    except OSError:
        return None
    if run.timed_out or run.returncode != 0:
        return None
    lines = [ln.strip() for ln in run.output.splitlines() if ln.strip()]
    return lines[-1] if lines else None


# -- resolution ----------------------------------------------------------------------------
def _no_pytest_advice(source: Source | None, python: str | None) -> str:
    if source == "uv":
        return f"add pytest to the project (`uv add --dev pytest`) {SET_IT}"
    if source == "poetry":
        return f"add pytest to the project (`poetry add --group dev pytest`) {SET_IT}"
    if source == "pdm":
        return f"add pytest to the project (`pdm add -dG test pytest`) {SET_IT}"
    if source == "hatch":
        return f"add pytest to the environment's dependencies in the Hatch config {SET_IT}"
    if python:
        return f"run `{shlex.quote(python)} -m pip install pytest` {SET_IT}"
    return f"install pytest {SET_IT}"


def _use_env(source: Source, python: str, found: Probe, why: str, skipped: list[str]) -> TestCommand:
    """A project environment was found: it runs the tests, or it is the error."""
    if not found.starts:
        return TestCommand(source=source, python=python, why=why, skipped=skipped, problem=(
            f"{python} does not start ({found.detail}) — recreate the environment "
            f"(e.g. `python3 -m venv --clear {shlex.quote(str(Path(python).parent.parent))}` and reinstall the project) "
            f"{SET_IT}"))
    if not found.has_pytest and "No module named 'pytest'" not in found.detail:
        return TestCommand(source=source, python=python, why=why, skipped=skipped, problem=(
            f"{python} cannot import pytest ({found.detail[:200]}) — repair it "
            f"(`{shlex.quote(python)} -m pip install --force-reinstall pytest`) {SET_IT}"))
    if not found.has_pytest:
        return TestCommand(source=source, python=python, why=why, skipped=skipped,
                           problem=f"{python} has no pytest — {_no_pytest_advice(source, python)}")
    return TestCommand(argv=python_argv(python), source=source, python=python, skipped=skipped,
                       why=f"{why}; Python {found.version}")


def from_setting(setting: Sequence[str]) -> TestCommand:
    argv = list(setting)
    python = argv[0] if argv[1:3] == ["-m", "pytest"] else None
    return TestCommand(argv=argv, source="setting", python=python, why="agent.test_command is set")


async def resolve(
    root: Path,
    setting: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    own_python: str = sys.executable,
) -> TestCommand:
    """The command that runs the tests of the project at ``root``."""
    root = Path(root).resolve()
    env = os.environ if environ is None else environ
    if setting:
        return from_setting(setting)
    skipped: list[str] = []

    for name in (".venv", "venv"):
        env_dir = root / name
        if env_dir.is_dir() and ((env_dir / "pyvenv.cfg").is_file() or (env_dir / _BIN).is_dir()):
            python = str(venv_python(env_dir))
            return _use_env("project-venv", python, await probe(python, root),
                            f"the project's virtual environment {env_dir}", skipped)

    active = env.get("VIRTUAL_ENV")
    if active:
        python = str(venv_python(Path(active)))
        return _use_env("virtual-env", python, await probe(python, root),
                        f"the active virtual environment $VIRTUAL_ENV={active}", skipped)

    path = env.get("PATH", os.defpath)
    for tool, evidence in project_tools(root):
        exe = shutil.which(tool, path=path)
        if exe is None:
            skipped.append(f"{tool}: {evidence} found, but {tool} is not installed")
            continue
        if tool == "uv":
            # uv run builds .venv on its first run, so nothing is probed here
            return TestCommand(argv=[exe, "run", "--project", str(root), "python", "-m", "pytest", *PYTEST_ARGS],
                               source="uv", skipped=skipped,
                               why=f"{evidence} found and uv is installed: the tests run through `uv run`")
        if tool == "tox":
            skipped.append(f"tox: {evidence} found, but tox runs its own commands in its own environments; "
                           'to run the tests through it, set agent.test_command (e.g. ["tox", "-e", "py", "--"])')
            continue
        query = {"poetry": [exe, "env", "info", "--executable"], "hatch": [exe, "env", "find"],
                 "pdm": [exe, "info", "--python"]}[tool]
        answer = await _ask_tool(query, root)
        if tool == "hatch" and answer:
            answer = str(venv_python(Path(answer)))
        if not answer or answer in ("NA", "None") or not Path(answer).exists():
            create = {"poetry": "poetry install", "hatch": "hatch env create", "pdm": "pdm install"}[tool]
            return TestCommand(source=tool, skipped=skipped, why=f"{evidence} found and {tool} is installed",
                               problem=f"{tool} has no environment for {root} yet (`{tool} {shlex.join(query[1:])}` "
                                       f"named none) — run `{create}` {SET_IT}")
        return _use_env(tool, answer, await probe(answer, root),  # type: ignore[arg-type]
                        f"{evidence} found: {tool}'s environment (`{tool} {shlex.join(query[1:])}`)", skipped)

    python3 = shutil.which("python3", path=path)
    if python3:
        found = await probe(python3, root)
        if found.has_pytest:
            return TestCommand(argv=python_argv(python3), source="path-python", python=python3, skipped=skipped,
                               why=f"no project environment; python3 on PATH ({python3}, Python {found.version}) has pytest")
        skipped.append(f"python3 on PATH ({python3}): "
                       + ("has no pytest" if found.starts else f"does not start ({found.detail})"))
    else:
        skipped.append("python3: not on PATH")

    if own_python == sys.executable:  # this very process: no need to start another
        found = Probe(python=own_python, starts=True, has_pytest=importlib.util.find_spec("pytest") is not None,
                      version=sys.version.split()[0])
    else:
        found = await probe(own_python, root)
    if found.has_pytest:
        return TestCommand(argv=python_argv(own_python), source="ornith", python=own_python, skipped=skipped,
                           why=f"no project environment and no python3 with pytest on PATH; "
                               f"ornith-lsp's own interpreter ({own_python}) has pytest")
    skipped.append(f"ornith-lsp's own interpreter ({own_python}): has no pytest")
    return TestCommand(skipped=skipped, problem=(
        "no Python with pytest was found for this project (" + "; ".join(skipped) + ") — create the project's "
        "environment with pytest (`python3 -m venv .venv && .venv/bin/python -m pip install pytest`) " + SET_IT))


def with_command(settings: Settings, command: TestCommand) -> Settings:
    """The settings one run works with: ``agent.test_command`` set to what was resolved,
    so every part that runs the tests runs the same command."""
    agent = settings.agent.model_copy(update={"test_command": list(command.argv)})
    return settings.model_copy(update={"agent": agent})


# -- what a run says about the command ---------------------------------------------------------
def run_problem(run: TestRun, command: TestCommand, timeout_s: float) -> RunProblem | None:
    """Why a finished run verified nothing, or None when its report can be trusted.

    Pytest's exit code 5 (nothing collected) is reported apart: the command
    works, the project just has no tests for it to run."""
    shown = command.shown()
    if run.start_error:
        return RunProblem(kind="cannot-start", message=(
            f"cannot start the test command `{shown}`: {run.start_error} — install it {SET_IT}"))
    if run.timed_out:
        return RunProblem(kind="timeout", message=(
            f"the tests did not finish within {timeout_s:g} s (`{shown}`) — raise agent.test_timeout_s "
            f"or make the test command run fewer tests"))
    if not run.report_found:
        if "No module named pytest" in run.output:
            who = command.python or (command.argv[0] if command.argv else "the test command")
            return RunProblem(kind="no-pytest", message=(
                f"{who} has no pytest — {_no_pytest_advice(command.source, command.python)}"))
        last = _last_line(run.output)
        return RunProblem(kind="no-report", message=(
            f"the test command `{shown}` (exit code {run.returncode}) wrote no JUnit report"
            + (f"; its last output: {last[:200]}" if last else "")
            + " — it must run pytest and accept pytest's arguments (--junitxml), and no test may end the process; "
            + f"fix the command {SET_IT}"))
    if run.returncode == 5 and not run.results:
        return RunProblem(kind="no-tests", message=(
            f"no tests were collected: `{shown}` ran and found none, so there is nothing to verify a fix against "
            "— add tests, or point agent.test_command at them"))
    if run.returncode in (3, 4) and not run.results:
        last = _last_line(run.output)
        return RunProblem(kind="pytest-error", message=(
            f"pytest could not run the tests (exit code {run.returncode}, an internal or usage error"
            + (f": {last[:200]}" if last else "") + f") — fix the test configuration {SET_IT}"))
    return None


def _last_line(output: str) -> str:
    """The command's own last words, not the log header procs writes nor our notes."""
    for line in reversed(output.splitlines()):
        line = line.strip()
        if line and not line.startswith(("[ornith]", "=== ")):
            return line
    return ""
