"""Nothing left behind: shadow directories carry their owner, and what a dead
owner left is swept.

Every directory that holds a worktree of the user's repository (a shadow, the
guard's pristine base) gets a marker file naming the process that made it
(pid and kernel start time, so a recycled pid is not mistaken for the owner)
and the repository it belongs to.  It is written *before* ``git worktree
add``, so even a process killed in the middle of creating one leaves a
directory that can be recognised.

Three layers make interruption a normal ending:

* the normal path: ``Shadow.close`` removes the worktree and unregisters it;
* :func:`remove_tracked`: the worktrees this process has open, removed
  synchronously -- for a last-resort exit that cannot wait for asyncio;
* :func:`sweep`: at start-up, what earlier processes that died (SIGKILL, a
  power cut) left: marked directories whose owner is gone, and their
  registrations in the repositories' ``.git/worktrees``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel

from ornith_lsp import procs
from ornith_lsp.workspace.checkpoints import prune_checkpoints
from ornith_lsp.workspace.repo import WorkspaceError, open_repo, run_git

log = logging.getLogger("ornith_lsp.workspace")

MARKER = ".ornith-owner.json"
# the prefixes of the temporary directories that may hold worktrees
PREFIXES = ("ornith-shadow-", "ornith-base-")


class Owner(BaseModel):
    """What a marker says: who made the directory, for which repository."""

    pid: int
    start: int | None = None
    repo: str
    created: float
    kind: str = "shadow"


class Leftover(BaseModel):
    """A directory (and maybe a worktree registration) whose owner is gone."""

    path: str
    repo: str | None
    owner_pid: int | None
    kind: str
    registered: bool = False
    reason: str

    def describe(self) -> str:
        reg = ", registered as a worktree of " + self.repo if self.registered and self.repo else ""
        return f"{self.path} ({self.kind}{reg}): {self.reason}"


_tracked: dict[Path, tuple[Path, Path]] = {}  # container -> (repo top, worktree)
_lock = threading.Lock()


def mark(container: Path, repo_top: Path, kind: str = "shadow") -> None:
    """Claim ``container`` for this process; call before adding a worktree in it."""
    owner = Owner(pid=os.getpid(), start=procs.start_time(os.getpid()), repo=str(repo_top),
                  created=time.time(), kind=kind)
    (container / MARKER).write_text(owner.model_dump_json())


def track(container: Path, repo_top: Path, worktree: Path) -> None:
    with _lock:
        _tracked[container] = (repo_top, worktree)


def untrack(container: Path) -> None:
    with _lock:
        _tracked.pop(container, None)


def remove_worktree(repo_top: Path, worktree: Path, container: Path | None = None) -> None:
    """Remove a worktree and its registration; a repository that is gone, or
    a worktree git has already forgotten, is fine."""
    if repo_top.is_dir():
        try:
            run_git(repo_top, "worktree", "remove", "--force", str(worktree))
        except WorkspaceError:
            shutil.rmtree(worktree, ignore_errors=True)
        try:
            run_git(repo_top, "worktree", "prune")
        except WorkspaceError:
            pass
    if container is not None:
        shutil.rmtree(container, ignore_errors=True)
    else:
        shutil.rmtree(worktree, ignore_errors=True)


def remove_tracked() -> list[Path]:
    """Remove every worktree this process still has open.  Synchronous, for
    the moments an event loop cannot be waited for (a hard exit)."""
    with _lock:
        items = list(_tracked.items())
        _tracked.clear()
    for container, (repo_top, worktree) in items:
        try:
            remove_worktree(repo_top, worktree, container)
        except Exception:  # a last resort must go on with the rest
            log.debug("could not remove %s", container, exc_info=True)
    return [c for c, _ in items]


# -- finding and sweeping leftovers ------------------------------------------------------
def read_owner(container: Path) -> Owner | None:
    try:
        return Owner.model_validate_json((container / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _orphaned(owner: Owner) -> bool:
    return owner.pid != os.getpid() and not procs.owner_alive(owner.pid, owner.start)


def _worktrees(repo_top: Path) -> list[Path]:
    """Linked worktrees registered in the repository (the main one left out)."""
    try:
        out = str(run_git(repo_top, "worktree", "list", "--porcelain"))
    except WorkspaceError:
        return []
    paths = [Path(line[len("worktree "):]) for line in out.splitlines() if line.startswith("worktree ")]
    return paths[1:]


def _container_of(worktree: Path) -> Path | None:
    """The marked directory a worktree sits in (a shadow's worktree is a child
    of its container), or None when it is not ours."""
    for candidate in (worktree, worktree.parent):
        if (candidate / MARKER).is_file():
            return candidate
    return None


def find(repos: Iterable[Path] = (), temp_dirs: Iterable[Path] | None = None) -> list[Leftover]:
    """Leftovers of dead owners: marked directories in ``temp_dirs`` (default:
    the system's temporary directory) and registered worktrees of ``repos``
    that sit in marked directories, or whose directory is gone but whose path
    is one of ours.  Nothing is removed here."""
    found: dict[str, Leftover] = {}
    for base in (temp_dirs if temp_dirs is not None else [Path(tempfile.gettempdir())]):
        try:
            entries = [p for p in Path(base).iterdir() if p.name.startswith(PREFIXES) and p.is_dir()]
        except OSError:
            continue
        for container in entries:
            owner = read_owner(container)
            if owner is None or not _orphaned(owner):
                continue
            found[str(container)] = Leftover(path=str(container), repo=owner.repo, owner_pid=owner.pid,
                                             kind=owner.kind, reason=f"its owner (pid {owner.pid}) is gone")
    for repo in repos:
        top = Path(repo)
        for worktree in _worktrees(top):
            container = _container_of(worktree)
            if container is not None:
                owner = read_owner(container)
                if owner is None or not _orphaned(owner):
                    continue
                found[str(container)] = Leftover(path=str(container), repo=str(top), owner_pid=owner.pid,
                                                 kind=owner.kind, registered=True,
                                                 reason=f"its owner (pid {owner.pid}) is gone")
            elif not worktree.exists() and any(part.startswith(PREFIXES) for part in worktree.parts):
                found[str(worktree)] = Leftover(path=str(worktree), repo=str(top), owner_pid=None, kind="registration",
                                                registered=True, reason="registered, but its directory is gone")
    return sorted(found.values(), key=lambda x: x.path)


def sweep(repos: Iterable[Path] = (), temp_dirs: Iterable[Path] | None = None) -> list[Leftover]:
    """Remove what :func:`find` finds: the worktree registration (``git
    worktree remove --force``, then ``prune``) and the directory."""
    repos = list(repos)
    swept = []
    for item in find(repos, temp_dirs):
        path = Path(item.path)
        repo = Path(item.repo) if item.repo else None
        try:
            if repo is not None and repo.is_dir():
                worktrees = [w for w in _worktrees(repo) if w == path or w.parent == path]
                for worktree in worktrees:
                    remove_worktree(repo, worktree)
                run_git(repo, "worktree", "prune")
            shutil.rmtree(path, ignore_errors=True)
        except (OSError, WorkspaceError) as exc:
            log.warning("could not sweep %s: %s", path, exc)
            continue
        swept.append(item)
    return swept


def tidy(root: Path, *, protect: Iterable[str] = ()) -> list[str]:
    """Start-up housekeeping for the repository holding ``root``: sweep what
    dead runs left (here and in the temporary directory) and prune old
    checkpoints by the documented policy.  Returns one note per thing done;
    never raises, since housekeeping must not stop the real work."""
    notes: list[str] = []
    try:
        top = open_repo(root).top
    except WorkspaceError:
        return notes
    try:
        for item in sweep([top]):
            notes.append(f"removed a leftover of an earlier run: {item.describe()}")
    except Exception as exc:  # housekeeping is best effort
        log.warning("sweeping leftovers failed: %s", exc)
    try:
        pruned = prune_checkpoints(root, protect=list(protect))
        if pruned:
            log.info("pruned %d checkpoint(s)", len(pruned))
    except Exception as exc:
        log.warning("pruning checkpoints failed: %s", exc)
    return notes
