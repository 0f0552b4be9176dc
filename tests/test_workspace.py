"""The shadow tree, checkpoints and rollback on real git repositories, and the
diff -> WorkspaceEdit / text / files conversions."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
from pathlib import Path

import pytest
from lsprotocol import types as lsp
from pygls.protocol import default_converter

from ornith_lsp.workspace import (
    PatchError,
    Shadow,
    ShadowError,
    WorkspaceError,
    apply_diff_to_text,
    apply_to_tree,
    diff_to_workspace_edit,
    list_checkpoints,
    rollback,
)
from ornith_lsp.workspace import diffs
from ornith_lsp.workspace.edits import text_edits
from ornith_lsp.offloop import off_loop

GIT_ENV = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def git(cwd: Path, *args: str, check: bool = True) -> str:
    """The test's own git; GIT_OPTIONAL_LOCKS=0 so `git status` cannot refresh
    the index file whose bytes the tests compare."""
    out = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=check, capture_output=True).stdout
    return out.decode()  # not text=True: a diff's CRs must survive


def user_state(repo: Path) -> dict:
    """Everything of the user's that a shadow must leave alone."""
    files = {
        p.relative_to(repo).as_posix(): p.read_bytes()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(repo).parts
    }
    return {
        "files": files,
        "index": (repo / ".git" / "index").read_bytes() if (repo / ".git" / "index").exists() else None,
        "status": git(repo, "status", "--porcelain"),
        "cached": git(repo, "diff", "--cached"),
        "head": git(repo, "rev-parse", "-q", "--verify", "HEAD", check=False),
        "branches": git(repo, "for-each-ref", "refs/heads"),
    }


@pytest.fixture
def repo(tmp_path) -> Path:
    """A repository with every kind of uncommitted state: modified, deleted,
    untracked, ignored, and a partially staged file (a dirty index)."""
    root = tmp_path / "proj"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / ".gitignore").write_text("*.log\nbuild/\n")
    (root / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (root / "notes.txt").write_text("one\ntwo\n")
    (root / "gone.txt").write_text("bye\n")
    (root / "staged.txt").write_text("v1\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "init")
    (root / "notes.txt").write_text("one\ntwo\nthree (modified)\n")
    (root / "gone.txt").unlink()
    (root / "untracked.py").write_text("NEW = 1\n")
    (root / "debug.log").write_text("ignored\n")
    (root / "build").mkdir()
    (root / "build" / "out.txt").write_text("ignored too\n")
    (root / "staged.txt").write_text("v2 staged\n")
    git(root, "add", "staged.txt")
    (root / "staged.txt").write_text("v3 in the working tree\n")
    return root


async def test_shadow_mirrors_what_the_user_sees(repo):
    before = user_state(repo)
    async with await Shadow.create(repo, {"calc.py": "def add(a, b):\n    return a - b  # unsaved\n"}) as shadow:
        assert shadow.path != repo and shadow.path.is_dir()
        assert shadow.read("calc.py").endswith("# unsaved\n")  # the editor's buffer
        assert shadow.read("notes.txt") == "one\ntwo\nthree (modified)\n"  # modified
        assert shadow.read("untracked.py") == "NEW = 1\n"  # untracked, not ignored
        assert shadow.read("staged.txt") == "v3 in the working tree\n"  # the working tree wins
        assert not (shadow.path / "gone.txt").exists()  # deleted
        assert not (shadow.path / "debug.log").exists() and not (shadow.path / "build").exists()  # ignored
        assert await shadow.diff() == "" and await shadow.changed_files() == []
    assert user_state(repo) == before


async def test_user_files_and_index_untouched_through_create_write_close(repo):
    before = user_state(repo)
    shadow = await Shadow.create(repo, {"notes.txt": "unsaved\n"})
    shadow.write("calc.py", "def add(a, b):\n    return a + b\n")
    shadow.write("pkg/new.py", "x = 1\n")
    assert user_state(repo) == before
    await shadow.close()
    assert user_state(repo) == before
    assert not shadow.worktree.exists()
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1


async def test_diff_against_the_checkpoint(repo):
    async with await Shadow.create(repo, {}) as shadow:
        shadow.write("calc.py", "def add(a, b):\n    return a + b\n")
        shadow.write("pkg/new.py", "x = 1\n")
        (shadow.path / "notes.txt").unlink()
        (shadow.path / "pkg" / "__pycache__").mkdir()
        (shadow.path / "pkg" / "__pycache__" / "new.cpython-311.pyc").write_bytes(b"\0junk")
        diff = await shadow.diff()
        assert await shadow.changed_files() == ["calc.py", "notes.txt", "pkg/new.py"]
    assert "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n" in diff
    assert "diff --git a/pkg/new.py b/pkg/new.py\nnew file mode 100644\n" in diff
    assert "--- /dev/null\n+++ b/pkg/new.py\n@@ -0,0 +1 @@\n+x = 1\n" in diff
    assert "deleted file mode 100644" in diff and "-three (modified)\n" in diff
    assert "__pycache__" not in diff


async def test_write_refusals(repo, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / "blob.bin").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    (repo / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    async with await Shadow.create(repo, {}) as shadow:
        os.symlink(outside, shadow.path / "escape")
        for bad in ("../x.py", str(outside / "x.py"), ".git/config", "escape/x.py"):
            with pytest.raises(ShadowError):
                shadow.write(bad, "x")
        with pytest.raises(ShadowError, match="symlink"):
            shadow.write("escape/x.py", "x")
        with pytest.raises(ShadowError, match="binary"):
            shadow.write("blob.bin", "text")
        with pytest.raises(ShadowError, match="not UTF-8"):
            shadow.write("latin1.txt", "text")
        with pytest.raises(ShadowError, match="NUL"):
            shadow.write("calc.py", "a\0b")
        with pytest.raises(ShadowError, match="binary"):
            shadow.read("blob.bin")
    assert list(outside.iterdir()) == []


async def test_repository_without_commits(tmp_path):
    root = tmp_path / "fresh"
    root.mkdir()
    git(root, "init", "-q")
    (root / "a.py").write_text("A = 1\n")
    (root / "b.py").write_text("B = 1\n")
    git(root, "add", "a.py")
    before = user_state(root)
    async with await Shadow.create(root, {"c.py": "C = 1\n"}) as shadow:
        assert git(root, "rev-list", "--parents", "-n1", shadow.base_commit).split() == [shadow.base_commit]  # orphan
        assert shadow.read("a.py") == "A = 1\n" and shadow.read("b.py") == "B = 1\n" and shadow.read("c.py") == "C = 1\n"
        shadow.write("a.py", "A = 2\n")
        assert await shadow.changed_files() == ["a.py"]
    assert user_state(root) == before
    assert git(root, "rev-parse", "-q", "--verify", "HEAD", check=False) == ""


async def test_not_a_git_repository(tmp_path):
    with pytest.raises(WorkspaceError, match="not inside a git repository"):
        await Shadow.create(tmp_path, {})


async def test_checkpoint_ref_and_listing(repo):
    async with await Shadow.create(repo, {}, base_dir=repo.parent / "shadows", label="fix add()") as shadow:
        assert shadow.worktree.is_relative_to(repo.parent / "shadows")
        ref = f"refs/ornith/checkpoints/{shadow.checkpoint.id}"
        assert git(repo, "rev-parse", ref).strip() == shadow.base_commit
        assert git(repo, "rev-parse", f"{shadow.base_commit}^").strip() == git(repo, "rev-parse", "HEAD").strip()
        [listed] = list_checkpoints(repo)
        assert (listed.id, listed.commit, listed.label, listed.fix_commit) == (
            shadow.checkpoint.id, shadow.base_commit, "fix add()", None)
    assert list(list_checkpoints(repo))  # the checkpoint outlives the shadow
    assert not (repo.parent / "shadows" / f"shadow-{shadow.checkpoint.id}").exists()


async def test_rollback_restores_only_what_the_fix_touched(repo):
    shadow = await Shadow.create(repo, {})
    shadow.write("calc.py", "def add(a, b):\n    return a + b\n")
    shadow.write("helpers.py", "def helper():\n    pass\n")
    diff = await shadow.diff()
    await shadow.record_fix()
    await shadow.close()
    assert apply_to_tree(diff, repo) == ["calc.py", "helpers.py"]
    assert (repo / "calc.py").read_text().endswith("a + b\n")
    (repo / "notes.txt").write_text("edited after the fix\n")  # not the fix's business

    done = rollback(repo, shadow.checkpoint.id)
    assert (done.restored, done.removed) == (["calc.py"], ["helpers.py"])
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a - b\n"
    assert not (repo / "helpers.py").exists()
    assert (repo / "notes.txt").read_text() == "edited after the fix\n"

    rollback(repo, done.undo)  # and the rollback itself can be undone
    assert (repo / "calc.py").read_text().endswith("a + b\n") and (repo / "helpers.py").exists()

    with pytest.raises(WorkspaceError, match="no checkpoint"):
        rollback(repo, "nope")


async def test_rollback_of_explicit_paths_without_a_recorded_fix(repo):
    async with await Shadow.create(repo, {}) as shadow:
        pass
    (repo / "calc.py").write_text("broken\n")
    with pytest.raises(WorkspaceError, match="no recorded fix"):
        rollback(repo, shadow.checkpoint.id)
    assert rollback(repo, shadow.checkpoint.id, ["calc.py"]).restored == ["calc.py"]
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a - b\n"


async def test_workspace_root_in_a_subdirectory(repo):
    (repo / "sub").mkdir()
    (repo / "sub" / "m.py").write_text("M = 1\n")
    async with await Shadow.create(repo / "sub", {"m.py": "M = 2\n"}) as shadow:
        assert shadow.path == shadow.worktree / "sub"
        assert shadow.read("m.py") == "M = 2\n"
        shadow.write("m.py", "M = 3\n")
        assert await shadow.changed_files() == ["m.py"]
        assert (await shadow.diff()).startswith("diff --git a/m.py b/m.py\n")


async def test_the_shadows_git_runs_off_the_event_loop(repo, monkeypatch):
    """Every git call of the verify and apply paths runs in a worker thread:
    the loop that answers the editor never waits for git."""
    import git as gitpython

    loop_thread, threads = threading.get_ident(), []
    real = gitpython.Git.execute

    def spy(self, *args, **kwargs):
        threads.append(threading.get_ident())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(gitpython.Git, "execute", spy)
    async with await Shadow.create(repo, {"calc.py": "def add(a, b):\n    return a - b  # unsaved\n"}) as shadow:
        shadow.write("calc.py", "def add(a, b):\n    return a + b\n")
        assert "+    return a + b" in await shadow.diff(top_level=True)
        assert await shadow.changed_files() == ["calc.py"]
        async with shadow.pristine() as base:
            assert (base / "calc.py").read_text() == "def add(a, b):\n    return a - b  # unsaved\n"
        assert await shadow.record_fix("fix add")
        await shadow.reset()
        assert await shadow.diff() == ""
    assert len(threads) > 10 and loop_thread not in threads
    assert git(repo, "worktree", "list").count("\n") == 1


async def test_a_cancelled_caller_still_waits_for_the_thread():
    """What the thread was making is finished before the cancellation goes on,
    so the caller's clean-up never races it -- even when cancelled twice."""
    started, release, finished = threading.Event(), threading.Event(), []

    def work() -> None:
        started.set()
        release.wait(10)
        finished.append(True)

    job = asyncio.create_task(off_loop(work))
    assert await asyncio.to_thread(started.wait, 10)
    for _ in range(2):
        job.cancel()
        await asyncio.sleep(0.05)
        assert not job.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert finished == [True]


# ------------------------------------------------------------------ edits


def make_diff(tmp_path: Path, path: str, old: str | None, new: str | None) -> str:
    """A real ``git diff`` of one file (``None``: absent on that side)."""
    work = tmp_path / "diffs"
    for side, text in (("a", old), ("b", new)):
        target = work / side / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        if text is not None:
            target.write_bytes(text.encode())
    args = [f"a/{path}" if old is not None else "/dev/null", f"b/{path}" if new is not None else "/dev/null"]
    return git(work, "diff", "--no-index", "--no-prefix", *args, check=False)


def apply_text_edits(text: str, edits: list[lsp.TextEdit]) -> str:
    """What an editor does with TextEdits: positions are UTF-16 code units."""
    lines = text.splitlines(keepends=True) or [""]

    def offset(pos: lsp.Position) -> int:
        before = "".join(lines[: pos.line])
        line = lines[pos.line] if pos.line < len(lines) else ""
        units = line.encode("utf-16-le")[: pos.character * 2].decode("utf-16-le")
        return len(before) + len(units)

    for edit in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
        text = text[: offset(edit.range.start)] + edit.new_text + text[offset(edit.range.end):]
    return text


def test_multi_hunk_edit_is_minimal_and_versioned(tmp_path):
    old = "".join(f"line {i}\n" for i in range(1, 31))
    new = old.replace("line 2\n", "line two\n").replace("line 25\n", "line 25\nline 25.5\n")
    diff = make_diff(tmp_path, "pkg/m.py", old, new)
    assert diff.count("@@ -") == 2
    edit = diff_to_workspace_edit(diff, tmp_path, {"pkg/m.py": 7}, {"pkg/m.py": old})
    [doc] = edit.document_changes
    assert doc.text_document.version == 7
    assert doc.text_document.uri == (tmp_path / "pkg" / "m.py").as_uri()
    assert [(e.range.start.line, e.range.start.character, e.range.end.line, e.range.end.character, e.new_text)
            for e in doc.edits] == [(1, 5, 1, 6, "two"), (25, 0, 25, 0, "line 25.5\n")]
    assert apply_text_edits(old, doc.edits) == new


def test_new_and_deleted_files(tmp_path):
    created = make_diff(tmp_path, "new.py", None, "x = 1\ny = 2\n")
    removed = make_diff(tmp_path, "old.py", "gone\n", None)
    edit = diff_to_workspace_edit(created + removed, tmp_path, {}, {"old.py": "gone\n"})
    create, fill, delete = edit.document_changes
    assert isinstance(create, lsp.CreateFile) and create.uri.endswith("/new.py")
    assert fill.text_document.version is None and fill.edits[0].new_text == "x = 1\ny = 2\n"
    assert isinstance(delete, lsp.DeleteFile) and delete.uri.endswith("/old.py")
    wire = json.loads(json.dumps(default_converter().unstructure(edit)))
    assert wire["documentChanges"][0]["kind"] == "create"
    assert wire["documentChanges"][1]["textDocument"]["version"] is None


def test_utf16_columns_after_an_emoji(tmp_path):
    old = 'greeting = "héllo 😀"; count = 1\nnext = 2\n'
    new = 'greeting = "héllo 😀"; count = 2\nnext = 2\n'
    diff = make_diff(tmp_path, "u.py", old, new)
    [doc] = diff_to_workspace_edit(diff, tmp_path, {"u.py": 3}, {"u.py": old}).document_changes
    [e] = doc.edits
    prefix = 'greeting = "héllo 😀"; count = '
    assert e.range.start == lsp.Position(line=0, character=len(prefix) + 1)  # the emoji is 2 UTF-16 units
    assert e.range.end.character == e.range.start.character + 1 and e.new_text == "2"
    assert apply_text_edits(old, doc.edits) == new
    [doc8] = diff_to_workspace_edit(diff, tmp_path, {}, {"u.py": old}, encoding="utf-8").document_changes
    assert doc8.edits[0].range.start.character == len(prefix.encode())


def test_apply_diff_to_text(tmp_path):
    old = "a\nb\nc\nd\n"
    diff = make_diff(tmp_path, "f.txt", old, "a\nB\nc\nd\n")
    assert apply_diff_to_text(old, diff) == "a\nB\nc\nd\n"
    # lines added above the hunk since: it still fits, further down
    assert apply_diff_to_text("new top\n" + old, diff) == "new top\na\nB\nc\nd\n"
    with pytest.raises(PatchError, match="changed since"):
        apply_diff_to_text("a\nb\nC (user edit)\nd\n", diff)


def test_missing_final_newline_and_crlf(tmp_path):
    diff = make_diff(tmp_path, "f.txt", "a\nb", "a\nb\n")
    assert "\\ No newline at end of file" in diff
    assert apply_diff_to_text("a\nb", diff) == "a\nb\n"
    [doc] = diff_to_workspace_edit(diff, tmp_path, {}, {"f.txt": "a\nb"}).document_changes
    assert [(e.range.start.line, e.range.start.character, e.new_text) for e in doc.edits] == [(1, 1, "\n")]
    crlf_old, crlf_new = "one\r\ntwo\r\n", "one\r\nTWO\r\n"
    diff = make_diff(tmp_path, "w.txt", crlf_old, crlf_new)
    [doc] = diff_to_workspace_edit(diff, tmp_path, {}, {"w.txt": crlf_old}).document_changes
    assert apply_text_edits(crlf_old, doc.edits) == crlf_new
    assert all("\n" not in e.new_text for e in doc.edits)


def test_the_editor_gets_the_text_the_guard_judged(tmp_path):
    """One placement for both: a hunk that moved (the user added lines above
    it since) reaches the editor as exactly the text the guard approved."""
    old = "".join(f"x{i} = {i}\n" for i in range(30))
    new = old.replace("x20 = 20\n", "x20 = 'twenty'\nx20b = 0\n")
    [patch] = diffs.parse(make_diff(tmp_path, "m.py", old, new))
    moved = "# header\n" * 3 + old
    approved = diffs.apply([patch], {"m.py": moved}.get)["m.py"]
    assert approved == "# header\n" * 3 + new
    assert apply_text_edits(moved, text_edits(moved, patch)) == approved


def test_a_copy_creates_a_file_and_a_rename_moves_one(tmp_path):
    diff = ("diff --git a/src.py b/dup.py\nsimilarity index 90%\ncopy from src.py\ncopy to dup.py\n"
            "--- a/src.py\n+++ b/dup.py\n@@ -1,2 +1,2 @@\n x = 1\n-y = 2\n+y = 3\n"
            "diff --git a/old.py b/new.py\nsimilarity index 100%\nrename from old.py\nrename to new.py\n")
    texts = {"src.py": "x = 1\ny = 2\n", "old.py": "o = 1\n"}
    create, fill, rename = diff_to_workspace_edit(diff, tmp_path, {"src.py": 4}, texts).document_changes
    assert isinstance(create, lsp.CreateFile) and create.uri.endswith("/dup.py")
    assert fill.edits[0].new_text == "x = 1\ny = 3\n"
    assert isinstance(rename, lsp.RenameFile) and rename.new_uri.endswith("/new.py")
    with pytest.raises(PatchError, match="old.py: .*current text was not given"):
        diff_to_workspace_edit(diff, tmp_path, {}, {"src.py": texts["src.py"], "new.py": ""})


def test_edit_for_a_changed_buffer_is_refused(tmp_path):
    diff = make_diff(tmp_path, "f.txt", "x = 1\n", "x = 2\n")
    with pytest.raises(PatchError, match="changed since"):
        diff_to_workspace_edit(diff, tmp_path, {"f.txt": 4}, {"f.txt": "x = 10\n"})
    with pytest.raises(PatchError, match="current text was not given"):
        diff_to_workspace_edit(diff, tmp_path, {}, {})


def test_parse_diff_refuses_paths_out_of_the_workspace():
    bad = "diff --git a/../etc/passwd b/../etc/passwd\n--- a/../etc/passwd\n+++ b/../etc/passwd\n@@ -1 +1 @@\n-x\n+y\n"
    with pytest.raises(PatchError, match="not inside the repository"):
        diffs.parse(bad)


def test_apply_to_tree_is_all_or_nothing(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.py").write_text("A = 1\n")
    (ws / "b.py").write_text("B = 1\n")
    (ws / "run.sh").write_text("echo hi\n")
    (ws / "run.sh").chmod(0o755)
    diff = (make_diff(tmp_path, "a.py", "A = 1\n", "A = 2\n") + make_diff(tmp_path, "b.py", "B = 1\n", "B = 2\n")
            + make_diff(tmp_path, "run.sh", "echo hi\n", "echo bye\n") + make_diff(tmp_path, "c.py", None, "C = 1\n"))
    (ws / "b.py").write_text("B = 100\n")  # the user changed b.py since the diff was made
    with pytest.raises(PatchError, match="b.py: the file changed since"):
        apply_to_tree(diff, ws)
    assert (ws / "a.py").read_text() == "A = 1\n" and not (ws / "c.py").exists()
    (ws / "b.py").write_text("B = 1\n")
    assert apply_to_tree(diff, ws) == ["a.py", "b.py", "run.sh", "c.py"]
    assert [(ws / n).read_text() for n in ("a.py", "b.py", "run.sh", "c.py")] == ["A = 2\n", "B = 2\n", "echo bye\n", "C = 1\n"]
    assert (ws / "run.sh").stat().st_mode & 0o777 == 0o755
    assert not [p for p in ws.iterdir() if p.name.endswith(".ornith")]
    with pytest.raises(PatchError, match="already exists"):
        apply_to_tree(make_diff(tmp_path, "c.py", None, "C = 1\n"), ws)
