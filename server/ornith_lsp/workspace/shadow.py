"""The shadow tree: where the agent edits and runs tests, never in the user's files.

A shadow is a detached ``git worktree`` of a checkpoint (HEAD + the user's
uncommitted changes + the editor's unsaved buffers), so the agent sees exactly
what the user sees, tests run against that, and the result is a plain
``git diff`` against the checkpoint.  The user's branch, index and files stay
as they were; only objects and refs under ``refs/ornith/`` are added.

git runs synchronously (GitPython); every method that runs git is async and
moves it to a thread (:func:`~ornith_lsp.offloop.off_loop`), so the
language server keeps answering while a large tree is checked out, staged or
diffed.  Only ``read`` and ``write`` of one file stay synchronous.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from ornith_lsp.paths import inside
from ornith_lsp.workspace import leftovers
from ornith_lsp.workspace.checkpoints import Checkpoint, create_checkpoint, record_fix
from ornith_lsp.offloop import off_loop, settled
from ornith_lsp.workspace.repo import UserRepo, WorkspaceError, global_excludes, open_repo, run_git

# What running tools in the shadow leaves behind, kept out of diff() even in
# a repository whose .gitignore forgot them.
TOOL_DEBRIS = "__pycache__/\n*.py[cod]\n.pytest_cache/\n.mypy_cache/\n.ruff_cache/\n"


class ShadowError(WorkspaceError):
    """A shadow operation was refused; the message says why."""


class Shadow:
    """Use :meth:`create`; ``path`` is the shadow's counterpart of the workspace root."""

    def __init__(self, repo: UserRepo, checkpoint: Checkpoint, container: Path, worktree: Path):
        self.repo = repo
        self.checkpoint = checkpoint
        self.worktree = worktree
        self.path = worktree / repo.prefix if repo.prefix else worktree
        self._container = container  # ours alone: removed on close
        self._excludes = container / "exclude"
        self._closed = False

    @property
    def base_commit(self) -> str:
        return self.checkpoint.commit

    @classmethod
    async def create(
        cls,
        root: Path,
        overlays: Mapping[str, str] | None = None,
        *,
        base_dir: Path | None = None,
        label: str = "",
    ) -> Shadow:
        """A shadow of ``root`` with ``overlays`` (root-relative path -> unsaved
        text) laid over the working tree, under ``base_dir`` (default: a new
        temporary directory).  Its checkpoint is kept in the user's repository.

        Cancelling the caller does not cancel git, which runs in a thread: the
        shadow it was making is waited for and removed, so an interrupted
        start leaves no worktree registered."""
        job = asyncio.ensure_future(asyncio.to_thread(cls._create, Path(root), dict(overlays or {}), base_dir, label))
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            await settled(job)
            if not job.cancelled() and job.exception() is None:
                await job.result().close()
            raise

    @classmethod
    def _create(cls, root: Path, overlays: dict[str, str], base_dir: Path | None, label: str) -> Shadow:
        repo = open_repo(root)
        checkpoint = create_checkpoint(root, overlays, label=label)
        if base_dir is None:
            container = Path(tempfile.mkdtemp(prefix="ornith-shadow-"))
        else:
            container = Path(base_dir) / f"shadow-{checkpoint.id}"
            container.mkdir(parents=True)
        worktree = container / repo.top.name
        try:
            leftovers.mark(container, repo.top)
            repo.git("worktree", "add", "--detach", str(worktree), checkpoint.commit)
            leftovers.track(container, repo.top, worktree)
            (container / "exclude").write_text(global_excludes(repo) + "\n" + TOOL_DEBRIS)
            shadow = cls(repo, checkpoint, container, worktree)
            shadow.path.mkdir(parents=True, exist_ok=True)
        except BaseException:
            leftovers.untrack(container)
            leftovers.remove_worktree(repo.top, worktree, container)
            raise
        return shadow

    # -------------------------------------------------------------- files

    def _file(self, relpath: str) -> Path:
        """The shadow file for ``relpath``, refusing any way out of the shadow:
        absolute paths, ``..``, ``.git``, and symlinks that lead outside."""
        if self._closed:
            raise ShadowError("the shadow is closed")
        target = inside(self.path, relpath)
        if target is None:
            raise ShadowError(f"{relpath!r} is not a path inside the workspace (absolute, through '..' or .git, "
                              "or a symlink that leads out of the shadow tree); refusing it")
        return target

    def read(self, relpath: str) -> str:
        target = self._file(relpath)
        try:
            return _text(relpath, target.read_bytes())
        except FileNotFoundError:
            raise ShadowError(f"{relpath}: no such file in the workspace") from None
        except IsADirectoryError:
            raise ShadowError(f"{relpath}: is a directory") from None

    def write(self, relpath: str, text: str) -> None:
        """Replace a text file's content (or create one).  Binary and
        non-UTF-8 files are refused: the agent edits text, and a diff of what
        it cannot read would be a diff nobody can review."""
        target = self._file(relpath)
        if "\0" in text:
            raise ShadowError(f"{relpath}: the new text contains NUL bytes; only text files can be written")
        if target.is_dir():
            raise ShadowError(f"{relpath}: is a directory")
        if target.exists():
            _text(relpath, target.read_bytes())
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text.encode("utf-8"))

    # ---------------------------------------------------------- the change

    def _git(self, *args: str, raw: bool = False) -> str | bytes:
        return run_git(self.path, "-c", f"core.excludesFile={self._excludes}", *args, raw=raw)

    def _stage(self) -> None:
        """Stage everything in the shadow's own index, so new files are part
        of the diff (the user's index is a different file)."""
        self._git("add", "-A")

    def _open(self) -> None:
        if self._closed:
            raise ShadowError("the shadow is closed")

    async def diff(self, *, top_level: bool = False) -> str:
        """A unified ``git diff`` of the shadow against its checkpoint, new and
        deleted files included, paths relative to the workspace root (to the
        repository's top with ``top_level``, which is what the guard reads).
        Full blob ids name each file's base, so a stale apply can be refused."""
        self._open()
        return await off_loop(self._diff, top_level)

    def _diff(self, top_level: bool) -> str:
        self._stage()
        out = self._git(
            "diff", "--cached", "--no-color", "--no-ext-diff", "--no-textconv", "--no-renames",
            "--full-index", "--src-prefix=a/", "--dst-prefix=b/", *([] if top_level else ["--relative"]),
            self.base_commit, raw=True,
        )
        return out.decode("utf-8", "replace")  # type: ignore[union-attr]

    async def changed_files(self) -> list[str]:
        """Root-relative paths that differ from the checkpoint."""
        self._open()
        return await off_loop(self._changed_files)

    def _changed_files(self) -> list[str]:
        self._stage()
        out = str(self._git("diff", "--cached", "--name-only", "-z", "--no-renames", "--relative", self.base_commit))
        return [p for p in out.split("\0") if p]

    async def reset(self) -> None:
        """Back to the checkpoint, so a new plan starts from the user's state and
        a dead end can be recognised by its edit alone."""
        self._open()
        await off_loop(self._reset)

    def _reset(self) -> None:
        run_git(self.worktree, "reset", "-q", "--hard", self.base_commit)
        run_git(self.worktree, "clean", "-q", "-f", "-d")

    async def record_fix(self, label: str = "") -> str:
        """Remember the shadow's current state as the fix for its checkpoint,
        so ``rollback(root, shadow.checkpoint.id)`` knows what to restore."""
        self._open()
        return await off_loop(self._record_fix, label)

    def _record_fix(self, label: str) -> str:
        self._stage()
        tree = str(self._git("write-tree")).strip()
        return record_fix(self.repo.top / self.repo.prefix, self.checkpoint.id, tree, label)

    async def commit_to_branch(self, branch: str, message: str) -> str:
        """Commit the shadow's state on top of the checkpoint and point a new
        branch of the user's repository at it (the user's HEAD stays)."""
        self._open()
        return await off_loop(self._commit_to_branch, branch, message)

    def _commit_to_branch(self, branch: str, message: str) -> str:
        run_git(self.worktree, "-c", "user.name=ornith-lsp", "-c", "user.email=ornith-lsp@localhost",
                "commit", "-q", "-a", "-m", message)
        head = str(run_git(self.worktree, "rev-parse", "HEAD")).strip()
        run_git(self.worktree, "branch", branch, head)
        return head

    @contextlib.asynccontextmanager
    async def pristine(self) -> AsyncIterator[Path]:
        """A clean checkout of the checkpoint, the guard's base state, removed
        on exit.  The user's own tree cannot serve, since it may hold unsaved
        or newer edits."""
        self._open()
        tmp = Path(tempfile.mkdtemp(prefix="ornith-base-"))
        tree = tmp / "base"
        try:
            await off_loop(self._add_pristine, tmp, tree)
            yield tree
        finally:
            leftovers.untrack(tmp)
            with contextlib.suppress(Exception):
                await off_loop(self._remove_pristine, tmp, tree)

    def _add_pristine(self, tmp: Path, tree: Path) -> None:
        leftovers.mark(tmp, self.repo.top, kind="pristine base")
        run_git(self.worktree, "worktree", "add", "--detach", str(tree), self.base_commit)
        leftovers.track(tmp, self.repo.top, tree)

    def _remove_pristine(self, tmp: Path, tree: Path) -> None:
        try:
            leftovers.remove_worktree(self.repo.top, tree, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    async def close(self) -> None:
        """Remove the worktree and its bookkeeping; the checkpoint stays."""
        if self._closed:
            return
        self._closed = True
        await off_loop(self._remove)

    def _remove(self) -> None:
        leftovers.remove_worktree(self.repo.top, self.worktree, self._container)
        leftovers.untrack(self._container)

    async def __aenter__(self) -> Shadow:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _text(relpath: str, data: bytes) -> str:
    if b"\0" in data:
        raise ShadowError(f"{relpath}: a binary file; only text files can be read or edited")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ShadowError(f"{relpath}: not UTF-8 ({exc.reason} at byte {exc.start}); only UTF-8 text can be edited") from None
