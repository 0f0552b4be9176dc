"""One task model for every source, so the agent loop never asks where a task came from.

A diagnostic from the editor, a failing test, a linter finding and a user's
request differ only in what counts as "fixed": for a test, the test passes; for
a diagnostic, its source stops reporting it; for a request (a goal in the
user's words, from an agent panel), no test that passed before fails and the
tests the user named pass.  That difference lives in ``verify``.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, Field

Source = Literal["diagnostic", "test", "ruff", "mypy", "request"]


class Location(BaseModel):
    """A place in the workspace: ``path`` is relative to the workspace root, lines are 1-based."""

    path: str
    line: int = Field(1, ge=1)
    end_line: int | None = None
    column: int | None = None


class Task(BaseModel):
    id: str = ""
    source: Source
    title: str = Field(description="One line for a code action or a report.")
    message: str
    location: Location | None = None
    # test tasks
    test_id: str | None = Field(None, description="pytest node id, e.g. tests/test_x.py::test_y; <test file>::<name> elsewhere")
    traceback: str | None = None
    test_location: Location | None = Field(
        None, description="where the failing assertion is, when ``location`` points at the code under test")
    # diagnostic tasks
    code: str | None = None
    diagnostic_source: str | None = Field(None, description="who reported it: ruff, mypy, pyright, ...")
    # request tasks: ``message`` is the user's goal
    tests: list[str] | None = Field(None, description="request tasks: the tests the user named, which must pass afterwards")

    @property
    def graded_by_tests(self) -> bool:
        """Whether tests decide this task (a test or a request), not a linter re-run."""
        return self.source in ("test", "request")

    def model_post_init(self, __context: object) -> None:
        if not self.id:
            key = "|".join(
                str(x) for x in (self.source, self.test_id, self.code, self.message, *(self.tests or ()),
                                 self.location.path if self.location else "", self.location.line if self.location else "")
            )
            self.id = hashlib.sha1(key.encode()).hexdigest()[:12]
