"""What lies inside a project tree: which paths stay inside its root, and
which directories are never the project's own code.

Every layer that touches files asks these questions -- the editor's index
(``context``), the tasks read from tool output, the shadow tree and the
checkpoints (``workspace``), the guard and the agent's tools -- and a check
that differs between them is a way out of the root that only one of them
closes.  So there is one answer, here, on the lowest floor: ``context`` sits
below ``workspace`` and may not import it, which is why this module is not
``workspace/paths.py``.  It imports nothing from the project.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

SKIP_DIRS = frozenset({
    # version control
    ".git", ".hg", ".svn",
    # virtualenvs, and the installed packages of one under any other name
    ".venv", "venv", "env", "site-packages", "dist-packages",
    # dependencies fetched by a package manager
    "node_modules", "vendor",
    # tool caches and build output
    "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox", ".nox", "build", "dist", "target",
})
"""Directories skipped, at any depth, when a tree is walked for the project's
own files (the agent's search, the context index, the guard's file list).
They hold someone else's code or something derived from the project's, and
walking them costs more than the rest of a tree together."""

GIT_DIR = ".git"
_DRIVE = re.compile(r"^[A-Za-z]:")


def clean(rel: str) -> str | None:
    """``rel`` as a clean POSIX path relative to a root (``./a//b`` and
    ``a\\b`` become ``a/b``), or None when it is no such path: empty,
    absolute, a Windows drive, a NUL byte, or any ``..`` part.  Purely
    lexical, so it answers for paths that exist nowhere yet (a diff's, a
    setting's); :func:`inside` adds what the file system says."""
    path = str(rel).replace("\\", "/")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or path.startswith("/") or ".." in parts or "\0" in path or _DRIVE.match(path):
        return None
    return "/".join(parts)


def inside(root: Path, rel: str, *, follow_last: bool = True) -> Path | None:
    """``root / rel`` when it stays inside ``root``, else None.

    Inside means: ``rel`` is :func:`clean`, names nothing in ``.git`` (git's
    own files are never the workspace's), and no symlink on the way leads out
    of ``root``.  With ``follow_last=False`` only the directories are
    resolved, not the last component: right for a write that renames a new
    file over the path, which replaces a symlink there instead of following
    it.  The path returned is unresolved, so a caller sees the name it asked
    for."""
    path = clean(rel)
    if path is None or GIT_DIR in path.split("/"):
        return None
    target = root / path
    real = target.resolve() if follow_last else target.parent.resolve() / target.name
    return target if real.is_relative_to(root.resolve()) else None


def relative_path(root: Path, path: str | os.PathLike[str]) -> str | None:
    """``path`` (absolute, or relative to ``root``) as a POSIX path relative
    to ``root``, or None when it lies outside (or is the root itself).

    Both the literal and the symlink-resolved spellings are tried, because an
    editor or a tool may name the workspace through a symlink the others
    resolve (or not).
    """
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = root / candidate
    for base, target in (
        (Path(os.path.abspath(root)), Path(os.path.abspath(candidate))),
        (root.resolve(), candidate.resolve()),
    ):
        try:
            rel = target.relative_to(base)
        except ValueError:
            continue
        return rel.as_posix() if rel.parts else None
    return None
