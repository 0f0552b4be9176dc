"""What a prompt in an agent panel asks for, read without a model.

A panel sends free text.  Three readings, tried in order:

- the failing tests: "fix the failing tests", "fix test_add";
- the findings the prompt names: of a linter ("fix the mypy errors"), with a
  code ("fix E501"), or in a file ("fix calc.py");
- anything else is a request: the user's goal, verified by the tests -- none
  that passed before may fail, and the tests the prompt names must pass.

Reading it with rules keeps the first two exact (a failing test is fixed as
the editor would fix it, with the same verification) and spends the model only
on the fix.  Pure functions: the front end runs the tests and hands in what
they found.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Literal

from pydantic import BaseModel, Field

from ornith_lsp.tasks import Task

Linter = Literal["ruff", "mypy"]

# node ids (tests/test_x.py::test_y[1], src/a.test.ts::suite > case) and bare test names
_NODE_ID = re.compile(r"[\w./-]+\.\w+::[\w\[\]().:-]+")
_TEST_NAME = re.compile(r"(?<![/.])\b(?:test_\w+|\w+_test|Test[A-Z]\w*)\b(?![./])")  # not a file's name
_PATH = re.compile(r"[\w./-]+\.[A-Za-z0-9]{1,6}\b")
_RUFF_CODE = re.compile(r"\b[A-Z]{1,3}\d{3,4}\b")
_MYPY_CODE = re.compile(r"\[([a-z]+(?:-[a-z]+)+|[a-z]{4,})\]")
_FIX = re.compile(r"\b(fix|repair|resolve|make)\b", re.IGNORECASE)
_ALL_TESTS = re.compile(r"\b(failing|broken|red|failed)\s+(tests?|specs?)\b"
                        r"|\b(fix|repair)\s+(the\s+|all\s+(the\s+)?|my\s+)?(tests?|specs?|test suite)\b"
                        r"|\b(tests?|test suite)\s+(pass|green)\b", re.IGNORECASE)


class Intent(BaseModel):
    """One prompt, read."""

    kind: Literal["tests", "findings", "request"]
    goal: str = Field(description="the prompt's text, the user's words")
    tests: list[str] = Field(default_factory=list, description="test names or node ids the prompt names")
    files: list[str] = Field(default_factory=list, description="workspace files the prompt names")
    linters: list[Linter] = Field(default_factory=list, description="linters whose findings the prompt asks about")
    codes: list[str] = Field(default_factory=list, description="diagnostic codes the prompt names")


def named_tests(text: str) -> list[str]:
    """Node ids first, then bare names that are not part of one, in order, once each."""
    ids = _NODE_ID.findall(text)
    rest = _NODE_ID.sub(" ", text)
    names = _TEST_NAME.findall(rest)
    return list(dict.fromkeys(ids + names))


def named_files(text: str, files: Collection[str]) -> list[str]:
    """Workspace files the text names, by path or by a basename that only one file has."""
    by_name: dict[str, list[str]] = {}
    for path in files:
        by_name.setdefault(path.rsplit("/", 1)[-1], []).append(path)
    found: list[str] = []
    for word in _PATH.findall(_NODE_ID.sub(" ", text)):
        word = word.removeprefix("./")
        if word in files:
            found.append(word)
        elif len(by_name.get(word, [])) == 1:
            found.append(by_name[word][0])
    return list(dict.fromkeys(found))


def linters_named(text: str) -> list[Linter]:
    low = text.lower()
    out: list[Linter] = []
    if "ruff" in low or re.search(r"\blint", low) or _RUFF_CODE.search(text):
        out.append("ruff")
    if "mypy" in low or re.search(r"\btype (error|check)", low) or _MYPY_CODE.search(text):
        out.append("mypy")
    return out


def read_prompt(text: str, files: Collection[str] = ()) -> Intent:
    """The reading of ``text``; ``files`` are the workspace's files (relative paths)."""
    goal = text.strip()
    tests, linters = named_tests(goal), linters_named(goal)
    paths = [f for f in named_files(goal, files) if f not in tests]
    codes = list(dict.fromkeys(_RUFF_CODE.findall(goal) + _MYPY_CODE.findall(goal)))
    fix = bool(_FIX.search(goal))
    if linters and fix:
        return Intent(kind="findings", goal=goal, linters=linters, files=paths, codes=codes, tests=tests)
    if _ALL_TESTS.search(goal) or (fix and tests):
        return Intent(kind="tests", goal=goal, tests=tests, files=paths)
    if fix and paths:
        return Intent(kind="findings", goal=goal, files=paths, tests=tests)
    return Intent(kind="request", goal=goal, tests=tests, files=paths)


def matches(name: str, node_id: str) -> bool:
    """Whether a test the user named is this node id: the id itself, a
    parametrised case of it, or its last part (``test_add`` of ``t.py::test_add``)."""
    if node_id == name or node_id.startswith(name + "["):
        return True
    last = node_id.split("::")[-1]
    return last == name or last.split("[")[0] == name


def resolve(names: Sequence[str], known: Sequence[str]) -> tuple[list[str], list[str]]:
    """(node ids of the named tests, names that match no known test).  A full
    node id is kept even when unknown: it may be a test the change adds."""
    found: list[str] = []
    unknown: list[str] = []
    for name in names:
        hits = [k for k in known if matches(name, k)]
        if hits:
            found += hits
        elif "::" in name:
            found.append(name)
        else:
            unknown.append(name)
    return list(dict.fromkeys(found)), unknown


def _in_files(task: Task, files: Collection[str]) -> bool:
    here = {task.location.path} if task.location else set()
    if task.test_id:
        here.add(task.test_id.split("::")[0])
    if task.test_location:
        here.add(task.test_location.path)
    return bool(here & set(files))


def select(intent: Intent, tasks: Sequence[Task]) -> list[Task]:
    """The found tasks the prompt asks for (none for a request)."""
    if intent.kind == "request":
        return []
    chosen = list(tasks)
    if intent.kind == "findings" and intent.linters:
        chosen = [t for t in chosen if t.source in intent.linters]
        if intent.codes:
            chosen = [t for t in chosen if t.code in intent.codes]
    if intent.tests and intent.kind == "tests":
        chosen = [t for t in chosen if t.test_id and any(matches(n, t.test_id) for n in intent.tests)]
    if intent.files:
        chosen = [t for t in chosen if _in_files(t, intent.files)]
    if intent.kind == "tests":
        chosen = [t for t in chosen if t.source == "test"]
    return chosen


def specific(intent: Intent) -> bool:
    """Whether the prompt names something particular (a test, file or code),
    so that finding nothing there makes it a request rather than "all clear"."""
    return bool(intent.tests or intent.files or intent.codes)


def request_task(intent: Intent, tests: Sequence[str]) -> Task:
    """The user's goal as a task; ``tests`` are the node ids that must pass."""
    first = intent.goal.splitlines()[0] if intent.goal else "a change"
    title = "Ornith: " + (first if len(first) <= 70 else first[:67] + "...")
    return Task(source="request", title=title, message=intent.goal, tests=list(tests) or None)
