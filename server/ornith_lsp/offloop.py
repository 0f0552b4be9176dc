"""Blocking work (git, copying or walking a file tree) in a thread, so the
event loop that answers the editor never waits on the disk.

One helper, used wherever the verify and apply paths touch git or a tree
(the workspace, the guard, the test runs): a hover must not wait for ``git
worktree add`` of a large repository.  It sits on the lowest floor, beside
``procs``, so every package may use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


async def off_loop(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` in a worker thread.

    A thread cannot be stopped, so a cancelled caller still waits for it to
    finish before the cancellation goes on: what it was making (a worktree, a
    copied tree, a ref) is complete, not half-made, when the caller's clean-up
    runs, and a temporary directory is not removed while it is still being
    written into."""
    job = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        await settled(job)
        raise


async def settled(job: asyncio.Future[T]) -> None:
    """Wait until ``job`` is done, however often the waiter is cancelled
    meanwhile; its outcome is left on it (an error counts as retrieved: the
    caller's cancellation is what goes on)."""
    while not job.done():
        try:
            await asyncio.wait([job])
        except asyncio.CancelledError:  # cancelled again: still wait
            continue
    if not job.cancelled():
        job.exception()


@contextlib.asynccontextmanager
async def temporary_directory(prefix: str) -> AsyncIterator[Path]:
    """``tempfile.TemporaryDirectory`` for async code: what is put in it (a
    copy of the whole tree, for the guard) is removed off the event loop."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        await off_loop(shutil.rmtree, path, ignore_errors=True)
