"""A pytest plugin ornith-lsp loads into the test runs it starts (``-p ornith_hang``).

A test that loops forever is a bug to fix like any other, but if the whole
run is killed at its time limit pytest writes no report, and the hang would
read as "nothing failed".  Here a test that runs longer than
``ORNITH_TEST_CASE_TIMEOUT_S`` is interrupted with an exception raised where
it was stuck, so it fails with a traceback that points at the loop and the
rest of the suite still runs and reports.

Standalone on purpose: it is put on ``PYTHONPATH`` by directory, so it also
loads into a project's own interpreter, where ornith-lsp is not installed.
"""

from __future__ import annotations

import os
import signal
import threading

import pytest


class HungTest(Exception):
    """The test ran past its per-test time limit."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    try:
        limit = float(os.environ.get("ORNITH_TEST_CASE_TIMEOUT_S") or 0)
    except ValueError:
        limit = 0.0
    if limit <= 0 or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def hung(signum, frame):
        raise HungTest(f"the test ran longer than {limit:g}s and was stopped (an endless loop or a wait that never ends?)")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
