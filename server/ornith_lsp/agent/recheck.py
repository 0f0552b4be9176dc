"""A verified fix is verified against a base; the base may move.

While the agent works the user commits, checks out another branch, edits or
deletes a file.  Before a fix is offered its base is compared with the
workspace as it is now (the whole tree, unsaved buffers included, by tree
id).  Unchanged: offered as verified.  Changed: the diff is laid on the new
state and the guard verifies it again there (pristine tests in a fresh
process, the target test and the regression baseline); it is offered only if
that passes, otherwise it is refused with the reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from ornith_lsp.agent.session import FixResult, _guard_task
from ornith_lsp.guard.check import acheck_diff
from ornith_lsp.guard.judge import Judge
from ornith_lsp.guard.verdict import GuardError
from ornith_lsp.settings import Settings
from ornith_lsp.workspace import PatchError, Shadow, WorkspaceError, diffs
from ornith_lsp.workspace.checkpoints import snapshot_tree
from ornith_lsp.workspace.repo import open_repo, run_git


def base_changed(root: Path, result: FixResult, overlays: dict[str, str] | None = None) -> str | None:
    """What changed since the fix's checkpoint, in words; None when nothing did."""
    repo = open_repo(root)
    commit = _checkpoint_commit(root, result)
    if commit is None:
        return None
    then = str(run_git(repo.top, "rev-parse", f"{commit}^{{tree}}")).strip()
    now = snapshot_tree(root, overlays)
    if then == now:
        return None
    parents = str(run_git(repo.top, "rev-list", "--parents", "-n", "1", commit)).split()[1:]
    head = repo.head()
    what = []
    if (parents[0] if parents else None) != head:
        what.append(f"HEAD moved from {(parents[0] if parents else 'nothing')[:10]} to {(head or 'nothing')[:10]}")
    names = str(run_git(repo.top, "diff-tree", "-r", "--name-status", "--no-renames", then, now)).splitlines()
    changed = [line.split("\t", 1)[1] + (" (deleted)" if line.startswith("D") else "") for line in names if "\t" in line]
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        what.append(f"changed: {shown}")
    return "; ".join(what) or "the workspace changed"


def _checkpoint_commit(root: Path, result: FixResult) -> str | None:
    if not result.checkpoint_id:
        return None
    out = str(run_git(open_repo(root).top, "for-each-ref", "--format=%(objectname)",
                      f"refs/ornith/checkpoints/{result.checkpoint_id}")).strip()
    return out or None


async def recheck(result: FixResult, *, root: Path, settings: Settings, overlays: dict[str, str] | None = None,
                  baseline: Sequence[str] = (), judge: Judge | None = None) -> FixResult:
    """``result`` as it may be offered now: unchanged when the base did not
    move; re-verified (with the diff rebased) or refused when it did."""
    if not result.verified:
        return result
    changed = await asyncio.to_thread(base_changed, root, result, overlays)
    if changed is None:
        return result
    refused = f"the repository changed while the fix was made ({changed})"
    try:
        async with await Shadow.create(root, overlays, label=f"recheck {result.task.id}") as shadow:
            patches = diffs.parse(result.diff)

            def read(path: str) -> str | None:
                try:
                    return shadow.read(path)
                except WorkspaceError:
                    return None

            try:
                after = diffs.apply(patches, read, exact=False)
            except PatchError as exc:
                return _refuse(result, f"{refused}; the fix no longer applies: {exc}")
            for path, text in after.items():
                if text is None:
                    (shadow.path / path).unlink(missing_ok=True)
                else:
                    shadow.write(path, text)
            top_diff = await shadow.diff(top_level=True)
            g = settings.guard
            async with shadow.pristine() as base:
                verdict = await acheck_diff(base, top_diff, _guard_task(result.task, baseline), judge=judge,
                                            judge_mode=g.judge, extra_protected=g.protected,
                                            unprotected=g.unprotected, allow_new_tests=g.allow_new_tests,
                                            timeout_s=settings.agent.test_timeout_s)
            if not verdict.allowed:
                reasons = "; ".join(f"{f.monitor}: {f.evidence}" for f in verdict.findings)[:400] if verdict.findings else "blocked"
                return _refuse(result, f"{refused}; on the new base the fix fails verification: {reasons}")
            result.diff = await shadow.diff()
            result.verdict = verdict.to_dict()
            result.notes.append(f"re-verified against the new base ({changed})")
            result.report.reason = f"{result.report.reason}; re-verified after the repository changed ({changed})"
    except (GuardError, WorkspaceError, OSError) as exc:
        return _refuse(result, f"{refused}; it could not be re-verified: {exc}")
    return result


def _refuse(result: FixResult, reason: str) -> FixResult:
    result.verified = False
    result.report.status = "unfixed"
    result.report.reason = reason
    result.notes.append(reason)
    return result
