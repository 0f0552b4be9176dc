"""The user's git repository, touched only where it cannot hurt.

Everything the shadow tree and the checkpoints need from git goes through
:func:`run_git`, which switches off what could reach the user's state behind
our back: hooks (a post-checkout hook runs the user's scripts), automatic gc,
optional index refreshes, pathspec magic in file names.  The user's index is
never written; snapshots are taken through a private copy of it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import git

from ornith_lsp.paths import inside

SAFE_CONFIG = ("-c", "core.hooksPath=/dev/null", "-c", "gc.auto=0", "-c", "maintenance.auto=false")
SAFE_ENV = {"GIT_OPTIONAL_LOCKS": "0", "GIT_LITERAL_PATHSPECS": "1", "GIT_TERMINAL_PROMPT": "0"}
IDENTITY = {
    "GIT_AUTHOR_NAME": "ornith-lsp", "GIT_AUTHOR_EMAIL": "ornith-lsp@localhost",
    "GIT_COMMITTER_NAME": "ornith-lsp", "GIT_COMMITTER_EMAIL": "ornith-lsp@localhost",
}


class WorkspaceError(RuntimeError):
    """Something about the workspace prevents the operation; the message says what to do."""


def run_git(cwd: Path, *args: str, env: Mapping[str, str] | None = None, raw: bool = False,
            stdin: bytes | None = None) -> str | bytes:
    """``git args`` in ``cwd``; its stdout, exactly (bytes when ``raw``)."""
    try:
        if stdin is None:
            return git.Git(str(cwd)).execute(  # type: ignore[return-value]  # None only with as_process
                ["git", *SAFE_CONFIG, *args],
                env={**SAFE_ENV, **(env or {})},
                stdout_as_string=not raw,
                strip_newline_in_stdout=False,
            )
        with tempfile.TemporaryFile() as fh:
            fh.write(stdin)
            fh.seek(0)
            return git.Git(str(cwd)).execute(  # type: ignore[return-value]  # None only with as_process
                ["git", *SAFE_CONFIG, *args],
                env={**SAFE_ENV, **(env or {})},
                stdout_as_string=not raw,
                strip_newline_in_stdout=False,
                istream=fh,
            )
    except git.GitCommandError as exc:
        detail = (exc.stderr or "").strip().removeprefix("stderr: ").strip("'").strip()
        raise WorkspaceError(f"git {' '.join(args[:2])} failed in {cwd}: {detail}") from None


@dataclass(frozen=True)
class UserRepo:
    """A workspace root inside a git work tree.  ``prefix`` is where the root
    sits in the repository ("" at the top): an editor may open a subfolder."""

    top: Path
    prefix: str

    def git(self, *args: str, env: Mapping[str, str] | None = None, raw: bool = False,
            stdin: bytes | None = None) -> str | bytes:
        return run_git(self.top, *args, env=env, raw=raw, stdin=stdin)

    def to_repo(self, rel: str) -> str:
        """A root-relative path as a repository path, refused if it leaves the root."""
        target = inside(self.top / self.prefix, rel)
        if target is None:
            raise WorkspaceError(f"{rel!r} is not a path inside the workspace")
        return target.relative_to(self.top).as_posix()

    def from_repo(self, path: str) -> str | None:
        if not self.prefix:
            return path
        return path[len(self.prefix) + 1:] if path.startswith(self.prefix + "/") else None

    def head(self) -> str | None:
        """HEAD's commit, or None in a repository without commits yet."""
        out = run_git_ok(self.top, "rev-parse", "--verify", "-q", "HEAD^{commit}")
        return out.strip() or None


def run_git_ok(cwd: Path, *args: str) -> str:
    """Like :func:`run_git` for questions whose "no" is a non-zero exit."""
    try:
        return str(run_git(cwd, *args))
    except WorkspaceError:
        return ""


def open_repo(root: Path) -> UserRepo:
    """The repository holding ``root``; a clear error when there is none."""
    root = Path(root)
    if not root.is_dir():
        raise WorkspaceError(f"{root} is not a directory")
    try:
        repo = git.Repo(root, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise WorkspaceError(
            f"{root} is not inside a git repository: the shadow tree and checkpoints need git "
            "(run `git init` there, then try again)"
        ) from None
    with repo:
        if repo.bare or repo.working_tree_dir is None:
            raise WorkspaceError(f"{root} is a bare git repository: there is no working tree to mirror")
        top = Path(repo.working_tree_dir).resolve()
    prefix = root.resolve().relative_to(top).as_posix()
    return UserRepo(top, "" if prefix == "." else prefix)


def global_excludes(repo: UserRepo) -> str:
    """The user's own global ignore file, whose patterns a replacement
    ``core.excludesFile`` must keep."""
    configured = run_git_ok(repo.top, "config", "--path", "--get", "core.excludesFile").strip()
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "git" / "ignore"
    path = Path(configured) if configured else xdg
    try:
        return path.read_text("utf-8", "replace")
    except OSError:
        return ""
