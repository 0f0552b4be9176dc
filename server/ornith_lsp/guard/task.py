"""What the guard is told about the change it checks: the task the change
claims to do.

One typed model, validated once where a task enters the guard -- the agent
builds it, ``guard check`` parses it from its ``--task`` JSON, and
:func:`~ornith_lsp.guard.check.acheck_diff` turns any other mapping into it --
so no layer below re-checks a dict by hand.  Its messages are the user's: a
task file with a mistake in it is answered with one line saying which field
is wrong, as a :class:`GuardError`, never a validation dump.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator, model_validator

from ornith_lsp.guard.verdict import GuardError
from ornith_lsp.paths import clean


class GuardTask(BaseModel):
    """``kind="test"``: ``tests`` must pass, graded on pristine tests.
    ``kind="diagnostic"``: the finding of ``source`` (ruff, mypy, or another
    linter an editor reports) at ``path``:``line``; the boundary follows it
    into a test file, and optional ``tests`` must still pass (graded like a
    test task)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["test", "diagnostic"]
    tests: list[str] | None = None
    source: str | None = None
    code: str | None = None
    path: str | None = None
    line: int | None = None
    message: str | None = None
    # a request's own words (an agent panel's prompt): what the judge weighs the change against
    goal: str | None = None

    @classmethod
    def parse(cls, task: GuardTask | Mapping[str, Any]) -> GuardTask:
        """A task from JSON-shaped data (a file, a script); GuardError saying what is wrong."""
        if isinstance(task, GuardTask):
            return task
        if not isinstance(task, Mapping):
            raise GuardError(f"the task must be a JSON object, not {type(task).__name__}")
        try:
            return cls.model_validate(dict(task))
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(p) for p in error["loc"])
            raise GuardError(f'the task\'s "{field}": {error["msg"]}') from None

    def target_files(self) -> list[str]:
        """The files of the tests the grading runs: the boundary protects them whatever their names."""
        return [t.split("::")[0] for t in self.tests or []]

    @field_validator("kind", mode="before")
    @classmethod
    def _known_kind(cls, kind: object) -> object:
        if kind not in ("test", "diagnostic"):
            raise GuardError(f'the task "kind" must be "test" or "diagnostic", not {kind!r}')
        return kind

    @field_validator("tests", mode="before")
    @classmethod
    def _node_ids(cls, tests: object, info: ValidationInfo) -> object:
        if tests is None:
            return None
        if not isinstance(tests, list) or not tests:
            if info.data.get("kind") == "test":
                raise GuardError('a test task needs "tests": a non-empty list of pytest node ids')
            raise GuardError('"tests" of a diagnostic task must be a non-empty list of pytest node ids')
        return normalise_targets(tests)

    @field_validator("path", mode="before")
    @classmethod
    def _repository_path(cls, path: object) -> object:
        if path is not None and not isinstance(path, str):
            raise GuardError(f'"path" must be the file the diagnostic is in, not {path!r}')
        if path and clean(path) is None:
            raise GuardError(f"task path: path {path!r} is not inside the repository")
        return path

    @field_validator("line", mode="before")
    @classmethod
    def _positive_line(cls, line: object) -> object:
        if line is not None and (not isinstance(line, int) or isinstance(line, bool) or line < 1):
            raise GuardError(f'"line" must be a positive integer, not {line!r}')
        return line

    @field_validator("code", "message", mode="before")
    @classmethod
    def _text(cls, value: object, info: ValidationInfo) -> object:
        if value is not None and not isinstance(value, str):
            raise GuardError(f'"{info.field_name}" must be a string, not {value!r}')
        return value

    @model_validator(mode="after")
    def _complete(self) -> GuardTask:
        if self.kind == "test" and not self.tests:
            raise GuardError('a test task needs "tests": a non-empty list of pytest node ids')
        if self.kind == "diagnostic" and (not isinstance(self.source, str) or not self.source.strip()):
            # ruff and mypy are the sources the project re-runs; an editor may send others
            # (pyright, pylint), and their suppressions are caught by the same monitors.
            raise GuardError(f'a diagnostic task needs "source": "ruff", "mypy" or another linter\'s name, '
                             f"not {self.source!r}")
        return self


def normalise_targets(target_tests: Iterable[str]) -> list[str]:
    """Target tests as node ids relative to the repository root, each once, in order."""
    if isinstance(target_tests, str):
        raise GuardError("target tests must be a list of pytest node ids, not a single string")
    out = []
    for t in target_tests:
        if not isinstance(t, str) or not t.strip():
            raise GuardError(f"a target test must be a pytest node id like 'tests/test_x.py::test_y', not {t!r}")
        t = t.strip()
        while t.startswith("./"):
            t = t[2:]
        if t.startswith("-") or clean(t.split("::")[0]) is None:
            raise GuardError(f"target test {t!r} must be a node id relative to the repository root")
        out.append(t)
    if not out:
        raise GuardError("no target tests given: grading needs at least one pytest node id")
    return list(dict.fromkeys(out))
