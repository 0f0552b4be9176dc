"""The workspace's files as an agent panel sees them, and the way back.

A panel's editor may hold unsaved text, so a file is read through the client
(``fs/read_text_file``) when it offers that, and such text is laid over the
shadow tree as the language server lays unsaved buffers.  Every path that
comes from the client -- a file in the prompt, a resource link -- must lie
inside the session's workspace; one outside is refused before anything runs.
Writing happens only for a verified fix the user allowed, and only when
every file still holds the text the fix started from.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from acp import RequestError
from acp.schema import (
    EmbeddedResourceContentBlock,
    ResourceContentBlock,
    TextContentBlock,
    TextResourceContents,
)

from ornith_lsp.workspace.edits import write_atomic
from ornith_lsp.workspace.repo import WorkspaceError, run_git

PROMPT_CHARS = 100_000   # a prompt is a request, not a file dump
BUFFER_FILES = 400       # files read through the client per prompt
BUFFER_BYTES = 1_000_000  # larger files are taken from disk


class WriteRefused(Exception):
    """The fix cannot be written as verified; nothing was."""


def inside(root: Path, where: str) -> str | None:
    """``where`` (a path or a file:// URI) as a path relative to ``root``, or
    None when it leaves the workspace (``..``, a symlink out, ``.git``)."""
    if where.startswith("file://"):
        where = unquote(urlparse(where).path)
    path = Path(where)
    if not path.is_absolute():
        path = root / path
    try:
        rel = path.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return None
    if not rel.parts or ".git" in rel.parts:
        return None
    return rel.as_posix()


def prompt_text(blocks: Sequence[Any], root: Path) -> tuple[str, dict[str, str]]:
    """The prompt's words, with each referenced file named by its workspace
    path, and the text of files embedded in it (the editor's view of them).
    Raises the JSON-RPC error for a file outside the workspace or a prompt
    over ``PROMPT_CHARS``."""
    words: list[str] = []
    embedded: dict[str, str] = {}
    for block in blocks:
        if isinstance(block, TextContentBlock):
            words.append(block.text)
        elif isinstance(block, (ResourceContentBlock, EmbeddedResourceContentBlock)):
            uri = block.uri if isinstance(block, ResourceContentBlock) else block.resource.uri
            if "://" in uri and not uri.startswith("file://"):  # a web page, not a file: its address is words
                words.append(uri)
                continue
            rel = inside(root, uri)
            if rel is None:
                raise RequestError.invalid_params({"uri": uri, "reason": f"{uri} is outside the workspace {root}"})
            words.append(rel)
            if isinstance(block, EmbeddedResourceContentBlock) and isinstance(block.resource, TextResourceContents):
                embedded[rel] = block.resource.text
    text = "\n".join(w for w in words if w.strip())
    size = len(text) + sum(len(t) for t in embedded.values())
    if size > PROMPT_CHARS:
        raise RequestError.invalid_params({"reason": f"the prompt is {size} characters long; at most {PROMPT_CHARS} "
                                                     "are read (name the files instead of pasting them)"})
    if not text.strip():
        raise RequestError.invalid_params({"reason": "the prompt has no text"})
    return text, embedded


def listed(root: Path) -> list[str]:
    """The workspace's files git knows of or would add (tracked, and untracked
    but not ignored), relative to ``root``."""
    try:
        out = str(run_git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"))
    except WorkspaceError:
        return []
    return sorted({p for p in out.split("\0") if p})


def disk_text(root: Path, rel: str) -> str | None:
    """A file's text on disk; None when missing, too large, or not UTF-8."""
    path = root / rel
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > BUFFER_BYTES:
            return None
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def disk_texts(root: Path, rels: Sequence[str]) -> dict[str, str | None]:
    return {rel: disk_text(root, rel) for rel in rels}


def write_to_disk(root: Path, texts: Mapping[str, str]) -> None:
    """The fix's files, each written atomically; every path checked first."""
    targets = {}
    for rel in texts:
        checked = inside(root, rel)
        if checked is None:
            raise WriteRefused(f"{rel} is outside the workspace; nothing was written")
        targets[rel] = root / checked
    for rel, target in targets.items():
        write_atomic(target, texts[rel].encode("utf-8"))


async def unchanged(read: Any, before: Mapping[str, str | None], rels: Sequence[str]) -> None:
    """Raise WriteRefused when any file no longer holds the text the fix started from."""
    now = await asyncio.gather(*(read(rel) for rel in rels))
    moved = [rel for rel, text in zip(rels, now) if text != before.get(rel)]
    if moved:
        raise WriteRefused(f"{', '.join(moved)} changed since the fix started; nothing was written "
                           "(ask again to fix the current text)")
