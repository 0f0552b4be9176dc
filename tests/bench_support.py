"""Starting the embedded backend for a test, stopped however the test ends."""

from __future__ import annotations

import contextlib

from ornith_lsp.backends.runtime import Backend, make_plan


@contextlib.asynccontextmanager
async def embedded(settings):
    plan, problems = make_plan(settings)
    assert not problems, problems
    backend = Backend(settings, plan)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.stop()
