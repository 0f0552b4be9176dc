"""The MCP tools' inputs and outputs.

The input models are the tools' JSON Schemas as the calling agent sees them:
plain field names, a description on each, unknown fields refused (a typo
should fail loudly, not be ignored).  The outputs are the structured results,
whose schemas are advertised too, so a client can check what it gets.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ROOT = ("Absolute path of the project folder: a folder inside a git repository. "
        "Default: the folder the server was started in.")
DIFF = ("A unified diff in `git diff` format, paths relative to root (as `git diff --relative` "
        "prints them in root). It must apply exactly to the files as they are now.")


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")

    root: str | None = Field(None, description=ROOT)


class RunTestsInput(_Input):
    """Run the project's tests (in a shadow copy; nothing is written to root)."""


class GuardCheckInput(_Input):
    diff: str = Field(description=DIFF)
    tests: list[str] = Field(default_factory=list, description=(
        "Test ids that must pass with the change, e.g. tests/test_x.py::test_y; graded on the "
        "original test files. Empty: no test is run, only the guard's other layers."))


class VerifyPatchInput(_Input):
    diff: str = Field(description=DIFF)
    tests: list[str] = Field(default_factory=list, description=(
        "The tests the patch should make pass, e.g. tests/test_x.py::test_y. Every test that "
        "passes now must keep passing as well."))


class FixInput(_Input):
    test_id: str | None = Field(None, description="A failing test to fix, as run_tests names it.")
    file: str | None = Field(None, description="Or a problem at a place: its file, relative to root.")
    line: int | None = Field(None, ge=1, description="The problem's line in file (1-based). Default 1.")
    message: str | None = Field(None, description="What is wrong at file:line, e.g. a diagnostic's text.")


# -- outputs --------------------------------------------------------------------------------
class Failure(BaseModel):
    id: str = Field(description="the failing test's id; pass it to fix as test_id")
    message: str
    file: str | None = Field(None, description="where it failed, relative to root")
    line: int | None = None


class TestsResult(BaseModel):
    __test__ = False  # not a pytest class

    passed: int = Field(description="how many tests passed")
    failed: int
    failures: list[Failure] = Field(default_factory=list)
    command: str | None = Field(None, description="the test command that ran (Python projects)")
    notes: list[str] = Field(default_factory=list, description="why a run verified nothing, and other remarks")


class GuardFinding(BaseModel):
    layer: Literal["boundary", "grading", "monitor", "judge"]
    monitor: str = Field(description="the rule that fired")
    path: str | None = Field(None, description="from the repository's top")
    line: int | None = None
    evidence: str


class GuardVerdict(BaseModel):
    allowed: bool = Field(description="true exactly when there are no findings")
    findings: list[GuardFinding] = Field(default_factory=list, description="what blocks the change")
    concerns: list[GuardFinding] = Field(default_factory=list, description="doubts that do not block it")
    notes: list[str] = Field(default_factory=list, description="how the verdict was reached")

    @classmethod
    def of(cls, verdict: dict[str, Any]) -> GuardVerdict:
        """From the guard's ``Verdict.to_dict()``."""
        return cls.model_validate(verdict)


class PatchResult(BaseModel):
    verified: bool = Field(description="the guard allows the patch and the tests behind it pass")
    reason: str = Field(description="why (not), in words")
    graded: list[str] = Field(default_factory=list, description=(
        "the tests that had to pass, on the original test files, from the repository's top"))
    verdict: GuardVerdict


class FixOutcome(BaseModel):
    status: str = Field(description="fixed, unfixed, vetoed, budget, error, cancelled or interrupted")
    verified: bool
    reason: str
    task: str = Field(description="what was fixed, in one line")
    diff: str = Field("", description="the verified patch, paths relative to root; empty unless verified")
    verdict: GuardVerdict | None = Field(None, description="the guard's last verdict, when it judged a change")
