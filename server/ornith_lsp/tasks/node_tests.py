"""JavaScript and TypeScript tests as tasks: ``node --test``, jest and vitest.

Which runner is the project's own ``package.json`` ``test`` script (or the
``javascript`` entry of ``agent.test_commands``); it is never run through
``npm``, whose exit code is all it would give.  Each runner writes a
machine-readable report to a file outside the tree: ``node --test`` through a
small reporter shipped here (its JUnit reporter has no file or line), jest and
vitest as their jest-compatible JSON.  The runners come from the project's
own ``node_modules``; nothing is ever installed into the user's tree.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ornith_lsp import procs
from ornith_lsp.paths import relative_path
from ornith_lsp.tasks.project import CaseResult, ProjectRun, locate, split_id
from ornith_lsp.tasks.model import Location

REPORTER = Path(__file__).resolve().parent / "node_reporter" / "ornith-reporter.mjs"
REPORT_VERSION = 1
RUNNERS = ("node", "jest", "vitest")
SUFFIXES = (".js", ".mjs", ".cjs", ".jsx", ".ts", ".mts", ".cts", ".tsx")
_FRAME = re.compile(r"(?:\(|at )(?:file://)?(?P<path>/[^\s()]+?|[\w.@/-]+\.[cm]?[jt]sx?):(?P<line>\d+):(?P<col>\d+)\)?")
_HEADER = re.compile(r"^(?P<path>/\S+\.[cm]?[jt]sx?):(?P<line>\d+)$", re.MULTILINE)
_TEST_NAME = re.compile(r"\.(test|spec)\.[cm]?[jt]sx?$")
_TEST_DIRS = {"__tests__", "test", "tests", "__mocks__"}


class NodeSetupError(Exception):
    """The project cannot be run as it stands; the message says what to do."""


def is_test_path(rel: str) -> bool:
    *dirs, name = rel.split("/")
    return bool(_TEST_NAME.search(name)) or bool(_TEST_DIRS & set(dirs))


def package_json(root: Path) -> dict | None:
    try:
        data = json.loads((root / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def classify(command: Sequence[str]) -> str | None:
    """The runner a test script or command runs: ``node`` (``node --test``), ``jest`` or ``vitest``."""
    words = [Path(w).name for w in command if "=" not in w or w.startswith("-")]
    for i, word in enumerate(words):
        if word in ("jest", "vitest"):
            return word
        if word == "node" and "--test" in words[i + 1:]:
            return "node"
    return None


def test_command(root: Path, override: Sequence[str] | None) -> tuple[str, list[str]]:
    """(runner, the script's words) or NodeSetupError saying what is missing."""
    if override:
        runner = classify(override)
        if runner is None:
            raise NodeSetupError(f"agent.test_commands.javascript {' '.join(override)!r} runs none of "
                                 f"{', '.join(RUNNERS)}; ornith-lsp reads only their reports")
        return runner, list(override)
    pkg = package_json(root)
    if pkg is None:
        raise NodeSetupError(f"{root / 'package.json'} is missing or not JSON")
    script = (pkg.get("scripts") or {}).get("test") if isinstance(pkg.get("scripts"), dict) else None
    if not isinstance(script, str) or not script.strip():
        raise NodeSetupError('package.json has no "test" script: add one that runs node --test, jest or vitest '
                             "(or set agent.test_commands.javascript)")
    words = shlex.split(script.split("&&")[-1]) if "&&" in script else shlex.split(script)
    runner = classify(words)
    if runner is None:
        raise NodeSetupError(f"the test script {script!r} runs none of {', '.join(RUNNERS)}; "
                             "set agent.test_commands.javascript to one that does")
    return runner, words


def node_modules_bin(tool: str, roots: Sequence[Path]) -> Path | None:
    for base in roots:
        exe = base / "node_modules" / ".bin" / tool
        if exe.exists():
            return exe
    return None


def dependency_roots(tree: Path, hints: Sequence[Path] = ()) -> list[Path]:
    """Where the project's ``node_modules`` may be: the tree itself, then the
    given roots and the main checkout of each (a shadow or pristine tree is
    a git worktree of the user's repository and has no ``node_modules``)."""
    out: list[Path] = []
    for candidate in (tree, *hints):
        for place in (candidate, main_checkout(candidate)):
            if place is not None and place not in out:
                out.append(place)
    return out


def main_checkout(path: Path) -> Path | None:
    """For a path inside a linked git worktree (a shadow, a pristine tree), the
    same path in the repository's main checkout, found from the ``.git`` file
    alone; None elsewhere."""
    path = Path(path).resolve()
    for top in (path, *path.parents):
        dotgit = top / ".git"
        if dotgit.is_dir():
            return None
        if dotgit.is_file():
            try:
                text = dotgit.read_text(encoding="utf-8").strip()
                gitdir = Path(text.removeprefix("gitdir:").strip())
                gitdir = gitdir if gitdir.is_absolute() else (top / gitdir)
                common = (gitdir / "commondir").read_text(encoding="utf-8").strip()
            except OSError:
                return None
            main = (gitdir / common).resolve().parent
            return main / path.relative_to(top)
    return None


def link_node_modules(tree: Path, roots: Sequence[Path]) -> Path | None:
    """In a tree without ``node_modules`` (a shadow or grading copy), a symlink
    to the user's for the length of the run: ESM imports and vite resolve
    packages only from ``node_modules`` folders above the importing file.
    Returns the link to remove afterwards; the user's own tree is never linked."""
    if (tree / "node_modules").exists() or (tree / "node_modules").is_symlink():
        return None
    source = next((r / "node_modules" for r in roots if r != tree and (r / "node_modules").is_dir()), None)
    if source is None:
        return None
    link = tree / "node_modules"
    try:
        link.symlink_to(source.resolve(), target_is_directory=True)
    except OSError:
        return None
    return link


def build_argv(runner: str, words: list[str], report: Path, files: Sequence[str], roots: Sequence[Path]
               ) -> list[str]:
    if runner == "node":
        node = shutil.which("node")
        if node is None:
            raise NodeSetupError("node is not installed (not on PATH)")
        start = words.index("--test") + 1 if "--test" in words else len(words)
        flags = [w for w in words[1:start - 1] if w.startswith("-")]
        script_args = [w for w in words[start:] if not w.startswith("--test-reporter")]
        return [node, *flags, "--test", f"--test-reporter={REPORTER}", f"--test-reporter-destination={report}",
                *(files or script_args)]
    exe = node_modules_bin(runner, roots)
    if exe is None:
        raise NodeSetupError(f"node_modules is missing (no node_modules/.bin/{runner} in {roots[0]}): run "
                             "`npm install` there first; ornith-lsp never installs into your tree")
    start = next((i + 1 for i, w in enumerate(words) if Path(w).name == runner), len(words))
    extra = [w for w in words[start:] if w not in ("run", "watch", "--watch", "--watchAll") and not w.startswith(
        ("--reporter", "--json", "--outputFile", "--coverage"))]
    if runner == "jest":
        return [str(exe), *extra, "--json", f"--outputFile={report}", "--testLocationInResults", "--ci",
                "--watchAll=false", *(["--runTestsByPath", *files] if files else [])]
    return [str(exe), "run", *extra, "--reporter=json", f"--outputFile={report}", *files]


async def run_tests(tree: Path, *, node_ids: Sequence[str] = (), timeout_s: float = 300,
                    command: Sequence[str] | None = None, deps_hints: Sequence[Path] = ()) -> ProjectRun:
    tree = Path(tree)
    try:
        runner, words = test_command(tree, command)
        roots = dependency_roots(tree, deps_hints)
        files = list(dict.fromkeys(split_id(n)[0] for n in node_ids))
        with tempfile.TemporaryDirectory(prefix="ornith-node-") as tmp:
            report = Path(tmp) / ("report.jsonl" if runner == "node" else "report.json")
            argv = build_argv(runner, words, report, files, roots)
            env = {**os.environ, "CI": "1", "FORCE_COLOR": "0", "NO_COLOR": "1"}
            link = link_node_modules(tree, roots)
            try:
                result = await procs.run(argv, tree, timeout_s, env=env)
            except OSError as exc:
                raise NodeSetupError(f"cannot start {argv[0]!r}: {exc}") from None
            finally:
                if link is not None:
                    link.unlink(missing_ok=True)
            text = report.read_text("utf-8", "replace") if report.is_file() else None
    except NodeSetupError as exc:
        return ProjectRun("javascript", note=str(exc), output=str(exc))
    run = ProjectRun("javascript", timed_out=result.timed_out, output=result.output, returncode=result.returncode)
    if text is None or not text.strip():
        note = (f"{runner} wrote no report (exit {result.returncode}): "
                + (result.output.strip().splitlines() or ["no output"])[-1][:300])
        return replace(run, note=note)
    try:
        cases = parse_node_report(text, tree) if runner == "node" else parse_jest_json(text, tree)
    except ValueError as exc:
        return replace(run, note=f"the {runner} report is unreadable: {exc}")
    return replace(run, results=cases, report_found=True)


def _frames(stack: str) -> list[tuple[str, int]]:
    """Frames innermost first; a load error's ``/abs/file.js:12`` header line
    (a syntax error names its place this way, without a column) comes first."""
    frames = [(m["path"], int(m["line"])) for m in _HEADER.finditer(stack)]
    return frames + [(m["path"], int(m["line"])) for m in _FRAME.finditer(stack) if not m["path"].startswith("node:")]


def _case(root: Path, file_abs: str, names: list[str], outcome: str, message: str, stack: str,
          line: int | None) -> CaseResult:
    rel = relative_path(root, file_abs) or file_abs
    node_id = "::".join([rel, *names])
    location = test_location = None
    if outcome in ("failed", "error"):
        code, test = locate(_frames(stack), root, lambda p: p == rel or is_test_path(p))
        own = Location(path=rel, line=line) if line else None
        location, test_location = code, test or own
    return CaseResult(node_id, outcome, message.strip(), stack, location, test_location)  # type: ignore[arg-type]


def parse_node_report(text: str, root: Path) -> list[CaseResult]:
    """The JSON lines of ``ornith-reporter.mjs``; ValueError on another format or version."""
    events = []
    for line in text.splitlines():
        if line.strip():
            try:
                events.append(json.loads(line))
            except ValueError as exc:
                raise ValueError(f"not JSON lines ({exc})") from None
    head = events[0] if events else {}
    if head.get("format") != "ornith-node-test" or head.get("version") != REPORT_VERSION:
        raise ValueError(f"expected report format ornith-node-test version {REPORT_VERSION}, got {head!r:.200}")
    if not events or events[-1].get("event") != "end":
        raise ValueError("the report ends early: the test process was killed or exited during the run")
    done = [e for e in events if e.get("event") in ("test:pass", "test:fail")]
    failing_parents = {(e["file"], *e["ancestors"]) for e in done if e["event"] == "test:fail"}
    out = []
    for e in done:
        if e["suite"] and (e["event"] == "test:pass" or (e["file"], *e["ancestors"], e["name"]) in failing_parents):
            continue  # a suite passes or fails through its tests
        outcome = "skipped" if e["skip"] or e["todo"] else "passed" if e["event"] == "test:pass" else "failed"
        file_level = e["name"] == e["file"] or (e["file"] and e["name"].endswith(e["file"]))
        names = [] if file_level else [*e["ancestors"], e["name"]]
        message, stack = e.get("message", ""), e.get("stack", "")
        if file_level and e.get("stderr"):  # the file did not load: its stderr holds the error and where
            message, stack = e["stderr"].strip(), e["stderr"] + "\n" + stack
        out.append(_case(root, e["file"] or e["name"], names, outcome, message, stack, e.get("line")))
    return out


def parse_jest_json(text: str, root: Path) -> list[CaseResult]:
    """jest's ``--json`` report, which vitest's json reporter also writes."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("testResults"), list):
        raise ValueError("no testResults list: not a jest-compatible JSON report")
    out = []
    status_map = {"passed": "passed", "failed": "failed", "pending": "skipped", "skipped": "skipped",
                  "todo": "skipped", "disabled": "skipped", "focused": "passed"}
    for suite in data["testResults"]:
        file = str(suite.get("name") or suite.get("testFilePath") or "")
        cases = suite.get("assertionResults") or []
        if not cases and suite.get("status") == "failed":
            message = str(suite.get("message") or suite.get("failureMessage") or "the test file failed to run")
            out.append(_case(root, file, [], "error", message, message, None))
            continue
        for case in cases:
            outcome = status_map.get(str(case.get("status")), "failed")
            failure = "\n".join(str(m) for m in case.get("failureMessages") or [])
            location = case.get("location") or {}
            names = [str(x) for x in case.get("ancestorTitles") or []] + [str(case.get("title", ""))]
            out.append(_case(root, file, names, outcome, failure.split("\n    at ")[0], failure,
                             location.get("line") if isinstance(location, dict) else None))
    return out
