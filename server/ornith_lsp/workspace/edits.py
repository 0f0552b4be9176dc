"""A verified diff, delivered: as an LSP WorkspaceEdit, as new text, or onto disk.

The agent's result is a ``git diff`` of the shadow tree.  The editor wants
TextEdits against the buffers it has *now*, with the versions it has now, so
that an edit computed against text the user has since changed is rejected by
the editor instead of garbling the buffer.  Edits are kept small (only the
characters that change, not whole hunks), which keeps the cursor, folds and
undo history of the untouched parts intact.

Lines in diffs are split on ``\\n`` only, as git does; a ``\\r`` stays part of
its line.  Everything here except :func:`apply_to_tree` is pure.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lsprotocol import types as lsp
from pygls.uris import from_fs_path

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_INDEX = re.compile(r"^index ([0-9a-f]+)\.\.([0-9a-f]+)")
_LSP_LINE_BREAK = re.compile(r"\r\n|\r|\n")

Encoding = Literal["utf-16", "utf-8", "utf-32"]


class PatchError(ValueError):
    """The diff cannot be applied: malformed, binary, or made against other text."""


@dataclass
class Hunk:
    old_start: int
    old_len: int
    # (tag, text with its own line ending): " " context, "-" removed, "+" added
    lines: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class FileDiff:
    old_path: str | None  # None: the file is created
    new_path: str | None  # None: the file is deleted
    hunks: list[Hunk] = field(default_factory=list)
    old_blob: str | None = None
    binary: bool = False
    new_mode: str | None = None

    @property
    def path(self) -> str:
        return self.new_path or self.old_path or ""


# ----------------------------------------------------------------- parsing


def parse_diff(diff_text: str) -> list[FileDiff]:
    """The file diffs of a ``git diff`` text, in order."""
    files: list[FileDiff] = []
    lines = diff_text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("diff --git "):
            old, new = _header_paths(line[len("diff --git "):])
            files.append(FileDiff(old, new))
        elif not files:
            if line.startswith("--- "):  # a plain `diff -u` without git's header
                files.append(FileDiff(None, None))
                continue
        elif line.startswith("new file mode "):
            files[-1].old_path, files[-1].new_mode = None, line.split()[-1]
        elif line.startswith("deleted file mode "):
            files[-1].new_path = None
        elif line.startswith(("rename from ", "copy from ")):
            files[-1].old_path = _path(line.split(" ", 2)[2])
        elif line.startswith(("rename to ", "copy to ")):
            files[-1].new_path = _path(line.split(" ", 2)[2])
        elif line.startswith(("Binary files ", "GIT binary patch")):
            files[-1].binary = True
        elif m := _INDEX.match(line):
            files[-1].old_blob = None if set(m[1]) == {"0"} else m[1]
        elif line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            if files[-1].hunks:
                files.append(FileDiff(None, None))
            files[-1].old_path = _side_path(line[4:], "a/")
            files[-1].new_path = _side_path(lines[i + 1][4:], "b/")
            i += 1
        elif line.startswith("@@"):
            hunk, i = _read_hunk(lines, i)
            files[-1].hunks.append(hunk)
            continue
        i += 1
    if not files:
        raise PatchError("no file changes found: expected `git diff` output")
    return files


def _unquote(raw: str) -> str:
    """git C-quotes unusual paths: ``"a/caf\\303\\251.py"`` is ``a/café.py``."""
    if not (len(raw) >= 2 and raw[0] == raw[-1] == '"'):
        return raw
    out, body, i = bytearray(), raw[1:-1], 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            if body[i + 1] in "01234567":
                out.append(int(body[i + 1:i + 4], 8))
                i += 4
                continue
            out += {"n": "\n", "t": "\t"}.get(body[i + 1], body[i + 1]).encode()
            i += 2
            continue
        out += body[i].encode()
        i += 1
    return out.decode("utf-8", "surrogateescape")


def _path(raw: str, prefix: str = "") -> str:
    """A workspace-relative path from the diff, refused if it would leave the workspace."""
    path = _unquote(raw.strip())
    path = path[len(prefix):] if prefix and path.startswith(prefix) else path
    if not path or path.startswith("/") or ".." in path.split("/"):
        raise PatchError(f"path {path!r} leaves the workspace")
    return path


def _side_path(raw: str, prefix: str) -> str | None:
    raw = raw.split("\t")[0].strip()
    return None if raw == "/dev/null" else _path(raw, prefix)


def _header_paths(rest: str) -> tuple[str | None, str | None]:
    """``a/x b/x``; the same path twice is the common case and is split exactly
    in the middle, so paths with spaces survive."""
    half = (len(rest) - 1) // 2
    if rest.startswith("a/") and rest[half:half + 3] == " b/" and rest[2:half] == rest[half + 3:]:
        path = _path(rest[2:half])
        return path, path
    m = re.match(r'^("(?:[^"\\]|\\.)*"|a/.*?) ("(?:[^"\\]|\\.)*"|b/.*)$', rest)
    return (_path(m[1], "a/"), _path(m[2], "b/")) if m else (None, None)


def _read_hunk(lines: list[str], i: int) -> tuple[Hunk, int]:
    m = _HUNK.match(lines[i])
    if m is None:
        raise PatchError(f"diff line {i + 1}: malformed hunk header {lines[i]!r}")
    old_len = int(m[2]) if m[2] is not None else 1
    new_len = int(m[4]) if m[4] is not None else 1
    hunk = Hunk(int(m[1]), old_len)
    old_seen = new_seen = 0
    i += 1
    while i < len(lines) and (old_seen < old_len or new_seen < new_len or lines[i].startswith("\\")):
        line = lines[i]
        tag, text = (line[:1] or " "), line[1:]
        if tag == "\\":  # "\ No newline at end of file" speaks of the line above
            if hunk.lines:
                prev_tag, prev_text = hunk.lines[-1]
                hunk.lines[-1] = (prev_tag, prev_text.removesuffix("\n"))
        elif tag in " -+":
            hunk.lines.append((tag, text + "\n"))
            old_seen += tag in " -"
            new_seen += tag in " +"
        else:
            break
        i += 1
    if (old_seen, new_seen) != (old_len, new_len):
        raise PatchError(f"diff line {i}: hunk {lines[i - 1]!r} is truncated (announced -{old_len} +{new_len})")
    return hunk, i


# ---------------------------------------------------------------- applying


@dataclass(frozen=True)
class _Change:
    """Replace ``text[start:end]`` of the old text with ``new``."""

    start: int
    end: int
    new: str


def _split(text: str) -> list[str]:
    """Lines with their ``\\n``; the last one may lack it."""
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _changes(text: str, file_diff: FileDiff, *, exact: bool) -> list[_Change]:
    """Where each hunk's changed lines fall in ``text``, as character changes.

    A hunk is looked for at its stated line first, then -- unless ``exact`` --
    at ever larger offsets, as ``git apply`` does: the user may have added
    lines above it since.  Its context and removed lines must match exactly.
    """
    lines = _split(text)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    changes: list[_Change] = []
    floor = 0
    for number, hunk in enumerate(file_diff.hunks, 1):
        before = [t for tag, t in hunk.lines if tag in " -"]
        want = hunk.old_start if hunk.old_len == 0 else hunk.old_start - 1
        pos = _find(lines, before, want, floor, exact)
        if pos is None:
            raise PatchError(_mismatch(file_diff.path, number, lines, before, want))
        row = pos
        run_start, removed, added = None, 0, []
        for tag, t in [*hunk.lines, (" ", "")]:
            if tag == " ":
                if run_start is not None:
                    changes.append(_Change(starts[run_start], starts[run_start + removed], "".join(added)))
                    run_start, removed, added = None, 0, []
                row += 1
                continue
            if run_start is None:
                run_start = row
            if tag == "-":
                removed += 1
                row += 1
            else:
                added.append(t)
        floor = pos + len(before)
    return changes


def _find(lines: list[str], block: list[str], want: int, floor: int, exact: bool) -> int | None:
    limit = len(lines) - len(block)
    offsets = range(0, 1 if exact or not block else max(limit, want) + 1)
    for delta in offsets:
        for pos in (want - delta, want + delta) if delta else (want,):
            if floor <= pos <= limit and lines[pos:pos + len(block)] == block:
                return pos
    return None


def _mismatch(path: str, number: int, lines: list[str], before: list[str], want: int) -> str:
    for k, expected in enumerate(before):
        actual = lines[want + k] if 0 <= want + k < len(lines) else None
        if actual != expected:
            shown = "the end of the file" if actual is None else repr(actual.rstrip("\n")[:80])
            wanted = repr(expected.rstrip("\n")[:80])
            return (f"{path}: hunk {number} does not match the current text (line {want + k + 1} is {shown}, "
                    f"the diff expects {wanted}); the file changed since the fix was made")
    return f"{path}: hunk {number} does not fit the current text; the file changed since the fix was made"


def _splice(text: str, changes: list[_Change]) -> str:
    out, cursor = [], 0
    for change in changes:
        out += [text[cursor:change.start], change.new]
        cursor = change.end
    return "".join(out) + text[cursor:]


def apply_diff_to_text(text: str, file_diff: FileDiff | str) -> str:
    """``text`` after the diff of one file; PatchError when a hunk's context
    does not match, which means the user changed the file meanwhile."""
    if isinstance(file_diff, str):
        diffs = parse_diff(file_diff)
        if len(diffs) != 1:
            raise PatchError(f"expected the diff of one file, got {len(diffs)}")
        file_diff = diffs[0]
    if file_diff.binary:
        raise PatchError(f"{file_diff.path}: a binary change cannot be applied as text")
    return _splice(text, _changes(text, file_diff, exact=False))


# ---------------------------------------------------------- WorkspaceEdit


def _minimal(text: str, change: _Change) -> _Change:
    """Trim what the old and new text share at both ends, never splitting a CRLF."""
    old, new = text[change.start:change.end], change.new
    p = 0
    while p < min(len(old), len(new)) and old[p] == new[p]:
        p += 1
    if p and old[p - 1] == "\r":
        p -= 1
    s = 0
    while s < min(len(old), len(new)) - p and old[-1 - s] == new[-1 - s]:
        s += 1
    if s and old[len(old) - s] == "\n" and len(old) - s - 1 >= p and old[len(old) - s - 1] == "\r":
        s -= 1
    return _Change(change.start + p, change.end - s, new[p:len(new) - s])


def _width(s: str, encoding: Encoding) -> int:
    if encoding == "utf-16":
        return len(s.encode("utf-16-le")) // 2
    return len(s.encode()) if encoding == "utf-8" else len(s)


def _positions(text: str, encoding: Encoding):
    """offset -> LSP Position, counting lines the way LSP does (CR, LF, CRLF)."""
    line_starts = [0] + [m.end() for m in _LSP_LINE_BREAK.finditer(text)]

    def position(offset: int) -> lsp.Position:
        line = bisect.bisect_right(line_starts, offset) - 1
        return lsp.Position(line=line, character=_width(text[line_starts[line]:offset], encoding))

    return position


def text_edits(text: str, file_diff: FileDiff, encoding: Encoding = "utf-16") -> list[lsp.TextEdit]:
    """The smallest TextEdits, against ``text``, that make the diff's change."""
    position = _positions(text, encoding)
    edits = []
    for change in _changes(text, file_diff, exact=False):
        change = _minimal(text, change)
        if change.start == change.end and not change.new:
            continue
        edits.append(lsp.TextEdit(range=lsp.Range(start=position(change.start), end=position(change.end)),
                                  new_text=change.new))
    return edits


def diff_to_workspace_edit(
    diff_text: str,
    root: Path,
    versions: Mapping[str, int | None],
    current_texts: Mapping[str, str],
    *,
    encoding: Encoding = "utf-16",
) -> lsp.WorkspaceEdit:
    """The diff as versioned ``documentChanges``.

    ``versions`` and ``current_texts`` are keyed by root-relative path.  Every
    changed or deleted file needs its current text (an open buffer's, else the
    file's); a missing version means "not open in the editor" (null).  Columns
    are counted in ``encoding`` units: UTF-16 unless the client negotiated else.
    """
    changes: list = []

    def uri(path: str) -> str:
        return from_fs_path(str(root / path)) or (root / path).as_uri()

    def document(path: str, version: int | None) -> lsp.OptionalVersionedTextDocumentIdentifier:
        return lsp.OptionalVersionedTextDocumentIdentifier(uri=uri(path), version=version)

    def current(path: str) -> str:
        if path not in current_texts:
            raise PatchError(f"{path}: the diff changes it, but its current text was not given")
        return current_texts[path]

    for fd in parse_diff(diff_text):
        if fd.binary:
            raise PatchError(f"{fd.path}: a binary change cannot be sent as a text edit")
        if fd.old_path is None:  # created
            if fd.new_path in current_texts:
                raise PatchError(f"{fd.new_path}: the diff creates it, but it already exists")
            content = _splice("", _changes("", fd, exact=True))
            changes.append(lsp.CreateFile(uri=uri(fd.new_path), options=lsp.CreateFileOptions(overwrite=False)))
            if content:
                changes.append(lsp.TextDocumentEdit(text_document=document(fd.new_path, None), edits=[
                    lsp.TextEdit(range=lsp.Range(start=lsp.Position(line=0, character=0),
                                                 end=lsp.Position(line=0, character=0)), new_text=content)]))
        elif fd.new_path is None:  # deleted
            text = current(fd.old_path)
            if _splice(text, _changes(text, fd, exact=False)):
                raise PatchError(f"{fd.old_path}: the diff deletes it, but its content changed since")
            changes.append(lsp.DeleteFile(uri=uri(fd.old_path)))
        else:  # changed, renamed, or only its mode changed (nothing to send)
            edits = text_edits(current(fd.old_path), fd, encoding) if fd.hunks else []
            target = fd.new_path
            if fd.old_path != fd.new_path:
                changes.append(lsp.RenameFile(old_uri=uri(fd.old_path), new_uri=uri(fd.new_path)))
            if edits:
                version = versions.get(fd.old_path) if target == fd.old_path else None
                changes.append(lsp.TextDocumentEdit(text_document=document(target, version), edits=edits))
    return lsp.WorkspaceEdit(document_changes=changes)


# -------------------------------------------------------------- on disk


def git_blob_id(data: bytes) -> str:
    """The id git gives ``data`` as a blob: the diff's ``index`` line names the base by it."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def apply_to_tree(diff_text: str, root: Path) -> list[str]:
    """Apply a diff to the files under ``root`` (headless ``--apply``).

    All or nothing: every file is checked before any is written.  A file must
    be exactly the diff's base -- by its blob id when the diff names one, else
    by every hunk matching at its stated line -- or nothing is written.  Each
    write is atomic (a temporary file renamed over the old one) and keeps the
    file's mode.  Returns the paths written or removed.
    """
    root = root.resolve()
    plan: list[tuple[str, str | None, int | None]] = []  # path, new text (None: delete), mode
    for fd in parse_diff(diff_text):
        if fd.binary:
            raise PatchError(f"{fd.path}: binary changes cannot be applied")
        old_text = ""
        if fd.old_path is not None:
            target = _inside(root, fd.old_path)
            try:
                data = target.read_bytes()
                old_text = data.decode("utf-8")
            except FileNotFoundError:
                raise PatchError(f"{fd.old_path}: the diff changes it, but it does not exist") from None
            except UnicodeDecodeError:
                raise PatchError(f"{fd.old_path}: not UTF-8 text") from None
            if fd.old_blob and not git_blob_id(data).startswith(fd.old_blob):
                raise PatchError(f"{fd.old_path}: the file changed since the diff was made (its content is not the diff's base)")
        elif _inside(root, fd.new_path).exists():
            raise PatchError(f"{fd.new_path}: the diff creates it, but it already exists")
        new_text = _splice(old_text, _changes(old_text, fd, exact=True))
        if fd.new_path is None:
            if new_text:
                raise PatchError(f"{fd.old_path}: the diff deletes it, but its content differs from the diff's base")
            plan.append((fd.old_path, None, None))
            continue
        if fd.old_path is not None and fd.old_path != fd.new_path:
            if _inside(root, fd.new_path).exists():
                raise PatchError(f"{fd.new_path}: the diff renames a file onto it, but it already exists")
            plan.append((fd.old_path, None, None))
        mode = 0o755 if fd.new_mode == "100755" else None
        plan.append((fd.new_path, new_text, mode))
    for path, text, mode in plan:
        target = _inside(root, path)
        if text is None:
            target.unlink()
        else:
            write_atomic(target, text.encode("utf-8"), mode)
    return list(dict.fromkeys(path for path, _, _ in plan))


def _inside(root: Path, rel: str) -> Path:
    """``root / rel``, refusing a path that leaves ``root`` through ``..`` or a symlink."""
    target = root / rel
    resolved = target.parent.resolve() / target.name
    if not resolved.is_relative_to(root.resolve()) or ".git" in Path(rel).parts:
        raise PatchError(f"{rel}: outside the workspace (or inside .git); refusing to write it")
    if target.is_symlink():
        raise PatchError(f"{rel}: a symlink; its diff is not text to apply")
    return target


def write_atomic(target: Path, data: bytes, mode: int | None = None) -> None:
    """Write via a temporary sibling and a rename, so a crash leaves the old
    file or the new one, never half of each.  The old file's mode is kept."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        mode = target.stat().st_mode & 0o7777 if target.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".ornith")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
