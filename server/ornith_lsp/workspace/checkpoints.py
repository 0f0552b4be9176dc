"""Checkpoints: the state a fix started from, kept in the user's repository.

A checkpoint is an ordinary commit -- HEAD plus the working-tree changes plus
unsaved buffers -- reachable from ``refs/ornith/checkpoints/<id>``, outside
every branch, so ``git log``, the index and the working tree never notice it
while ``git gc`` keeps it.  When a fix is accepted, its result is recorded as a
child commit under ``refs/ornith/fixes/<id>``; the pair says exactly which
files the fix touched, which is what :func:`rollback` restores.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ornith_lsp.paths import inside
from ornith_lsp.workspace.edits import write_atomic
from ornith_lsp.workspace.repo import IDENTITY, UserRepo, WorkspaceError, open_repo

CHECKPOINTS = "refs/ornith/checkpoints/"
FIXES = "refs/ornith/fixes/"


@dataclass(frozen=True)
class Checkpoint:
    id: str
    commit: str
    created: datetime
    label: str = ""
    fix_commit: str | None = None


@dataclass(frozen=True)
class Rollback:
    """What a rollback did.  ``undo`` is the checkpoint taken just before it:
    ``rollback(root, undo)`` puts the rolled-back files back."""

    restored: list[str]
    removed: list[str]
    undo: str


def create_checkpoint(root: Path, overlays: Mapping[str, str] | None = None, *, label: str = "") -> Checkpoint:
    """Snapshot the workspace as the user sees it, without touching it.

    The snapshot is built in a private copy of the user's index (so stat
    information makes ``git add -A`` cheap and the real index stays
    byte-identical), then the editor's unsaved buffers are laid over it.  In a
    repository without commits the checkpoint is an orphan commit.
    """
    repo = open_repo(root)
    tree = snapshot_tree(root, overlays)
    checkpoint_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    head = repo.head()
    commit = _commit(repo, tree, [head] if head else [], label or f"ornith checkpoint {checkpoint_id}")
    repo.git("update-ref", CHECKPOINTS + checkpoint_id, commit)
    return Checkpoint(checkpoint_id, commit, datetime.now().astimezone(), label)


def snapshot_tree(root: Path, overlays: Mapping[str, str] | None = None) -> str:
    """The tree id of the workspace as the user sees it (see
    :func:`create_checkpoint`), without making a commit or a ref: comparing it
    with a checkpoint's tree says whether anything changed since."""
    repo = open_repo(root)
    with tempfile.TemporaryDirectory(prefix="ornith-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        user_index = repo.top / str(repo.git("rev-parse", "--git-path", "index")).strip()
        if user_index.is_file():
            shutil.copyfile(user_index, env["GIT_INDEX_FILE"])
        repo.git("add", "-A", env=env)
        for rel, text in (overlays or {}).items():
            _overlay(repo, rel, text, env, Path(tmp))
        return str(repo.git("write-tree", env=env)).strip()


def _overlay(repo: UserRepo, rel: str, text: str, env: Mapping[str, str], tmp: Path) -> None:
    """Put an unsaved buffer into the snapshot index, keeping the file's mode."""
    path = repo.to_repo(rel)
    staged = str(repo.git("ls-files", "-s", "--", path, env=env)).split()
    mode = staged[0] if staged else "100644"
    if mode not in ("100644", "100755"):
        raise WorkspaceError(f"{rel}: an unsaved buffer for a symlink or submodule cannot be snapshotted")
    buffer = tmp / "buffer"
    buffer.write_bytes(text.encode("utf-8", "surrogateescape"))
    blob = str(repo.git("hash-object", "-w", f"--path={path}", str(buffer))).strip()
    repo.git("update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}", env=env)


def _commit(repo: UserRepo, tree: str, parents: Sequence[str], message: str) -> str:
    args = ["commit-tree", tree, "-m", message]
    for parent in parents:
        args += ["-p", parent]
    return str(repo.git(*args, env=IDENTITY)).strip()


def record_fix(root: Path, checkpoint_id: str, tree: str, label: str = "") -> str:
    """Remember the tree a fix produced, as a child of its checkpoint."""
    repo = open_repo(root)
    base = _resolve(repo, checkpoint_id)
    commit = _commit(repo, tree, [base], label or f"ornith fix {checkpoint_id}")
    repo.git("update-ref", FIXES + checkpoint_id, commit)
    return commit


def list_checkpoints(root: Path) -> list[Checkpoint]:
    """Every checkpoint of the repository, oldest first."""
    repo = open_repo(root)
    fmt = "%(refname)%00%(objectname)%00%(committerdate:iso-strict)%00%(subject)"
    fixes = {
        line.split("\0")[0].removeprefix(FIXES): line.split("\0")[1]
        for line in str(repo.git("for-each-ref", f"--format={fmt}", FIXES)).splitlines()
    }
    found = []
    for line in str(repo.git("for-each-ref", f"--format={fmt}", CHECKPOINTS)).splitlines():
        ref, commit, date, subject = line.split("\0")
        cid = ref.removeprefix(CHECKPOINTS)
        found.append(Checkpoint(cid, commit, datetime.fromisoformat(date), subject, fixes.get(cid)))
    return sorted(found, key=lambda c: (c.created, c.id))


# The pruning policy (README "Checkpoints"): a repository keeps at most this
# many checkpoints, the newest, and none older than this many days.
KEEP_CHECKPOINTS = 50
KEEP_DAYS = 30.0


def prune_checkpoints(root: Path, *, keep: int = KEEP_CHECKPOINTS, max_age_days: float = KEEP_DAYS,
                      protect: Sequence[str] = (), now: datetime | None = None) -> list[str]:
    """Delete the refs of checkpoints beyond the newest ``keep`` or older than
    ``max_age_days`` (with their fix refs), except those in ``protect``
    (checkpoints a running session may still roll back to).  Every run and
    every ``ornith.runTests`` makes one, so without this ``refs/ornith/`` only
    grows.  The objects go with git's own gc; the user's branches never
    referred to them.  Returns the pruned ids."""
    repo = open_repo(root)
    found = list_checkpoints(root)
    now = now or datetime.now().astimezone()
    newest = {c.id for c in found[-keep:]} if keep > 0 else set()
    doomed = [c for c in found if c.id not in protect
              and (c.id not in newest or (now - c.created).total_seconds() > max_age_days * 86400)]
    known = {c.id for c in found}
    orphan_fixes = [line.removeprefix(FIXES) for line in
                    str(repo.git("for-each-ref", "--format=%(refname)", FIXES)).splitlines()
                    if line.removeprefix(FIXES) not in known]
    if not doomed and not orphan_fixes:
        return []
    lines = [f"delete {CHECKPOINTS}{c.id}\n" for c in doomed]
    lines += [f"delete {FIXES}{cid}\n" for cid in [c.id for c in doomed if c.fix_commit] + orphan_fixes]
    _update_refs(repo, "".join(lines))
    return [c.id for c in doomed]


def _update_refs(repo: UserRepo, script: str) -> None:
    """``git update-ref --stdin``: one transaction, so either every listed ref
    goes or none does."""
    repo.git("update-ref", "--stdin", stdin=script.encode())


def _resolve(repo: UserRepo, checkpoint_id: str) -> str:
    commit = str(repo.git("for-each-ref", "--format=%(objectname)", CHECKPOINTS + checkpoint_id)).strip()
    if not commit or "/" in checkpoint_id:
        raise WorkspaceError(f"no checkpoint {checkpoint_id!r} in {repo.top}; list_checkpoints() shows those there are")
    return commit


def _entry(repo: UserRepo, commit: str, path: str) -> tuple[str, str] | None:
    """(mode, blob) of ``path`` in ``commit``, None when absent."""
    out = str(repo.git("ls-tree", "-z", commit, "--", path)).split("\0")[0]
    if not out:
        return None
    mode, kind, blob = out.split("\t")[0].split()
    return (mode, blob) if kind == "blob" else None


def rollback(root: Path, checkpoint_id: str, paths: Sequence[str] | None = None) -> Rollback:
    """Put the files a fix touched back to their content at the checkpoint.

    Only those files (or ``paths``, root-relative, when given): anything else
    the user changed since stays.  A file the fix created is removed.  The
    current state is checkpointed first, and the rollback is recorded as that
    checkpoint's fix, so a rollback can itself be rolled back.
    """
    repo = open_repo(root)
    base = _resolve(repo, checkpoint_id)
    if paths is None:
        fix = str(repo.git("for-each-ref", "--format=%(objectname)", FIXES + checkpoint_id)).strip()
        if not fix:
            raise WorkspaceError(f"checkpoint {checkpoint_id} has no recorded fix: say which paths to restore")
        changed = str(repo.git("diff-tree", "-r", "-z", "--no-renames", "--name-only", base, fix))
        touched = [p for p in changed.split("\0") if p]
    else:
        touched = [repo.to_repo(p) for p in paths]
    undo = create_checkpoint(root, label=f"before rollback to {checkpoint_id}")
    restored, removed = [], []
    with tempfile.TemporaryDirectory(prefix="ornith-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        repo.git("read-tree", undo.commit, env=env)
        for path in touched:
            entry = _entry(repo, base, path)
            target = _user_file(repo, path)
            if entry is None:
                if target.is_symlink() or target.is_file():
                    target.unlink()
                    removed.append(path)
                repo.git("update-index", "--force-remove", "--", path, env=env)
                continue
            mode, blob = entry
            data = repo.git("cat-file", "--filters", f"{base}:{path}", raw=True)
            if mode == "120000":
                target.unlink(missing_ok=True)
                os.symlink(os.fsdecode(data), target)
            else:
                write_atomic(target, data if isinstance(data, bytes) else data.encode(), 0o755 if mode == "100755" else 0o644)
            restored.append(path)
            repo.git("update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}", env=env)
        tree = str(repo.git("write-tree", env=env)).strip()
    record_fix(root, undo.id, tree, f"rollback to {checkpoint_id}")
    rel = [repo.from_repo(p) or p for p in restored], [repo.from_repo(p) or p for p in removed]
    return Rollback(rel[0], rel[1], undo.id)


def _user_file(repo: UserRepo, path: str) -> Path:
    """The user's file for a repository path, refusing one reached through a
    symlinked directory that leads out of the repository.  The file itself may
    be a symlink: the write renames a new file over it."""
    target = inside(repo.top, path, follow_last=False)
    if target is None:
        raise WorkspaceError(f"{path}: its directory leads out of the repository; refusing to write")
    return target
