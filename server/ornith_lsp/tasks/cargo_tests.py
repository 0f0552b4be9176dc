"""Rust tests as tasks: ``cargo test``, read from what is stable.

libtest's machine-readable output (``--format json``) needs a nightly
toolchain, so the reader takes the two stable sources cargo offers: the
``--message-format=json`` messages (compiler errors at their spans, and which
source file each test binary was built from) and libtest's own lines
(``test NAME ... ok``, the ``---- NAME stdout ----`` blocks, one
``test result:`` summary per binary), read line by line so that a test's
output or a new libtest wording cannot derail the rest.  A binary that
started but printed no summary ended early (an ``exit`` in the code, a
crash) and is reported as such.  Builds go to a target directory outside the
tree, shared between the user's tree, the shadow and the grader's copies.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ornith_lsp import procs
from ornith_lsp.paths import relative_path
from ornith_lsp.tasks.model import Location, Task
from ornith_lsp.tasks.project import CaseResult, ProjectRun, build_task

_RUNNING = re.compile(r"^\s*Running (?:unittests )?(?P<src>\S+) \((?P<exe>[^)]+)\)\s*$")
_DOCTESTS = re.compile(r"^\s*Doc-tests (?P<crate>\S+)\s*$")
_TEST_LINE = re.compile(r"^test (?P<name>.+?) \.\.\. (?P<status>ok|FAILED|ignored\b.*)$")
_BLOCK = re.compile(r"^---- (?P<name>.+?) std(?:out|err) ----$")
_RESULT = re.compile(r"^test result: (?:ok|FAILED)\.")
_PANIC_NEW = re.compile(r"panicked at (?P<path>[^\s:']+\.rs):(?P<line>\d+):(?P<col>\d+):?\s*$")
_PANIC_OLD = re.compile(r"panicked at '(?P<msg>.*)', (?P<path>[^\s:]+\.rs):(?P<line>\d+):(?P<col>\d+)")
_FRAME = re.compile(r"^\s*\d+: (?P<fn>\S+)\s*\n\s+at (?P<path>\S+?\.rs):(?P<line>\d+)(?::\d+)?", re.MULTILINE)


def is_test_path(rel: str) -> bool:
    parts = rel.split("/")
    return bool({"tests", "benches"} & set(parts[:-1]))


def target_dir(root: Path) -> Path:
    """Where builds go: ``$CARGO_TARGET_DIR`` if the user set one, else a cache
    per package name, so the shadow and grading copies reuse the user's build
    of the dependencies and no ``target/`` ever lands in the tree.

    Sharing needs care: cargo decides freshness of a path package by source
    file mtimes relative to the package root, so a binary built from another
    tree (the agent's shadow, already fixed) would pass for this one's.  Each
    run therefore cleans the project's own packages first (``clean_own``);
    dependencies stay built."""
    if os.environ.get("CARGO_TARGET_DIR"):
        return Path(os.environ["CARGO_TARGET_DIR"])
    try:
        manifest = tomllib.loads((root / "Cargo.toml").read_text(encoding="utf-8"))
        name = str((manifest.get("package") or {}).get("name") or "workspace")
    except (OSError, tomllib.TOMLDecodeError):
        name = "unknown"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ornith-lsp" / "cargo-target" / f"{name}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def own_packages(root: Path) -> list[str]:
    """The package names of the project's own crates (the root package and its
    workspace members), which ``cargo clean -p`` removes before a run."""
    names: list[str] = []
    try:
        manifest = tomllib.loads((root / "Cargo.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return names
    if isinstance(manifest.get("package"), dict) and manifest["package"].get("name"):
        names.append(str(manifest["package"]["name"]))
    members = (manifest.get("workspace") or {}).get("members") or []
    for pattern in members if isinstance(members, list) else []:
        for member in sorted(root.glob(str(pattern))):
            try:
                sub = tomllib.loads((member / "Cargo.toml").read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError):
                continue
            name = (sub.get("package") or {}).get("name")
            if name and name not in names:
                names.append(str(name))
    return names


async def clean_own(cargo: str, root: Path, env: dict[str, str], timeout_s: float) -> None:
    names = own_packages(root)
    if names:
        await procs.run([cargo, "clean", *[a for n in names for a in ("-p", n)]], root, min(timeout_s, 120), env=env)


async def run_tests(root: Path, *, node_ids: Sequence[str] = (), timeout_s: float = 600,
                    command: Sequence[str] | None = None) -> ProjectRun:
    cargo = shutil.which("cargo")
    if not command and cargo is None:
        return ProjectRun("rust", note="cargo is not installed (not on PATH): install a Rust toolchain to run these tests")
    if (command and "nextest" in command) or (not command and shutil.which("cargo-nextest")):
        return await run_nextest(root, timeout_s=timeout_s, command=command, cargo=cargo or "cargo")
    argv = [*(command or [cargo or "cargo", "test"]), "--no-fail-fast", "--message-format=json"]
    env = {**os.environ, "CARGO_TARGET_DIR": str(target_dir(root)), "CARGO_TERM_COLOR": "never",
           "RUST_BACKTRACE": "1"}
    lockfile = root / "Cargo.lock"
    had_lockfile = lockfile.exists()
    try:
        await clean_own(cargo or argv[0], root, env, timeout_s)
        result = await procs.run(argv, root, timeout_s, env=env)
    except OSError as exc:
        return ProjectRun("rust", note=f"cannot start {argv[0]!r}: {exc}")
    finally:
        if not had_lockfile:  # cargo writes one; a run must leave the tree as it found it
            lockfile.unlink(missing_ok=True)
    run = parse_output(result.output, root)
    note = run.note
    if result.timed_out:
        note = f"cargo test did not finish within {timeout_s:g}s and was killed"
    return ProjectRun("rust", run.results, run.build_tasks, run.report_found, result.timed_out, result.output,
                      result.returncode, note)


@dataclass
class _Binary:
    src: str
    package_dir: Path
    results: dict[str, str] = field(default_factory=dict)
    blocks: dict[str, list[str]] = field(default_factory=dict)
    summary: bool = False


def parse_output(text: str, root: Path) -> ProjectRun:
    """Cases and compiler errors from ``cargo test --message-format=json`` output."""
    executables: dict[str, tuple[str, Path]] = {}
    build_tasks: list[Task] = []
    build_failed = False
    binaries: list[_Binary] = []
    current: _Binary | None = None
    block: list[str] | None = None
    for line in text.splitlines():
        message = _cargo_message(line)
        if message is not None:
            reason = message.get("reason")
            if reason == "compiler-message":
                task = _compiler_task(message, root)
                if task is not None and task.id not in {t.id for t in build_tasks}:
                    build_tasks.append(task)
            elif reason == "compiler-artifact" and message.get("executable") and (message.get("profile") or {}).get("test"):
                manifest_dir = Path(str(message.get("manifest_path", root / "Cargo.toml"))).parent
                src = str((message.get("target") or {}).get("src_path") or "")
                executables[str(message["executable"])] = (src, manifest_dir)
            elif reason == "build-finished" and message.get("success") is False:
                build_failed = True
            continue
        if (m := _RUNNING.match(line)) is not None:
            src, package_dir = executables.get(m["exe"], (m["src"], root))
            if not Path(src).is_absolute():
                src = str(package_dir / src)
            current, block = _Binary(src, package_dir), None
            binaries.append(current)
        elif (m := _DOCTESTS.match(line)) is not None:
            current, block = _Binary("", root), None
            binaries.append(current)
        elif current is None:
            continue
        elif (m := _TEST_LINE.match(line)) is not None and block is None:
            status = m["status"]
            current.results[m["name"]] = "passed" if status == "ok" else "failed" if status == "FAILED" else "skipped"
        elif (m := _BLOCK.match(line)) is not None:
            block = current.blocks.setdefault(m["name"], [])
        elif line.strip() == "failures:" or line.startswith("successes:"):
            block = None
        elif _RESULT.match(line):
            current.summary, block = True, None
        elif block is not None:
            block.append(line)
    cases: list[CaseResult] = []
    for binary in binaries:
        for name, outcome in binary.results.items():
            cases.append(_case(root, binary, name, outcome))
        if not binary.summary and binary.src:
            rel = relative_path(root, binary.src) or binary.src
            cases.append(CaseResult(f"{rel}::(test binary)", "error",
                                    f"the test binary built from {rel} ended without libtest's summary: "
                                    "the process exited or crashed during the run"))
    found = any(b.summary for b in binaries)
    note = ""
    if build_failed and not build_tasks:
        note = "cargo could not build the tests: " + (text.strip().splitlines() or ["no output"])[-1][:300]
    elif not binaries and not build_failed:
        note = "cargo test ran no test binary: " + (text.strip().splitlines() or ["no output"])[-1][:300]
    return ProjectRun("rust", cases, build_tasks, found and not build_failed, note=note)


def _cargo_message(line: str) -> dict | None:
    if not line.startswith('{"reason":'):
        return None
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _compiler_task(message: dict, root: Path) -> Task | None:
    diag = message.get("message") or {}
    if diag.get("level") not in ("error", "error: internal compiler error"):
        return None
    spans = [s for s in diag.get("spans") or [] if s.get("is_primary")]
    if not spans:
        return None
    span = spans[0]
    manifest_dir = Path(str(message.get("manifest_path", root / "Cargo.toml"))).parent
    code = (diag.get("code") or {}).get("code") if isinstance(diag.get("code"), dict) else None
    text = str(diag.get("rendered") or diag.get("message") or "")
    path = str(span.get("file_name", ""))
    base = root if (root / path).is_file() else manifest_dir
    return build_task("cargo build", root, path, int(span.get("line_start") or 1), span.get("column_start"),
                      str(diag.get("message") or text) + ("\n" + text if text else ""), code, base=base)


def _case(root: Path, binary: _Binary, name: str, outcome: str) -> CaseResult:
    if binary.src:
        rel = relative_path(root, binary.src) or binary.src
        node_id = f"{rel}::{name}"
    else:  # doc-tests name their file: "src/lib.rs - add (line 3)"
        file = name.split(" - ")[0].strip()
        rel = relative_path(root, binary.package_dir / file) or file
        node_id = f"{rel}::{name}"
    if outcome != "failed":
        return CaseResult(node_id, outcome)  # type: ignore[arg-type]
    text = "\n".join(binary.blocks.get(name, []))
    panic_at = None
    message_lines: list[str] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if (m := _PANIC_NEW.search(line)) is not None:
            panic_at = (m["path"], int(m["line"]))
            message_lines = []
            for x in lines[i + 1:i + 12]:
                if x.startswith(("stack backtrace", "note:")) or re.match(r"^\s+\d+: ", x):
                    break
                if x.strip():
                    message_lines.append(x)
            break
        if (m := _PANIC_OLD.search(line)) is not None:
            panic_at = (m["path"], int(m["line"]))
            message_lines = [m["msg"]]
            break
    code = test = None
    short = name.rsplit("::", 1)[-1]
    for m in _FRAME.finditer(text):
        where = _located(root, binary.package_dir, m["path"], int(m["line"]))
        if where is None:
            continue
        fn = m["fn"]
        if "::tests::" in fn or fn.endswith("::" + short) or is_test_path(where.path):
            test = test or where
        else:
            code = code or where
    at_panic = _located(root, binary.package_dir, *panic_at) if panic_at else None
    if at_panic is not None:
        if test is None and (is_test_path(at_panic.path) or code is not None):
            test = at_panic
        elif code is None and test is not None and at_panic != test:
            code = at_panic
        elif test is None:
            test = at_panic
    message = "\n".join(message_lines) or (text.strip().splitlines() or [f"{name} failed"])[0]
    return CaseResult(node_id, "failed", message, text[-4000:], code, test)


def _located(root: Path, package_dir: Path, path: str, line: int) -> Location | None:
    candidate = Path(path)
    if not candidate.is_absolute():  # rustc names files from the workspace root, the test binary from its package
        candidate = next((base / candidate for base in (root, package_dir) if (base / candidate).is_file()),
                         package_dir / candidate)
    rel = relative_path(root, os.path.normpath(candidate))
    if rel is None or ".cargo" in rel.split("/"):
        return None
    return Location(path=rel, line=max(1, line))


# -- cargo-nextest -------------------------------------------------------------------------------
NEXTEST_CONFIG = """\
[store]
dir = {store}

[profile.ornith]
fail-fast = false

[profile.ornith.junit]
path = "junit.xml"
store-success-output = true
store-failure-output = true
"""


async def run_nextest(root: Path, *, timeout_s: float, command: Sequence[str] | None, cargo: str) -> ProjectRun:
    """``cargo nextest run`` with its JUnit report, when cargo-nextest is installed.

    The profile comes from a tool config file outside the tree (the user's own
    ``.config/nextest.toml`` still wins), and the store, where the report is
    written, is a temporary directory.  nextest runs each test in its own
    process and counts exit code 0 as a pass, so a passing case must also
    show libtest's own ``test result: ok`` line: a test whose process exited
    early (``std::process::exit(0)`` in the code under test) did not pass."""
    env = {**os.environ, "CARGO_TARGET_DIR": str(target_dir(root)), "CARGO_TERM_COLOR": "never", "RUST_BACKTRACE": "1"}
    lockfile = root / "Cargo.lock"
    had_lockfile = lockfile.exists()
    with tempfile.TemporaryDirectory(prefix="ornith-nextest-") as tmp:
        config = Path(tmp) / "nextest.toml"
        config.write_text(NEXTEST_CONFIG.format(store=json.dumps(str(Path(tmp) / "store"))), encoding="utf-8")
        argv = [*(command or [cargo, "nextest", "run"]), "--profile", "ornith", "--tool-config-file",
                f"ornith:{config}", "--no-fail-fast", "--cargo-message-format", "json"]
        try:
            await clean_own(cargo, root, env, timeout_s)
            result = await procs.run(argv, root, timeout_s, env=env)
        except OSError as exc:
            return ProjectRun("rust", note=f"cannot start {argv[0]!r}: {exc}")
        finally:
            if not had_lockfile:
                lockfile.unlink(missing_ok=True)
        junit = Path(tmp) / "store" / "ornith" / "junit.xml"
        text = junit.read_text("utf-8", "replace") if junit.is_file() else None
    build = parse_output(result.output, root)
    base = ProjectRun("rust", build_tasks=build.build_tasks, timed_out=result.timed_out, output=result.output,
                      returncode=result.returncode)
    if result.timed_out:
        return replace(base, note=f"cargo nextest did not finish within {timeout_s:g}s and was killed")
    if text is None:
        if build.build_tasks:
            return base
        tail = (result.output.strip().splitlines() or ["no output"])[-1][:300]
        return replace(base, note=f"cargo nextest wrote no JUnit report (exit {result.returncode}): {tail}")
    try:
        cases = parse_nextest_junit(text, root, binary_sources(result.output, root))
    except ValueError as exc:
        return replace(base, note=f"the nextest JUnit report is unreadable: {exc}")
    return replace(base, results=cases, report_found=True)


def binary_sources(text: str, root: Path) -> dict[str, tuple[str, Path]]:
    """nextest's binary id (``calc``, ``calc::api``, ``calc::bin/tool``) -> (source
    file, package directory), from cargo's ``compiler-artifact`` messages."""
    out: dict[str, tuple[str, Path]] = {}
    names: dict[str, str] = {}
    for line in text.splitlines():
        message = _cargo_message(line)
        if message is None or message.get("reason") != "compiler-artifact" or not (message.get("profile") or {}).get("test"):
            continue
        manifest = str(message.get("manifest_path", ""))
        if manifest not in names:
            try:
                names[manifest] = str(tomllib.loads(Path(manifest).read_text(encoding="utf-8"))["package"]["name"])
            except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
                names[manifest] = ""
        target = message.get("target") or {}
        kind = (target.get("kind") or ["lib"])[0]
        package = names[manifest]
        binary = package if kind in ("lib", "rlib", "proc-macro", "cdylib", "dylib", "staticlib") else (
            f"{package}::{target.get('name')}" if kind == "test" else f"{package}::{kind}/{target.get('name')}")
        out[binary] = (str(target.get("src_path") or ""), Path(manifest).parent)
    return out


def parse_nextest_junit(text: str, root: Path, sources: dict[str, tuple[str, Path]]) -> list[CaseResult]:
    try:
        tree = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"not a JUnit XML report: {exc}") from None
    if tree.tag != "testsuites":
        raise ValueError(f"unexpected root element <{tree.tag}>")
    cases: list[CaseResult] = []
    for suite in tree.iter("testsuite"):
        src, package_dir = sources.get(suite.get("name", ""), ("", root))
        if not src:
            src = str(package_dir / "src" / "lib.rs")
        binary = _Binary(src, package_dir)
        for case in suite.iter("testcase"):
            name = case.get("name", "")
            failure = case.find("failure")
            failure = failure if failure is not None else case.find("error")
            out = (case.findtext("system-out") or "")
            err = (case.findtext("system-err") or "")
            if case.find("skipped") is not None:
                binary.results[name] = "skipped"
            elif failure is not None:
                binary.results[name] = "failed"
                binary.blocks[name] = ((failure.text or "") + "\n" + err).splitlines()
            elif "test result: ok" not in out:
                rel = relative_path(root, src) or src
                cases.append(CaseResult(f"{rel}::{name}", "error", f"{name} exited before libtest reported a result "
                                        "(an exit from the code under test?)", out[-2000:]))
                continue
            else:
                binary.results[name] = "passed"
        cases += [_case(root, binary, name, outcome) for name, outcome in binary.results.items()]
    return cases
