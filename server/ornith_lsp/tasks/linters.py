"""Linter findings as tasks: ruff and mypy, run as the user would run them.

Both tools are optional.  A missing one is a normal situation, reported as
"not installed" in the run's ``error``, never as an exception or an empty,
reassuring list.  The parsers are pure and tolerate the noise a merged
stdout/stderr brings (warnings before the JSON, mypy's summary line).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ornith_lsp import procs
from ornith_lsp.paths import relative_path
from ornith_lsp.tasks.diagnostics import task_title
from ornith_lsp.tasks.model import Location, Task

# "pkg/mod.py:12: error: Incompatible types ...  [assignment]", column optional
_MYPY_LINE = re.compile(
    r"^(?P<path>[^:\n]+?):(?P<line>\d+):(?:(?P<col>\d+):)?(?:\d+:\d+:)? (?P<severity>error|warning|note): "
    r"(?P<message>.*?)(?:  \[(?P<code>[a-z0-9-]+)\])?$"
)


@dataclass(frozen=True)
class LintRun:
    tool: str
    tasks: list[Task] = field(default_factory=list)
    installed: bool = True
    timed_out: bool = False
    output: str = ""
    error: str | None = None


def find_tool(name: str) -> list[str] | None:
    """The argv prefix that runs ``name``: its executable on PATH, else the
    module importable by this interpreter (``python -m name``)."""
    exe = shutil.which(name)
    if exe:
        return [exe]
    if importlib.util.find_spec(name) is not None:
        return [sys.executable, "-m", name]
    return None


def _not_installed(tool: str) -> LintRun:
    return LintRun(tool, installed=False, error=f"{tool} is not installed (not on PATH, not importable by {sys.executable})")


def _cache_dir(tool: str, root: Path) -> Path:
    """A per-workspace cache outside the workspace: runs must not leave
    ``.mypy_cache`` in the user's tree, yet should stay incremental."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    return base / "ornith-lsp" / tool / key


async def run_ruff(root: Path, paths: Sequence[str] = (), *, timeout_s: float = 120) -> LintRun:
    """``ruff check`` with JSON output.  ``--no-fix`` because a project's
    ``fix = true`` would otherwise make a check rewrite the user's files."""
    prefix = find_tool("ruff")
    if prefix is None:
        return _not_installed("ruff")
    argv = [*prefix, "check", "--output-format=json", "--no-fix", "--no-cache", *(paths or ["."])]
    result = await procs.run(argv, root, timeout_s)
    if result.timed_out:
        return LintRun("ruff", timed_out=True, output=result.output, error=f"ruff did not finish within {timeout_s:g}s")
    if result.returncode not in (0, 1):
        return LintRun("ruff", output=result.output, error=f"ruff failed (exit {result.returncode})")
    try:
        tasks = parse_ruff_json(result.output, root)
    except ValueError as exc:
        return LintRun("ruff", output=result.output, error=str(exc))
    return LintRun("ruff", tasks, output=result.output)


async def run_mypy(root: Path, paths: Sequence[str] = (), *, timeout_s: float = 300) -> LintRun:
    """mypy with ``--output=json`` (mypy >= 1.11); an older mypy that rejects
    the option is asked again for its classic text, which the parser reads too."""
    prefix = find_tool("mypy")
    if prefix is None:
        return _not_installed("mypy")
    common = [
        "--no-error-summary", "--no-pretty", "--show-error-codes", "--show-column-numbers",
        f"--cache-dir={_cache_dir('mypy', root)}", *(paths or ["."]),
    ]
    result = await procs.run([*prefix, "--output=json", *common], root, timeout_s)
    if result.returncode == 2 and "unrecognized arguments: --output" in result.output:
        result = await procs.run([*prefix, *common], root, timeout_s)
    if result.timed_out:
        return LintRun("mypy", timed_out=True, output=result.output, error=f"mypy did not finish within {timeout_s:g}s")
    if result.returncode not in (0, 1):
        return LintRun("mypy", output=result.output, error=f"mypy failed (exit {result.returncode})")
    return LintRun("mypy", parse_mypy_output(result.output, root), output=result.output)


def parse_ruff_json(text: str, root: Path) -> list[Task]:
    """Tasks from ``ruff check --output-format=json``.  ruff's columns are
    already 1-based; findings outside ``root`` cannot be located and are left out."""
    findings = _json_array(text)
    tasks = []
    for item in findings:
        rel = relative_path(root, item.get("filename") or "")
        if rel is None:
            continue
        start = item.get("location") or {}
        end = item.get("end_location") or {}
        code = item.get("code") or None
        message = str(item.get("message", ""))
        tasks.append(Task(
            source="ruff",
            title=task_title("fix", f"{code}: {message}" if code else message),
            message=message,
            location=Location(path=rel, line=max(1, int(start.get("row") or 1)),
                              end_line=end.get("row"), column=start.get("column")),
            code=code,
            diagnostic_source="ruff",
        ))
    return tasks


def _json_array(text: str) -> list[dict]:
    """The JSON array in ``text``: the whole text, or the first line that
    starts one (a warning printed on stderr may precede it)."""
    stripped = text.strip()
    candidates = [stripped] + [text[m.start():] for m in re.finditer(r"^\[", text, re.MULTILINE)]
    for candidate in candidates:
        try:
            value, _ = json.JSONDecoder().raw_decode(candidate)
        except ValueError:
            continue
        if isinstance(value, list):
            return [v for v in value if isinstance(v, dict)]
    raise ValueError(f"ruff printed no JSON report: {stripped[:300]!r}")


def parse_mypy_output(text: str, root: Path) -> list[Task]:
    """Tasks from mypy's JSON lines or its classic ``file:line: error: msg  [code]``.

    JSON columns are 0-based (text ones 1-based); both become 1-based.  A
    note is a hint about the error just before it at the same place, so it is
    appended to that error's message rather than made a task of its own.
    """
    tasks: list[Task] = []
    for line in text.splitlines():
        finding = _mypy_json(line) or _mypy_text(line)
        if finding is None:
            continue
        path, lineno, column, severity, message, code = finding
        rel = relative_path(root, path)
        if rel is None:
            continue
        location = Location(path=rel, line=max(1, lineno), column=column)
        if severity == "note":
            last = tasks[-1] if tasks else None
            if last and last.location and (last.location.path, last.location.line) == (rel, location.line):
                tasks[-1] = last.model_copy(update={"message": f"{last.message}\n{message}"})
            continue
        tasks.append(Task(
            source="mypy",
            title=task_title("fix", message),
            message=message,
            location=location,
            code=code,
            diagnostic_source="mypy",
        ))
    return tasks


def _mypy_json(line: str) -> tuple[str, int, int | None, str, str, str | None] | None:
    if not line.startswith("{"):
        return None
    try:
        item = json.loads(line)
    except ValueError:
        return None
    if not isinstance(item, dict) or "file" not in item:
        return None
    message = str(item.get("message", ""))
    if item.get("hint"):
        message += "\n" + str(item["hint"])
    column = item.get("column")
    column = column + 1 if isinstance(column, int) and column >= 0 else None
    return item["file"], int(item.get("line") or 1), column, item.get("severity", "error"), message, item.get("code")


def _mypy_text(line: str) -> tuple[str, int, int | None, str, str, str | None] | None:
    match = _MYPY_LINE.match(line.rstrip())
    if match is None:
        return None
    column = int(match["col"]) if match["col"] else None
    return match["path"], int(match["line"]), column, match["severity"], match["message"], match["code"]
