"""Loading the guard corpus: small programs (``programs/*.bundle``) and the
edits that turn them into cheat or honest diffs (``cases.toml``).

Programs are text bundles rather than trees so that pytest never collects
their tests or conftest files as part of this project's suite.  Diffs are
made by real ``git diff`` on a real repository, so the guard reads exactly
what an agent or a user would hand it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).parent
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "corpus", "GIT_AUTHOR_EMAIL": "corpus@example.invalid",
    "GIT_COMMITTER_NAME": "corpus", "GIT_COMMITTER_EMAIL": "corpus@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(HERE),
}


@dataclass
class Case:
    id: str
    program: str
    expect: str
    patterns: list[int] = field(default_factory=list)
    monitors: list[str] = field(default_factory=list)
    concerns: list[str] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)
    task: dict | None = None
    grading: bool = False
    allow_new_tests: bool = True
    edits: list[dict] = field(default_factory=list)


def load_bundle(name: str) -> dict[str, str]:
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in (HERE / "programs" / f"{name}.bundle").read_text().split("\n"):
        if line.startswith("=== "):
            current = files.setdefault(line[4:].strip(), [])
        elif current is not None:
            current.append(line)
    return {path: "\n".join(lines).rstrip("\n") + "\n" for path, lines in files.items()}


def load_cases() -> tuple[dict[str, dict], list[Case]]:
    data = tomllib.loads((HERE / "cases.toml").read_text())
    programs = data["programs"]
    cases = []
    for raw in data["case"]:
        raw = dict(raw)
        raw["edits"] = raw.pop("edit", [])
        case = Case(**raw)
        if case.task is None:
            case.task = {"kind": "test", "tests": case.tests or programs[case.program]["tests"]}
        cases.append(case)
    return programs, cases


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "-c", "commit.gpgsign=false", "-c", "core.autocrlf=false", *args],
                         cwd=repo, env=GIT_ENV, check=True, capture_output=True).stdout
    return out.decode("utf-8", "surrogateescape")


def build_repo(dest: Path, files: dict[str, str]) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    write_files(dest, files)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "base")
    return dest


def write_files(root: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        _write(target, text)


def _read(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as fh:
        return fh.read()


def _write(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)


def apply_edits(root: Path, edits: list[dict]) -> None:
    """Change a working tree the way a case says; loud when an edit does not fit,
    so a stale case cannot silently turn into an empty diff."""
    for edit in edits:
        target = root / edit["path"]
        if edit.get("delete"):
            target.unlink()
        elif "symlink_to" in edit:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists() or target.is_symlink():
                target.unlink()
            target.symlink_to(edit["symlink_to"])
        elif "rename_to" in edit:
            dest = root / edit["rename_to"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            target.rename(dest)
        elif "content" in edit:
            target.parent.mkdir(parents=True, exist_ok=True)
            _write(target, edit["content"])
        elif "old" in edit:
            text = _read(target)
            if text.count(edit["old"]) != 1:
                raise AssertionError(f"{edit['path']}: {edit['old']!r} occurs {text.count(edit['old'])} times")
            _write(target, text.replace(edit["old"], edit["new"]))
        elif "prepend" in edit:
            _write(target, edit["prepend"] + _read(target))
        elif "append" in edit:
            _write(target, _read(target) + edit["append"])
        else:
            raise AssertionError(f"unknown edit {edit}")


def make_diff(repo: Path, edits: list[dict], *, binary: bool = False) -> str:
    """The ``git diff`` of ``edits`` against the repository's base; the tree is reset after."""
    try:
        apply_edits(repo, edits)
        git(repo, "add", "-A")
        args = ["diff", "--cached", "-M"] + (["--binary"] if binary else [])
        diff = git(repo, *args)
    finally:
        git(repo, "reset", "-q", "--hard", "HEAD")
        git(repo, "clean", "-qfdx")
    if not diff.strip():
        raise AssertionError(f"edits {edits} produced an empty diff")
    return diff


def copy_tree(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".git"))
    return dest


def unified(path: str, old: str | None, new: str | None) -> str:
    """A git-style diff of one file made in memory, for checks that need no repository."""
    import difflib

    a = old.splitlines(True) if old else []
    b = new.splitlines(True) if new else []
    head = f"diff --git a/{path} b/{path}\n"
    if old is None:
        head += "new file mode 100644\n"
    elif new is None:
        head += "deleted file mode 100644\n"
    body = "".join(difflib.unified_diff(a, b, f"a/{path}" if old is not None else "/dev/null",
                                        f"b/{path}" if new is not None else "/dev/null"))
    return head + body
