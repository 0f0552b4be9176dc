"""The inputs every monitor shares: one changed file, and a read-only view of
the repository around it.

The view is built from plain callables (read a base file, list base files)
so the same monitors run over a real checkout, an agent's shadow tree, or an
in-memory corpus, and stay pure functions of what they are given.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ornith_lsp.guard.boundary import Boundary
from ornith_lsp.paths import SKIP_DIRS

MAX_TEST_FILES = 400
MAX_TEST_BYTES = 4_000_000
MAX_LISTED_FILES = 20_000


@dataclass(frozen=True)
class FileChange:
    """One file as the diff leaves it. ``added_lines`` are 1-based lines of ``new_text``."""

    path: str
    status: str
    old_text: str | None
    new_text: str | None
    added_lines: frozenset[int]
    old_path: str | None = None

    @property
    def is_python(self) -> bool:
        return self.path.endswith((".py", ".pyi"))


@dataclass(frozen=True)
class Hit:
    """A monitor's raw observation; ``sure`` hits block, the others are concerns."""

    monitor: str
    line: int | None
    evidence: str
    sure: bool = True
    path: str | None = None


class RepoContext:
    def __init__(
        self,
        boundary: Boundary,
        read_base: Callable[[str], str | None],
        base_files: Callable[[], Iterable[str]],
        after: Mapping[str, str | None] | None = None,
        target_test_files: Iterable[str] = (),
    ) -> None:
        self.boundary = boundary
        self._read_base = read_base
        self._base_files = base_files
        self.after = dict(after or {})
        self.target_test_files = list(dict.fromkeys(target_test_files))

    def read_base(self, path: str) -> str | None:
        return self._read_base(path)

    def read_after(self, path: str) -> str | None:
        return self.after[path] if path in self.after else self._read_base(path)

    @cached_property
    def base_files(self) -> list[str]:
        return list(self._base_files())

    @cached_property
    def after_files(self) -> list[str]:
        present = [p for p in self.base_files if self.after.get(p, "") is not None]
        return present + [p for p, text in self.after.items() if text is not None and p not in set(self.base_files)]

    @cached_property
    def test_sources(self) -> list[tuple[str, str]]:
        """Base test files and test data, the named target tests first, within a budget:
        the tests as they were *before* the change are the ones a table would copy."""
        ordered = list(self.target_test_files) + [
            p for p in self.base_files
            if p not in self.target_test_files and (found := self.boundary.protection(p)) is not None
            and found.kind in ("test-file", "test-data", "conftest")
        ]
        out: list[tuple[str, str]] = []
        size = 0
        for path in ordered:
            if len(out) >= MAX_TEST_FILES or size >= MAX_TEST_BYTES:
                break
            text = self.read_base(path)
            if text is None or len(text) > 1_000_000:
                continue
            out.append((path, text))
            size += len(text)
        return out

    def memo(self, key: str, make: Callable[[], object]) -> object:
        """A value derived from this view, made once: monitors keep their indexes
        here (the test literals, the function index) so the view need not know them."""
        store = self.__dict__.setdefault("_memo", {})
        if key not in store:
            store[key] = make()
        return store[key]


def read_text(root: Path, relpath: str) -> str | None:
    path = root / relpath
    try:
        if not path.is_file():
            return None
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
            return fh.read()
    except OSError:
        return None


def list_files(root: Path) -> list[str]:
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        rel = os.path.relpath(dirpath, root)
        for name in sorted(filenames):
            out.append(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
            if len(out) >= MAX_LISTED_FILES:
                return out
    return out
