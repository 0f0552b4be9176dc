"""Unified diffs in ``git diff`` form: parse them and apply them, in memory.

The guard must judge the tree a diff *would* produce without touching the
user's files, and the honest corpus of 164 fixes must be checked in seconds,
so applying is a pure function over strings rather than a ``git apply``
process.  It is as strict as ``git apply`` without fuzz: every context and
removed line must match, though a hunk may sit at another offset, as git
allows.  Paths that leave the root (absolute, ``..``) are refused here, once,
so no later layer has to think about them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "a": "\a", "b": "\b", "f": "\f", "r": "\r", "v": "\v"}


class DiffError(ValueError):
    """The text is not a diff this guard can read; the message says where and why."""


class PatchConflict(ValueError):
    """The diff is well formed but does not apply to the base tree."""


@dataclass(frozen=True)
class Hunk:
    old_start: int
    old_len: int
    new_start: int
    new_len: int
    lines: tuple[tuple[str, str], ...]
    old_missing_newline: bool = False
    new_missing_newline: bool = False

    @property
    def header(self) -> str:
        return f"@@ -{self.old_start},{self.old_len} +{self.new_start},{self.new_len} @@"


@dataclass
class FilePatch:
    old_path: str | None
    new_path: str | None
    status: str = "modified"
    binary: bool = False
    hunks: list[Hunk] = field(default_factory=list)
    diff_line: int = 0
    new_mode: str | None = None

    @property
    def is_symlink(self) -> bool:
        return self.new_mode == "120000"

    @property
    def path(self) -> str:
        return self.new_path or self.old_path or ""

    def paths(self) -> list[str]:
        """Every path the patch touches; a rename touches both ends."""
        return [p for p in dict.fromkeys((self.old_path, self.new_path)) if p]


def split_lines(text: str) -> tuple[list[str], bool]:
    """Lines without their ``\\n`` and whether the text ended with one.  A
    ``\\r`` stays part of its line, exactly as it appears in a diff of a CRLF file."""
    if text == "":
        return [], True
    lines = text.split("\n")
    if lines[-1] == "":
        return lines[:-1], True
    return lines, False


def join_lines(lines: list[str], final_newline: bool) -> str:
    if not lines:
        return ""
    return "\n".join(lines) + ("\n" if final_newline else "")


def _unquote(raw: str) -> str:
    """git quotes paths with unusual bytes C-style: ``"a/sp\\303\\251"``."""
    if not (len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"'):
        return raw
    body, out, i = raw[1:-1], bytearray(), 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in "01234567" and i + 3 < len(body) + 1:
                out.append(int(body[i + 1 : i + 4], 8))
                i += 4
                continue
            out.extend(_ESCAPES.get(nxt, nxt).encode())
            i += 2
            continue
        out.extend(ch.encode())
        i += 1
    return out.decode("utf-8", "surrogateescape")


def _clean_path(raw: str, prefix: str, lineno: int) -> str | None:
    raw = raw.split("\t")[0].rstrip("\r")
    raw = _unquote(raw.strip())
    if raw == "/dev/null":
        return None
    if raw.startswith(prefix):
        raw = raw[len(prefix) :]
    return safe_relpath(raw, f"diff line {lineno}")


def safe_relpath(path: str, where: str = "path") -> str:
    """A repository-relative POSIX path, or DiffError when it would leave the root."""
    path = path.replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or path.startswith("/") or ".." in parts or re.match(r"^[A-Za-z]:", path):
        raise DiffError(f"{where}: path {path!r} is not inside the repository")
    return "/".join(parts)


def _git_header_paths(rest: str, lineno: int) -> tuple[str | None, str | None]:
    """``diff --git a/x b/x``: the only header a pure rename or a binary file has."""
    rest = rest.rstrip("\r")
    if rest.startswith('"'):
        m = re.match(r'^("(?:[^"\\]|\\.)*")\s+(.*)$', rest)
        if not m:
            return None, None
        return _clean_path(m.group(1), "a/", lineno), _clean_path(m.group(2), "b/", lineno)
    if rest.endswith('"'):
        m = re.match(r'^(.*?)\s+("(?:[^"\\]|\\.)*")$', rest)
        if m:
            return _clean_path(m.group(1), "a/", lineno), _clean_path(m.group(2), "b/", lineno)
    half = (len(rest) - 1) // 2
    if rest.startswith("a/") and rest[half : half + 3] == " b/" and rest[2:half] == rest[half + 3 :]:
        path = _clean_path(rest[:half], "a/", lineno)
        return path, path
    m = re.match(r"^a/(.*) b/(.*)$", rest)
    if m:
        return _clean_path(m.group(1), "", lineno), _clean_path(m.group(2), "", lineno)
    return None, None


def parse(diff_text: str) -> list[FilePatch]:
    """Every file patch of a ``git diff`` (or plain ``diff -u``) text, in order."""
    if not isinstance(diff_text, str):
        raise DiffError("the diff must be text")
    lines = diff_text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    patches: list[FilePatch] = []
    current: FilePatch | None = None
    i = 0

    def start(lineno: int) -> FilePatch:
        patch = FilePatch(None, None, diff_line=lineno)
        patches.append(patch)
        return patch

    while i < len(lines):
        line = lines[i]
        head = line.rstrip("\r")
        lineno = i + 1
        if head.startswith("diff --git "):
            current = start(lineno)
            current.old_path, current.new_path = _git_header_paths(head[len("diff --git ") :], lineno)
            i += 1
            continue
        if head.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            if current is None or current.hunks or current.binary:
                current = start(lineno)
            old = _clean_path(head[4:], "a/", lineno)
            new = _clean_path(lines[i + 1].rstrip("\r")[4:], "b/", lineno + 1)
            if current.status not in ("renamed", "copied"):
                current.old_path, current.new_path = old, new
            if old is None:
                current.status = "added"
            elif new is None:
                current.status = "deleted"
            i += 2
            continue
        if current is not None and not current.hunks:
            handled = _extended_header(current, head, lineno)
            if handled:
                if head.startswith("GIT binary patch"):
                    i += 1
                    while i < len(lines) and not lines[i].startswith("diff --git "):
                        i += 1
                    continue
                i += 1
                continue
        if head.startswith("@@"):
            if current is None or (current.old_path is None and current.new_path is None):
                raise DiffError(f"diff line {lineno}: a hunk without a file header (--- / +++)")
            hunk, i = _read_hunk(lines, i)
            current.hunks.append(hunk)
            continue
        if current is not None and current.hunks and head and head[0] in " +-\\":
            raise DiffError(
                f"diff line {lineno}: more lines than the hunk header above it announced "
                f"({current.path}); the diff was edited by hand or truncated"
            )
        i += 1
    patches = [p for p in patches if p.old_path or p.new_path]
    if not patches:
        raise DiffError("the text holds no file changes: expected `git diff` output (diff --git / --- / +++ / @@)")
    for p in patches:
        if not p.hunks and not p.binary and p.status == "modified" and p.old_path == p.new_path:
            p.status = "mode-only"
    return patches


def _extended_header(patch: FilePatch, head: str, lineno: int) -> bool:
    def tail(prefix: str) -> str:
        return head[len(prefix) :]

    if head.startswith("new file mode"):
        patch.status = "added"
        patch.old_path = None
        patch.new_mode = head.split()[-1]
    elif head.startswith("new mode"):
        patch.new_mode = head.split()[-1]
    elif head.startswith("deleted file mode"):
        patch.status = "deleted"
        patch.new_path = None
    elif head.startswith("rename from "):
        patch.status, patch.old_path = "renamed", _clean_path(tail("rename from "), "", lineno)
    elif head.startswith("rename to "):
        patch.status, patch.new_path = "renamed", _clean_path(tail("rename to "), "", lineno)
    elif head.startswith("copy from "):
        patch.status, patch.old_path = "copied", _clean_path(tail("copy from "), "", lineno)
    elif head.startswith("copy to "):
        patch.status, patch.new_path = "copied", _clean_path(tail("copy to "), "", lineno)
    elif head.startswith("Binary files ") or head.startswith("GIT binary patch"):
        patch.binary = True
    elif head.startswith(("old mode", "similarity index", "dissimilarity index")):
        pass
    elif head.startswith("index "):
        fields = head.split()
        if len(fields) == 3 and patch.new_mode is None:
            patch.new_mode = fields[2]
    else:
        return False
    return True


def _read_hunk(lines: list[str], i: int) -> tuple[Hunk, int]:
    head = lines[i].rstrip("\r")
    m = _HUNK.match(head)
    if not m:
        raise DiffError(f"diff line {i + 1}: malformed hunk header {head!r}")
    old_start, new_start = int(m.group(1)), int(m.group(3))
    old_len = int(m.group(2)) if m.group(2) is not None else 1
    new_len = int(m.group(4)) if m.group(4) is not None else 1
    body: list[tuple[str, str]] = []
    old_seen = new_seen = 0
    missing = {"-": False, "+": False}
    i += 1
    while i < len(lines):
        line = lines[i]
        tag, text = (line[:1], line[1:]) if line else (" ", "")
        if tag == "\\":
            # "\ No newline at end of file" speaks of the line just above it.
            last = body[-1][0] if body else " "
            for side in ("-", "+"):
                if last in (" ", side):
                    missing[side] = True
            i += 1
            continue
        if old_seen >= old_len and new_seen >= new_len:
            break
        if tag == " ":
            old_seen += 1
            new_seen += 1
        elif tag == "-":
            old_seen += 1
        elif tag == "+":
            new_seen += 1
        else:
            break
        body.append((tag, text))
        i += 1
    if old_seen != old_len or new_seen != new_len:
        raise DiffError(
            f"diff line {i}: the hunk {head!r} is truncated or miscounted "
            f"(announced -{old_len} +{new_len}, found -{old_seen} +{new_seen})"
        )
    return Hunk(old_start, old_len, new_start, new_len, tuple(body), missing["-"], missing["+"]), i


def apply_hunks(path: str, old_text: str, hunks: list[Hunk]) -> str:
    """The text after ``hunks``; PatchConflict names the first hunk that does not fit."""
    return _apply_hunks(path, old_text, hunks)[0]


def _apply_hunks(path: str, old_text: str, hunks: list[Hunk]) -> tuple[str, frozenset[int]]:
    """The new text and the lines (1-based) the hunks added, where they really
    landed: a hunk applied at an offset must not hide its lines from the monitors."""
    old_lines, final_nl = split_lines(old_text)
    out: list[str] = []
    added: set[int] = set()
    cursor = 0
    new_final_nl = final_nl
    for number, hunk in enumerate(hunks, 1):
        before = [t for tag, t in hunk.lines if tag in " -"]
        want = hunk.old_start if hunk.old_len == 0 else hunk.old_start - 1
        pos = _find(old_lines, before, want, cursor)
        if pos is None:
            raise PatchConflict(_conflict_message(path, number, hunk, old_lines, before, want))
        out.extend(old_lines[cursor:pos])
        for tag, text in hunk.lines:
            if tag in " +":
                out.append(text)
                if tag == "+":
                    added.add(len(out))
        cursor = pos + len(before)
        if cursor == len(old_lines):
            new_final_nl = not hunk.new_missing_newline if any(tag in " +" for tag, _ in hunk.lines) else True
    out.extend(old_lines[cursor:])
    return join_lines(out, new_final_nl), frozenset(added)


def _find(lines: list[str], block: list[str], want: int, floor: int) -> int | None:
    """git's rule: the stated position first, then ever further offsets either way."""
    limit = len(lines) - len(block)
    if limit < floor:
        return None
    for delta in range(0, max(limit, want) + 1):
        for pos in (want - delta, want + delta) if delta else (want,):
            if floor <= pos <= limit and lines[pos : pos + len(block)] == block:
                return pos
    return None


def _conflict_message(path: str, number: int, hunk: Hunk, lines: list[str], before: list[str], want: int) -> str:
    detail = ""
    for k, expected in enumerate(before):
        actual = lines[want + k] if 0 <= want + k < len(lines) else None
        if actual != expected:
            shown = "end of file" if actual is None else repr(actual[:80])
            detail = f": line {want + k + 1} is {shown}, the diff expects {expected[:80]!r}"
            break
    return (
        f"{path}: hunk {number} ({hunk.header}) does not apply to the base file{detail}. "
        "The diff must be made against the repository's current state."
    )


def apply(patches: list[FilePatch], read: Callable[[str], str | None]) -> dict[str, str | None]:
    """Path -> content after the change (None: deleted), for every path touched."""
    return apply_with_lines(patches, read)[0]


def apply_with_lines(
    patches: list[FilePatch], read: Callable[[str], str | None]
) -> tuple[dict[str, str | None], dict[str, frozenset[int]]]:
    """(path -> content after the change, None when deleted; path -> added lines).

    ``read`` gives base contents (None for a missing file).  Binary patches
    are left out: their content cannot be checked, and the caller blocks them.
    A file patched twice in one diff counts as wholly added, to stay on the
    safe side."""
    result: dict[str, str | None] = {}
    added: dict[str, frozenset[int]] = {}

    def current(path: str) -> str | None:
        return result[path] if path in result else read(path)

    def record(path: str, text: str, lines: frozenset[int]) -> None:
        if path in added:
            lines = frozenset(range(1, len(split_lines(text)[0]) + 1))
        result[path], added[path] = text, lines

    for patch in patches:
        if patch.binary:
            continue
        if patch.status == "added":
            if current(patch.new_path) is not None:  # type: ignore[arg-type]
                raise PatchConflict(f"{patch.new_path}: the diff creates it, but it already exists in the base tree")
            record(patch.new_path, *_apply_hunks(patch.new_path, "", patch.hunks))  # type: ignore[arg-type]
            continue
        old = current(patch.old_path)  # type: ignore[arg-type]
        if old is None:
            raise PatchConflict(f"{patch.old_path}: the diff changes it, but it does not exist in the base tree")
        if patch.status == "deleted":
            if patch.hunks and apply_hunks(patch.old_path, old, patch.hunks):  # type: ignore[arg-type]
                raise PatchConflict(f"{patch.old_path}: the diff deletes it, but its removed lines do not match the file")
            result[patch.old_path] = None  # type: ignore[index]
            continue
        new, lines = _apply_hunks(patch.path, old, patch.hunks)
        if patch.status in ("renamed", "copied") and patch.new_path != patch.old_path and current(patch.new_path) is not None:  # type: ignore[arg-type]
            raise PatchConflict(f"{patch.new_path}: the diff {patch.status[:-1]}s a file onto it, but it already exists")
        if patch.status == "renamed":
            result[patch.old_path] = None  # type: ignore[index]
        record(patch.new_path, new, lines)  # type: ignore[arg-type]
    return result, added


def added_lines(patch: FilePatch) -> frozenset[int]:
    """1-based lines of the new file the patch adds, as its hunk headers state them.

    Only for a patch known to apply at its stated positions; the guard itself
    uses :func:`apply_with_lines`, which counts where hunks really land."""
    out: set[int] = set()
    for hunk in patch.hunks:
        line = hunk.new_start if hunk.new_len else hunk.new_start + 1
        for tag, _ in hunk.lines:
            if tag == "+":
                out.add(line)
            if tag in " +":
                line += 1
    return frozenset(out)

