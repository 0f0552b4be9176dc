"""Applying a fix when the disk is full or a directory is read-only: an error,
and every file as it was -- never half a fix.  Real file systems, real
limits: the write runs in a child process whose file-size limit is set
(RLIMIT_FSIZE: writes past it fail with EFBIG, as on a full disk), or which
faces a read-only directory (a read-only bind mount)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

from agent_repos import git, make_repo, snapshot
from policy_double import ScriptedPolicyServer
from test_agent_scripted import FINISH, PLAN, READ, STEP_DONE

BIG = "x = 1\n" * 2000  # 12 kB

FILES = {
    "a.py": "A = 1\n",
    "sub/b.py": "B = 1\n",
}


def two_file_diff(repo: Path) -> str:
    (repo / "a.py").write_text("A = 2\n")
    (repo / "sub" / "b.py").write_text(BIG)
    diff = git(repo, "diff", "--full-index")
    git(repo, "checkout", "--", ".")
    return diff


APPLY = """
import resource, signal, sys
from pathlib import Path
from ornith_lsp.workspace import apply_to_tree, PatchError
if sys.argv[2] != "-":
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
try:
    apply_to_tree(sys.stdin.read(), Path(sys.argv[1]))
except PatchError as exc:
    print(exc)
    sys.exit(3)
"""


def apply_in_child(repo: Path, diff: str, fsize: str = "-") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", APPLY, str(repo), fsize], input=diff, capture_output=True,
                          text=True, timeout=60)


def leftovers_of_staging(repo: Path) -> list[str]:
    return [str(p) for p in repo.rglob("*.ornith")]


def test_a_full_disk_changes_nothing(tmp_path):
    repo = make_repo(tmp_path / "repo", FILES)
    diff = two_file_diff(repo)
    before = snapshot(repo)
    res = apply_in_child(repo, diff, fsize="4096")  # a.py's 6 bytes fit, b.py's 12 kB do not
    assert res.returncode == 3, res.stderr
    assert "sub/b.py: cannot be written" in res.stdout and "nothing was changed" in res.stdout
    assert snapshot(repo) == before and leftovers_of_staging(repo) == []
    ok = apply_in_child(repo, diff)  # without the limit the same diff applies
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert (repo / "a.py").read_text() == "A = 2\n" and (repo / "sub" / "b.py").read_text() == BIG


@contextlib.contextmanager
def read_only(directory: Path):
    """A read-only directory for real: a read-only bind mount when running as
    root (root ignores permission bits), the permission bits otherwise."""
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,ro,bind", str(directory)], check=True)
            yield
        finally:
            subprocess.run(["umount", str(directory)], check=True)
    else:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)


def test_a_read_only_directory_changes_nothing(tmp_path):
    repo = make_repo(tmp_path / "repo", FILES)
    diff = two_file_diff(repo)
    before = snapshot(repo)
    with read_only(repo / "sub"):
        res = apply_in_child(repo, diff)
        assert res.returncode == 3, res.stdout + res.stderr
        assert "sub/b.py: cannot be written (" in res.stdout and "nothing was changed" in res.stdout
    assert snapshot(repo) == before and leftovers_of_staging(repo) == []


def test_headless_apply_into_a_read_only_directory_reports_and_writes_nothing(tmp_path):
    """The whole command: the fix is verified, --apply meets a read-only
    directory, the run says so (exit 2) and PATH is as it was."""
    calc = {"pkg/calc.py": "def add(a, b):\n    return a - b\n",
            "test_calc.py": "from pkg.calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
            "pkg/__init__.py": ""}
    repo = make_repo(tmp_path / "repo", calc)
    edit = {"tool": "edit", "path": "pkg/calc.py", "search": "return a - b", "replace": "return a + b"}
    read = {**READ, "path": "pkg/calc.py"}
    before = snapshot(repo)
    with read_only(repo / "pkg"), ScriptedPolicyServer([PLAN, read, STEP_DONE, edit, STEP_DONE, FINISH]) as policy:
        res = subprocess.run([sys.executable, "-m", "ornith_lsp", "fix", str(repo), "--backend", "remote",
                              "--endpoint", policy.url, "--model", "scripted", "--apply", "--format", "json"],
                             capture_output=True, text=True, timeout=240)
    assert res.returncode == 2, res.stdout + res.stderr
    report = json.loads(res.stdout)
    assert report["tasks"][0]["status"] == "fixed"
    assert any("--apply failed, nothing in PATH was changed" in n and "pkg/calc.py" in n for n in report["notes"])
    assert "could not apply the verified fixes" in res.stderr and "Traceback" not in res.stderr
    assert snapshot(repo) == before and leftovers_of_staging(repo) == []
