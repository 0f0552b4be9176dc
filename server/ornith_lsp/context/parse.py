"""Definitions and references of every source file in a tree, kept current cheaply.

The agent asks for context after every edit, so the index re-parses only the
files whose ``(mtime, size)`` or unsaved buffer changed; ``parses`` counts
parses so that promise is tested.  Whatever cannot be read as source -- binary,
not UTF-8, over ``MAX_BYTES``, or a symlink out of the root -- is listed in
``skipped`` with the reason instead of failing the whole index: one vendored
blob must not cost the agent its map.  A file with syntax errors still gives
whatever tree-sitter recovers, which is the usual state of a file mid-edit.

Paths are POSIX, relative to the root; lines are 1-based and inclusive, like
``tasks.Location``, so the agent never converts between its own modules.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tree_sitter import Node, Parser, QueryCursor

from ornith_lsp.paths import SKIP_DIRS, inside, relative_path

from . import languages
from .languages import LanguageSpec

MAX_BYTES = 1_000_000
SCOPES = frozenset({"class", "function", "method"})
"""Kinds that enclose code, as opposed to constants: what ``enclosing`` returns."""

MAX_SIGNATURE_LINES = 6


@dataclass(frozen=True)
class Symbol:
    """A definition (kind ``class``, ``function``, ``method``, ``constant``) or a
    reference (``call``, ``type``, ``import``, ...).  ``signature`` is the
    definition's header as written, for the repo map; empty for references."""

    name: str
    kind: str
    path: str
    line: int
    end_line: int
    signature: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True)
class FileTags:
    path: str
    definitions: tuple[Symbol, ...]
    references: tuple[Symbol, ...]
    lines: int


def extract(spec: LanguageSpec, path: str, text: str) -> FileTags:
    """Run the language's tags query over ``text``.

    Several patterns may tag one name (a method is also a function); the
    pattern written first in the query wins, which lets the query file alone
    decide what is more specific.
    """
    tree = Parser(spec.language).parse(text.encode("utf-8"))
    best: dict[int, tuple[int, str, Node, Node]] = {}
    for pattern, captures in QueryCursor(spec.tags).matches(tree.root_node):
        names = captures.get("name")
        tags = [(capture, nodes[0]) for capture, nodes in captures.items()
                if capture != "name" and not capture.startswith("_")]  # @_x: helper captures for predicates
        if names and tags:
            key = names[0].start_byte
            if key not in best or pattern < best[key][0]:
                best[key] = (pattern, tags[0][0], tags[0][1], names[0])

    lines = text.split("\n")
    definitions, references = [], []
    for _, capture, node, name in sorted(best.values(), key=lambda b: b[3].start_byte):
        role, _, kind = capture.partition(".")
        if role == "definition":
            first, last = node.start_point.row, node.end_point.row
            header_end = _header_end(node)
            header = lines[first : min(header_end, first + MAX_SIGNATURE_LINES - 1) + 1]
            signature = "\n".join(line.rstrip() for line in header)
            definitions.append(Symbol((name.text or b"").decode(), kind, path, first + 1, last + 1, signature))
        elif role == "reference":
            row = name.start_point.row + 1
            references.append(Symbol((name.text or b"").decode(), kind, path, row, row))
    return FileTags(path, tuple(definitions), tuple(references), len(lines) - (lines[-1] == ""))


def _header_end(node: Node) -> int:
    """Last row of a definition's header: the last token before its body,
    so blank lines and comments between the two stay out of the map."""
    body = node.child_by_field_name("body")
    if body is None:
        return node.start_point.row
    before = [c for c in node.children if c.end_byte <= body.start_byte and not c.is_extra]
    return before[-1].end_point.row if before else node.start_point.row


def decode(data: bytes) -> tuple[str | None, str]:
    """Source text, or None and why not.  A NUL byte means binary even when
    the bytes happen to decode, as UTF-16 text and images often do."""
    if b"\0" in data:
        return None, "binary"
    try:
        return data.decode("utf-8-sig"), ""
    except UnicodeDecodeError:
        return None, "not UTF-8"


class Index:
    """Tags of every file under ``root`` with a registered suffix.

    ``refresh()`` walks the tree; ``update(path, text)`` follows one file, with
    ``text`` holding an unsaved editor buffer until ``close(path)``.  Directory
    symlinks are never descended: they loop and duplicate files.
    """

    def __init__(self, root: str | Path, *, max_bytes: int = MAX_BYTES) -> None:
        self.root = Path(root).resolve()
        self.max_bytes = max_bytes
        self.files: dict[str, FileTags] = {}
        self.skipped: dict[str, str] = {}
        self.parses = 0
        self._keys: dict[str, object] = {}
        self._buffers: dict[str, str] = {}
        self._by_name: dict[str, list[Symbol]] | None = None

    def refresh(self) -> Index:
        seen = set(self._buffers)
        for rel in self._walk():
            seen.add(rel)
            self.update(rel)
        for gone in set(self._keys) - seen:
            self._drop(gone)
        return self

    def update(self, path: str | Path, text: str | None = None) -> FileTags | None:
        rel = self.relative(path)
        if rel is None or (spec := languages.for_path(rel)) is None:
            return None
        if text is not None:
            self._buffers[rel] = text
        if rel not in self._buffers and inside(self.root, rel) is None:
            self._forget(rel)
            self.skipped[rel] = "symlink out of the root"
            return None
        try:
            key = ("buffer", self._buffers[rel]) if rel in self._buffers else _stat_key(self.root / rel)
        except OSError:
            self._drop(rel)
            return None
        if self._keys.get(rel) == key:
            return self.files.get(rel)
        self._forget(rel)
        self._keys[rel] = key
        source, reason = self._read(rel)
        if source is None:
            self.skipped[rel] = reason
            return None
        self.parses += 1
        self.files[rel] = extract(spec, rel, source)
        return self.files[rel]

    def close(self, path: str | Path) -> FileTags | None:
        """Forget the unsaved buffer: the file on disk is the truth again."""
        rel = self.relative(path)
        if rel is None:
            return None
        self._buffers.pop(rel, None)
        return self.update(rel)

    def relative(self, path: str | Path) -> str | None:
        """``path`` relative to the root, or None when it is outside or in a
        skipped directory (``paths.SKIP_DIRS``).  A path outside that resolves
        inside (the root reached through a symlink, as editors sometimes
        report it) counts as inside."""
        rel = relative_path(self.root, path)
        return None if rel is None or SKIP_DIRS.intersection(rel.split("/")) else rel

    def definitions(self, name: str) -> list[Symbol]:
        if self._by_name is None:
            self._by_name = {}
            for tags in self.files.values():
                for symbol in tags.definitions:
                    self._by_name.setdefault(symbol.name, []).append(symbol)
        return self._by_name.get(name, [])

    def _read(self, rel: str) -> tuple[str | None, str]:
        if rel in self._buffers:
            text = self._buffers[rel]
            return (text, "") if len(text) <= self.max_bytes else (None, "larger than max_bytes")
        path = self.root / rel
        if path.stat().st_size > self.max_bytes:
            return None, "larger than max_bytes"
        return decode(path.read_bytes())

    def _walk(self) -> Iterator[str]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            base = Path(dirpath).relative_to(self.root)
            for name in sorted(filenames):
                if Path(name).suffix in languages.BY_SUFFIX:
                    yield (base / name).as_posix()

    def _forget(self, rel: str) -> None:
        self.skipped.pop(rel, None)
        if self.files.pop(rel, None) is not None:
            self._by_name = None

    def _drop(self, rel: str) -> None:
        self._forget(rel)
        self._keys.pop(rel, None)


def _stat_key(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def innermost(definitions: Iterable[Symbol], line: int) -> Symbol | None:
    around = [d for d in definitions if d.kind in SCOPES and d.line <= line <= d.end_line]
    return min(around, key=lambda d: (d.end_line - d.line, -d.line), default=None)


def enclosing(index: Index, path: str | Path, line: int) -> Symbol | None:
    """The innermost function, method or class around ``line`` (1-based)."""
    tags = index.update(path)
    return innermost(tags.definitions, line) if tags else None


def definitions_used(index: Index, symbol: Symbol) -> list[Symbol]:
    """Definitions of the names ``symbol``'s body refers to: the helpers to show
    beside a function.  A name defined in the symbol's own file is taken to mean
    that definition, as Python's scoping would; otherwise every definition of
    it in the index is offered.  Definitions inside ``symbol`` are left out:
    they are already in its body."""
    tags = index.update(symbol.path)
    if tags is None:
        return []
    inside = {d for d in tags.definitions if symbol.line <= d.line and d.end_line <= symbol.end_line}
    names = dict.fromkeys(r.name for r in tags.references if symbol.line <= r.line <= symbol.end_line)
    used: list[Symbol] = []
    for name in names:
        candidates = index.definitions(name)
        local = [d for d in candidates if d.path == symbol.path]
        used += [d for d in (local or candidates) if d not in inside and d not in used]
    return used
