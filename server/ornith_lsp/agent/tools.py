"""The tools the model calls, all confined to the shadow workspace.

Every refusal is a sentence the model can act on (which path, which rule,
what to do instead), because the model's next turn is the only place a
refusal can be corrected.  Paths are relative to the project folder; nothing
outside the shadow tree is ever read or written.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ornith_lsp.agent import edits
from ornith_lsp.agent.scaffold import Action, Edit, ReadFile, Rewrite, Search
from ornith_lsp.paths import SKIP_DIRS, inside
from ornith_lsp.tasks import Task

MAX_READ_LINES = 200
MAX_EDIT_BYTES = 64_000
MAX_SEARCH_HITS = 30


class ToolError(Exception):
    """Goes back to the model as the observation; the task goes on."""


class Boundary(Protocol):
    def check_edit(self, relpath: str, *, new_file: bool) -> str | None: ...


class Checker(Protocol):
    """Runs the task's own checks in the shadow (tests for test tasks, the
    reporting linter for diagnostics); supplied by the loop's caller."""

    async def run_tests(self) -> tuple[bool, str]: ...
    async def run_diagnostics(self) -> tuple[bool | None, str]: ...


def edit_key(path: str, search: str, replace: str) -> str:
    """Whitespace-insensitive identity of an edit, so a reformatted retry of a
    dead end is still recognised as the same attempt."""
    norm = lambda s: " ".join(s.split())  # noqa: E731
    return hashlib.sha1(f"{path}\0{norm(search)}\0{norm(replace)}".encode()).hexdigest()[:16]


@dataclass
class Tools:
    root: Path  # the project folder inside the shadow tree
    task: Task
    boundary: Boundary
    checker: Checker
    reset: Callable[[], Awaitable[None]] = lambda: asyncio.sleep(0)  # back to the checkpoint before a new plan (git: async)
    tried: dict[str, str] = field(default_factory=dict)  # edit key -> outcome
    edits_applied: int = 0
    reads: int = 0
    last_edit_key: str | None = None

    def _resolve(self, rel: str | None) -> Path:
        if not rel:
            raise ToolError("this tool needs `path`, relative to the project folder")
        if "\0" in rel or Path(rel).is_absolute():
            raise ToolError(f"path {rel!r} must be relative to the project folder")
        target = inside(self.root, rel)
        if target is None:
            raise ToolError(f"path {rel!r} is outside the workspace (or in .git, or a symlink out of it); only files under the project folder can be used")
        return target.resolve()

    @staticmethod
    def _text(path: Path, rel: str) -> str:
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            raise ToolError(f"{rel} is a binary file; it cannot be read or edited as text")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError(f"{rel} is not UTF-8 text; it cannot be read or edited") from None

    async def run(self, action: Action) -> str:
        handler = getattr(self, f"_{action.tool}", None)
        if handler is None or action.tool in ("step_done", "finish", "rewrite"):
            raise ToolError(f"unknown tool {action.tool!r}")
        return await handler(action.call)

    async def _read_file(self, a: ReadFile) -> str:
        path = self._resolve(a.path)
        if not path.is_file():
            raise ToolError(f"{a.path} does not exist")
        lines = self._text(path, a.path).splitlines()
        start = max(1, a.start_line or 1)
        end = min(len(lines), a.end_line or start + MAX_READ_LINES - 1, start + MAX_READ_LINES - 1)
        self.reads += 1
        body = "\n".join(f"{n:5d}  {lines[n - 1]}" for n in range(start, end + 1))
        return f"{a.path} lines {start}-{end} of {len(lines)}:\n{body}"

    async def _search(self, a: Search) -> str:
        if not a.query:
            raise ToolError("search needs `query` (plain text, matched literally)")
        # a walk over the whole tree: in a thread, so a large repository does not stall the editor
        found = await asyncio.to_thread(self._find, a.query)
        self.reads += 1
        return found

    def _find(self, query: str) -> str:
        hits: list[str] = []
        base = self.root.resolve()
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if path.is_symlink() or path.stat().st_size > 1_000_000:
                    continue
                try:
                    text = path.read_text(encoding="utf-8")
                except (UnicodeDecodeError, OSError):
                    continue
                for n, line in enumerate(text.splitlines(), 1):
                    if query in line:
                        hits.append(f"{path.relative_to(base)}:{n}: {line.strip()[:160]}")
                        if len(hits) >= MAX_SEARCH_HITS:
                            return "\n".join(hits) + f"\n(stopped at {MAX_SEARCH_HITS} matches)"
        return "\n".join(hits) if hits else f"no match for {query!r}"

    async def _edit(self, a: Edit) -> str:
        if len(a.replace.encode()) > MAX_EDIT_BYTES or len(a.search.encode()) > MAX_EDIT_BYTES:
            raise ToolError(f"edit refused: more than {MAX_EDIT_BYTES} bytes; make a smaller, targeted edit")
        path = self._resolve(a.path)
        rel = path.relative_to(self.root.resolve()).as_posix()
        new_file = not path.exists()
        why = self.boundary.check_edit(rel, new_file=new_file)
        if why:
            raise ToolError(f"edit refused: {why}")
        key = edit_key(rel, a.search, a.replace)
        if key in self.tried:
            raise ToolError(f"edit refused: this exact edit was already tried and was a dead end ({self.tried[key]}); try a different change")
        if new_file:
            if a.search:
                raise ToolError(f"{rel} does not exist; to create it use an empty `search`")
            text = ""
        else:
            text = self._text(path, rel)
        if a.search == a.replace:
            raise ToolError("edit refused: `search` and `replace` are identical")
        count = text.count(a.search) if a.search else (0 if text else 1)
        if count != 1:
            where = "does not occur" if count == 0 else f"occurs {count} times"
            raise ToolError(f"edit failed: the search text {where} in {rel}; it must match exactly once, copied from read_file output without the line numbers")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace(a.search, a.replace, 1) if a.search else a.replace, encoding="utf-8")
        self.tried[key] = "applied, not yet checked"
        self.last_edit_key = key
        self.edits_applied += 1
        return f"edited {rel}: replaced {a.search.count(chr(10)) + 1} line(s) with {a.replace.count(chr(10)) + 1} line(s)"

    def rewrite_target(self, a: Rewrite) -> tuple[Path, str, str]:
        """Check a rewrite before the model spends a turn writing its code:
        the path, the boundary and the symbol must all be usable."""
        path = self._resolve(a.path)
        rel = path.relative_to(self.root.resolve()).as_posix()
        if not path.is_file():
            raise ToolError(f"{a.path} does not exist; rewrite changes an existing file")
        why = self.boundary.check_edit(rel, new_file=False)
        if why:
            raise ToolError(f"rewrite refused: {why}")
        text = self._text(path, rel)
        if a.symbol and edits.find_definition(text, a.symbol) is None:
            raise ToolError(f"{a.symbol!r} is not defined in {rel}; name a function, Class or Class.method "
                            "defined there, or leave symbol empty to rewrite the whole file")
        return path, rel, text

    def apply_text(self, path: Path, rel: str, old: str, new: str, key_source: str) -> str:
        """Write a whole-text edit (a rewrite), refusing dead ends like ``edit`` does."""
        if new == old:
            raise ToolError("the rewrite changes nothing; the code must differ from what is in the file")
        key = edit_key(rel, "\0rewrite", edits.normalised(key_source))
        if key in self.tried:
            raise ToolError(f"rewrite refused: this code was already tried and was a dead end ({self.tried[key]}); "
                            "write a different change")
        path.write_text(new, encoding="utf-8")
        self.tried[key] = "applied, not yet checked"
        self.last_edit_key = key
        self.edits_applied += 1
        return f"rewrote {rel}: {old.count(chr(10))} line(s) -> {new.count(chr(10))} line(s)"

    def record_outcome(self, outcome: str) -> None:
        """Remember how the latest edit turned out, so it is never retried blindly."""
        if self.last_edit_key is not None:
            self.tried[self.last_edit_key] = outcome

    async def _run_tests(self, a: object) -> str:
        ok, report = await self.checker.run_tests()
        self.record_outcome("tests passed" if ok else "tests still failed")
        return report

    async def _run_diagnostics(self, a: object) -> str:
        ok, report = await self.checker.run_diagnostics()
        return report


def tool_help() -> list[dict[str, Any]]:
    """Described once, at the top of the prompt, so it stays in the KV cache."""
    return [
        {"tool": "read_file", "args": "path, start_line?, end_line?", "does": f"show up to {MAX_READ_LINES} numbered lines"},
        {"tool": "search", "args": "query", "does": "find a literal text in the project's files"},
        {"tool": "edit", "args": "path, search, replace", "does": "replace the one exact occurrence of `search` (empty search on a new file creates it)"},
        {"tool": "rewrite", "args": "path, symbol", "does": "replace a whole function/class (or, with an empty symbol, a small file); you then write its new code in a ```python block"},
        {"tool": "run_tests", "args": "", "does": "run the task's target tests in the workspace"},
        {"tool": "run_diagnostics", "args": "", "does": "run the linters/type checkers on the changed files"},
        {"tool": "step_done", "args": "", "does": "claim the current step is done; the harness runs its check"},
        {"tool": "finish", "args": "summary", "does": "claim the task is solved; the harness verifies it independently"},
    ]


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")


def mentioned_identifiers(task: Task) -> set[str]:
    text = " ".join(filter(None, [task.message, task.traceback, task.test_id]))
    return set(_WORD.findall(text))
