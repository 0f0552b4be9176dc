"""Unified diffs in ``git diff`` form: parse them once, place their hunks once.

Two readers need the same answer to "what does this diff do, and where does
each hunk land": the guard, which judges the tree a diff *would* produce
without touching the user's files (and checks a corpus of 164 fixes in
seconds, so applying is a pure function over strings, not a ``git apply``
process), and the editor side, which turns a verified diff into the smallest
TextEdits against the buffers the user has now.  Two parsers would sooner or
later disagree on a quoted path or a missing final newline, and the guard
would then approve one change while the editor applied another.  The guard
sits on a higher floor and imports this; the workspace cannot import the
guard.

Applying is as strict as ``git apply`` without fuzz: every context and
removed line must match, including whether the file's last line ends in a
newline, though a hunk may sit at another offset, as git allows.  Lines are
split on ``\\n`` only, as git does: a ``\\r`` stays part of its line.  Paths
that leave the root (absolute, ``..``, a drive) are refused while parsing,
so no later layer has to think about them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ornith_lsp import paths

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "a": "\a", "b": "\b", "f": "\f", "r": "\r", "v": "\v"}


class PatchError(ValueError):
    """The diff cannot be used; editor-side callers need not tell why apart."""


class DiffError(PatchError):
    """The text is not a diff that can be read; the message says where and why."""


class PatchConflict(PatchError):
    """The diff is well formed but does not apply to the text it meets."""


@dataclass(frozen=True)
class Hunk:
    """One ``@@`` block; each line is ``(tag, text)`` with the text's own line
    ending, so a line that git marks "\\ No newline at end of file" simply lacks it."""

    old_start: int
    old_len: int
    new_start: int
    new_len: int
    lines: tuple[tuple[str, str], ...]

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
    old_blob: str | None = None

    @property
    def is_symlink(self) -> bool:
        return self.new_mode == "120000"

    @property
    def path(self) -> str:
        return self.new_path or self.old_path or ""

    def paths(self) -> list[str]:
        """Every path the patch touches; a rename touches both ends."""
        return [p for p in dict.fromkeys((self.old_path, self.new_path)) if p]


@dataclass(frozen=True)
class LineChange:
    """Old lines ``[start, end)`` (0-based) become ``new``, lines with their endings."""

    start: int
    end: int
    new: tuple[str, ...]


def split_lines(text: str) -> tuple[list[str], bool]:
    """Lines without their ``\\n`` and whether the text ended with one."""
    if text == "":
        return [], True
    lines = text.split("\n")
    if lines[-1] == "":
        return lines[:-1], True
    return lines, False


def split_with_endings(text: str) -> list[str]:
    """Lines with their ``\\n``; only the last may lack it.  ``"".join`` gives ``text`` back."""
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


# ----------------------------------------------------------------- parsing


def _unquote(raw: str) -> str:
    """git quotes paths with unusual bytes C-style: ``"a/sp\\303\\251"``."""
    if not (len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"'):
        return raw
    body, out, i = raw[1:-1], bytearray(), 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in "01234567" and i + 4 <= len(body):
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
    clean = paths.clean(path)
    if clean is None:
        raise DiffError(f"{where}: path {path!r} is not inside the repository")
    return clean


def _git_header_paths(rest: str, lineno: int) -> tuple[str | None, str | None]:
    """``diff --git a/x b/x``: the only header a pure rename or a binary file
    has.  The same path twice is split exactly in the middle, so paths with
    spaces survive."""
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
        if current is not None and not current.hunks and _extended_header(current, head, lineno):
            i += 1
            if head.startswith("GIT binary patch"):
                while i < len(lines) and not lines[i].startswith("diff --git "):
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
    elif head.startswith(("Binary files ", "GIT binary patch")):
        patch.binary = True
    elif head.startswith(("old mode", "similarity index", "dissimilarity index")):
        pass
    elif head.startswith("index "):
        fields = head.split()
        old_blob = fields[1].split("..")[0] if len(fields) > 1 else ""
        patch.old_blob = old_blob if old_blob.strip("0") else None
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
    i += 1
    while i < len(lines):
        line = lines[i]
        tag, text = (line[:1], line[1:]) if line else (" ", "")
        if tag == "\\":
            # "\ No newline at end of file" speaks of the line just above it.
            if body:
                body[-1] = (body[-1][0], body[-1][1].removesuffix("\n"))
            i += 1
            continue
        if (old_seen >= old_len and new_seen >= new_len) or tag not in " -+":
            break
        old_seen += tag in " -"
        new_seen += tag in " +"
        body.append((tag, text + "\n"))
        i += 1
    if old_seen != old_len or new_seen != new_len:
        raise DiffError(
            f"diff line {i}: the hunk {head!r} is truncated or miscounted "
            f"(announced -{old_len} +{new_len}, found -{old_seen} +{new_seen})"
        )
    return Hunk(old_start, old_len, new_start, new_len, tuple(body)), i


# ---------------------------------------------------------------- placing


def locate(path: str, lines: list[str], hunks: list[Hunk], *, exact: bool = False) -> list[LineChange]:
    """Where each run of removed and added lines falls in ``lines`` (from
    :func:`split_with_endings`); PatchConflict names the first hunk that does not fit.

    A hunk is looked for at its stated line first, then -- unless ``exact`` --
    at ever larger offsets either way, as ``git apply`` does: the user may have
    added lines above it since, or a model may have miscounted.  Runs rather
    than whole hunks, so an editor can be sent only what changes."""
    out: list[LineChange] = []
    floor = 0
    for number, hunk in enumerate(hunks, 1):
        before = [t for tag, t in hunk.lines if tag in " -"]
        want = hunk.old_start if hunk.old_len == 0 else hunk.old_start - 1
        pos = _find(lines, before, want, floor, exact)
        if pos is None:
            raise PatchConflict(_conflict_message(path, number, hunk, lines, before, want))
        row, run_start, added = pos, None, []
        for tag, text in (*hunk.lines, (" ", "")):
            if tag == " ":
                if run_start is not None:
                    out.append(LineChange(run_start, row, tuple(added)))
                    run_start, added = None, []
                row += 1
                continue
            if run_start is None:
                run_start = row
            if tag == "-":
                row += 1
            else:
                added.append(text)
        floor = pos + len(before)
    return out


def _find(lines: list[str], block: list[str], want: int, floor: int, exact: bool) -> int | None:
    """git's rule: the stated position first, then ever further offsets either
    way.  A block with no lines to match is only taken where it says: any
    other place would fit it just as well, so none is evidence."""
    limit = len(lines) - len(block)
    if limit < floor:
        return None
    reach = 0 if exact or not block else max(limit, want)
    for delta in range(reach + 1):
        for pos in (want - delta, want + delta) if delta else (want,):
            if floor <= pos <= limit and lines[pos : pos + len(block)] == block:
                return pos
    return None


def _conflict_message(path: str, number: int, hunk: Hunk, lines: list[str], before: list[str], want: int) -> str:
    detail = ""
    for k, expected in enumerate(before):
        actual = lines[want + k] if 0 <= want + k < len(lines) else None
        if actual == expected:
            continue
        wanted, shown = expected.removesuffix("\n"), (actual or "").removesuffix("\n")
        if actual is None:
            detail = f": line {want + k + 1} is the end of the file, the diff expects {wanted[:80]!r}"
        elif shown == wanted:
            ending = "a newline" if expected.endswith("\n") else "no newline"
            detail = f": line {want + k + 1} {wanted[:80]!r} is the file's last, and the diff expects {ending} after it"
        else:
            detail = f": line {want + k + 1} is {shown[:80]!r}, the diff expects {wanted[:80]!r}"
        break
    return (
        f"{path}: hunk {number} ({hunk.header}) does not apply{detail}. "
        "A diff must be made against the current text: this one was made against other text, "
        "or the file changed since."
    )


# ---------------------------------------------------------------- applying


def apply_hunks(path: str, old_text: str, hunks: list[Hunk], *, exact: bool = False) -> str:
    """The text after ``hunks``; PatchConflict names the first hunk that does not fit."""
    return _apply_hunks(path, old_text, hunks, exact)[0]


def _apply_hunks(path: str, old_text: str, hunks: list[Hunk], exact: bool = False) -> tuple[str, frozenset[int]]:
    """The new text and the lines (1-based) the hunks added, where they really
    landed: a hunk applied at an offset must not hide its lines from the monitors."""
    lines = split_with_endings(old_text)
    out: list[str] = []
    added: set[int] = set()
    cursor = 0
    for change in locate(path, lines, hunks, exact=exact):
        out += lines[cursor : change.start]
        added.update(range(len(out) + 1, len(out) + len(change.new) + 1))
        out += change.new
        cursor = change.end
    out += lines[cursor:]
    return "".join(out), frozenset(added)


def apply(
    patches: list[FilePatch], read: Callable[[str], str | None], *, exact: bool = False
) -> dict[str, str | None]:
    """Path -> content after the change (None: deleted), for every path touched."""
    return apply_with_lines(patches, read, exact=exact)[0]


def apply_with_lines(
    patches: list[FilePatch], read: Callable[[str], str | None], *, exact: bool = False
) -> tuple[dict[str, str | None], dict[str, frozenset[int]]]:
    """(path -> content after the change, None when deleted; path -> added lines).

    ``read`` gives base contents (None for a missing file).  Binary patches
    are left out: their content cannot be checked, and the caller blocks them.
    A file patched twice in one diff counts as wholly added, to stay on the
    safe side.  ``exact`` holds every hunk to its stated line, for writing to
    disk where the diff claims to be made against exactly these files."""
    result: dict[str, str | None] = {}
    added: dict[str, frozenset[int]] = {}

    def current(path: str) -> str | None:
        return result[path] if path in result else read(path)

    def record(path: str, text: str, lines: frozenset[int]) -> None:
        if path in added:
            lines = frozenset(range(1, len(split_with_endings(text)) + 1))
        result[path], added[path] = text, lines

    for patch in patches:
        if patch.binary:
            continue
        if patch.status == "added":
            if current(patch.new_path) is not None:  # type: ignore[arg-type]
                raise PatchConflict(f"{patch.new_path}: the diff creates it, but it already exists in the base tree")
            record(patch.new_path, *_apply_hunks(patch.new_path, "", patch.hunks, exact))  # type: ignore[arg-type]
            continue
        old = current(patch.old_path)  # type: ignore[arg-type]
        if old is None:
            raise PatchConflict(f"{patch.old_path}: the diff changes it, but it does not exist in the base tree")
        if patch.status == "deleted":
            if patch.hunks and apply_hunks(patch.old_path, old, patch.hunks, exact=exact):  # type: ignore[arg-type]
                raise PatchConflict(f"{patch.old_path}: the diff deletes it, but its removed lines do not match the file")
            result[patch.old_path] = None  # type: ignore[index]
            continue
        new, lines = _apply_hunks(patch.path, old, patch.hunks, exact)
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


def stat(patches: list[FilePatch]) -> tuple[int, int]:
    """(lines added, lines removed), as ``git diff --stat`` counts them."""
    tags = [tag for patch in patches for hunk in patch.hunks for tag, _ in hunk.lines]
    return tags.count("+"), tags.count("-")
