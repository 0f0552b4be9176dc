"""A verified diff, delivered: as an LSP WorkspaceEdit, as new text, or onto disk.

The agent's result is a ``git diff`` of the shadow tree.  The editor wants
TextEdits against the buffers it has *now*, with the versions it has now, so
that an edit computed against text the user has since changed is rejected by
the editor instead of garbling the buffer.  Edits are kept small (only the
characters that change, not whole hunks), which keeps the cursor, folds and
undo history of the untouched parts intact.

The diff is read, and its hunks placed, by :mod:`ornith_lsp.workspace.diffs`:
the same code the guard judged it with, so the editor is sent the change
that was verified.  Everything here except :func:`apply_to_tree` is pure.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from lsprotocol import types as lsp
from pygls.uris import from_fs_path

from ornith_lsp.paths import inside
from ornith_lsp.workspace import diffs
from ornith_lsp.workspace.diffs import FilePatch, PatchError

_LSP_LINE_BREAK = re.compile(r"\r\n|\r|\n")

Encoding = Literal["utf-16", "utf-8", "utf-32"]


def _textual(patches: list[FilePatch]) -> list[FilePatch]:
    """``patches``, refusing any change that is not text: the guard could not
    read it, and neither a TextEdit nor a text file can carry it."""
    for patch in patches:
        if patch.binary:
            raise PatchError(f"{patch.path}: a binary change cannot be applied as text")
        if patch.is_symlink:
            raise PatchError(f"{patch.path}: a symlink change cannot be applied as text")
    return patches


def apply_diff_to_text(text: str, file_diff: FilePatch | str) -> str:
    """``text`` after the diff of one file; PatchError when a hunk's context
    does not match, which means the user changed the file meanwhile."""
    if isinstance(file_diff, str):
        patches = diffs.parse(file_diff)
        if len(patches) != 1:
            raise PatchError(f"expected the diff of one file, got {len(patches)}")
        file_diff = patches[0]
    [patch] = _textual([file_diff])
    return diffs.apply_hunks(patch.path, text, patch.hunks)


# ---------------------------------------------------------- WorkspaceEdit


def _minimal(text: str, start: int, end: int, new: str) -> tuple[int, int, str]:
    """Trim what the old and new text share at both ends, never splitting a CRLF."""
    old = text[start:end]
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
    return start + p, end - s, new[p : len(new) - s]


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


def text_edits(text: str, patch: FilePatch, encoding: Encoding = "utf-16") -> list[lsp.TextEdit]:
    """The smallest TextEdits, against ``text``, that make the patch's change."""
    position = _positions(text, encoding)
    lines = diffs.split_with_endings(text)
    starts = list(itertools.accumulate(map(len, lines), initial=0))
    edits = []
    for run in diffs.locate(patch.path, lines, patch.hunks):
        start, end, new = _minimal(text, starts[run.start], starts[run.end], "".join(run.new))
        if start == end and not new:
            continue
        edits.append(lsp.TextEdit(range=lsp.Range(start=position(start), end=position(end)), new_text=new))
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
    changed, deleted or renamed file needs its current text (an open buffer's,
    else the file's), and so does the target of a rename if it exists; a
    missing version means "not open in the editor" (null).  Columns are
    counted in ``encoding`` units: UTF-16 unless the client negotiated else.
    The whole diff is applied in memory first, so a stale buffer anywhere
    refuses the edit before the editor sees any of it.
    """
    patches = _textual(diffs.parse(diff_text))
    for patch in patches:
        if patch.status != "added" and patch.old_path not in current_texts:
            raise PatchError(f"{patch.old_path}: the diff changes it, but its current text was not given")
    after = diffs.apply(patches, current_texts.get)

    def uri(path: str) -> str:
        return from_fs_path(str(root / path)) or (root / path).as_uri()

    def document(path: str, version: int | None) -> lsp.OptionalVersionedTextDocumentIdentifier:
        return lsp.OptionalVersionedTextDocumentIdentifier(uri=uri(path), version=version)

    changes: list = []
    for patch in patches:
        old, new = patch.old_path or patch.path, patch.new_path or patch.path
        if patch.status in ("added", "copied"):
            changes.append(lsp.CreateFile(uri=uri(new), options=lsp.CreateFileOptions(overwrite=False)))
            if after[new]:
                start = lsp.Position(line=0, character=0)
                changes.append(lsp.TextDocumentEdit(text_document=document(new, None), edits=[
                    lsp.TextEdit(range=lsp.Range(start=start, end=start), new_text=after[new] or "")]))
        elif patch.status == "deleted":
            changes.append(lsp.DeleteFile(uri=uri(old)))
        else:
            if patch.status == "renamed":
                changes.append(lsp.RenameFile(old_uri=uri(old), new_uri=uri(new)))
            edits = text_edits(current_texts[old], patch, encoding)
            if edits:
                version = None if patch.status == "renamed" else versions.get(old)
                changes.append(lsp.TextDocumentEdit(text_document=document(new, version), edits=edits))
    return lsp.WorkspaceEdit(document_changes=changes)


# -------------------------------------------------------------- on disk


def git_blob_id(data: bytes) -> str:
    """The id git gives ``data`` as a blob: the diff's ``index`` line names the base by it."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def apply_to_tree(diff_text: str, root: Path) -> list[str]:
    """Apply a diff to the files under ``root`` (headless ``--apply``).

    All or nothing: every file is checked before any is written.  A file must
    be exactly the diff's base -- by its blob id when the diff names one, and
    by every hunk matching at its stated line -- or nothing is written.  Each
    write is atomic (a temporary file renamed over the old one) and keeps the
    file's mode.  Writing is all or nothing too: every new text is first
    written in full next to its file (a full disk or a read-only directory
    fails here, before any file changed), then all are renamed into place; a
    rename that fails puts back the files already replaced.  Returns the
    paths written or removed.
    """
    root = root.resolve()
    patches = _textual(diffs.parse(diff_text))

    @functools.cache
    def read(path: str) -> str | None:
        try:
            return _inside(root, path).read_bytes().decode("utf-8")
        except FileNotFoundError:
            return None
        except UnicodeDecodeError:
            raise PatchError(f"{path}: not UTF-8 text") from None
        except OSError as exc:
            raise PatchError(f"{path}: cannot be read ({exc.strerror})") from None

    for patch in patches:
        base = read(patch.old_path) if patch.old_blob and patch.old_path else None
        if base is not None and not git_blob_id(base.encode("utf-8")).startswith(patch.old_blob):  # type: ignore[arg-type]
            raise PatchError(f"{patch.old_path}: the file changed since the diff was made (its content is not the diff's base)")
    after = diffs.apply(patches, read, exact=True)
    modes = {p.path: 0o755 for p in patches if p.new_mode == "100755"}
    targets = {path: _inside(root, path) for path in after}
    _write_all(targets, {path: (None if text is None else text.encode("utf-8")) for path, text in after.items()},
               {path: read(path) for path in after}, modes)
    return list(after)


def _write_all(targets: Mapping[str, Path], new: Mapping[str, bytes | None], old: Mapping[str, str | None],
               modes: Mapping[str, int]) -> None:
    """Stage every file, then swap them all in; on any failure the tree is as
    it was.  ``new[path] is None`` removes the file; ``old`` is each file's
    text before (None: it did not exist), for putting it back."""
    staged: dict[str, Path] = {}
    made_dirs: list[Path] = []
    current = ""
    try:
        for path, data in new.items():
            current = path
            if data is None:
                continue
            target = targets[path]
            missing = [d for d in [target.parent, *target.parent.parents] if not d.exists()]
            target.parent.mkdir(parents=True, exist_ok=True)
            made_dirs += reversed(missing)
            mode = modes.get(path) or (target.stat().st_mode & 0o7777 if target.exists() else 0o644)
            staged[path] = _stage(target, data, mode)
    except OSError as exc:
        _discard(staged.values(), made_dirs)
        raise PatchError(f"{current}: cannot be written ({exc.strerror or exc}); nothing was changed") from None
    done: list[str] = []
    try:
        for path, data in new.items():
            current = path
            if data is None:
                targets[path].unlink()
            else:
                os.replace(staged.pop(path), targets[path])
            done.append(path)
    except OSError as exc:
        _discard(staged.values(), [])
        for path in reversed(done):  # put back what was already replaced
            before = old.get(path)
            try:
                if before is None:
                    targets[path].unlink(missing_ok=True)
                else:
                    write_atomic(targets[path], before.encode("utf-8"))
            except OSError:
                pass
        _discard([], made_dirs)
        raise PatchError(f"{current}: cannot be replaced ({exc.strerror or exc}); nothing was changed") from None


def _stage(target: Path, data: bytes, mode: int) -> Path:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".ornith")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _discard(temps, dirs: list[Path]) -> None:
    for tmp in temps:
        Path(tmp).unlink(missing_ok=True)
    for d in reversed(dirs):
        try:
            d.rmdir()
        except OSError:
            pass



def _inside(root: Path, rel: str) -> Path:
    """``root / rel``, refusing a path that leaves ``root`` through ``..`` or a symlink."""
    target = inside(root, rel, follow_last=False)
    if target is None:
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
