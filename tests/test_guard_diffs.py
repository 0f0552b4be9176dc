"""The in-memory diff parser and applier, checked against real ``git diff``:
whatever git writes, applying it to the base must give exactly the tree git saw."""

from __future__ import annotations

import pytest

from guard_corpus import corpus
from ornith_lsp.workspace import diffs

BASE = {
    "plain.py": "a = 1\nb = 2\nc = 3\n",
    "no_newline.py": "x = 1\ny = 2",
    "crlf.txt": "one\r\ntwo\r\nthree\r\n",
    "gone.py": "print('bye')\n",
    "moved/old_name.py": "def f():\n    return 1\n\n\ndef g():\n    return 2\n",
    "long.py": "".join(f"line{i} = {i}\n" for i in range(60)),
    "image.bin": "\x00\x01\x02",
}
EDITS = [
    {"path": "plain.py", "old": "b = 2\n", "new": "b = 20\nb2 = 21\n"},
    {"path": "no_newline.py", "old": "y = 2", "new": "y = 3\nz = 4"},
    {"path": "crlf.txt", "old": "two\r\n", "new": "TWO\r\n"},
    {"path": "gone.py", "delete": True},
    {"path": "moved/old_name.py", "rename_to": "moved/new_name.py"},
    {"path": "long.py", "old": "line3 = 3\n", "new": ""},
    {"path": "long.py", "old": "line50 = 50\n", "new": "line50 = 'fifty'\n"},
    {"path": "brand/new.py", "content": "NEW = True\n"},
    {"path": "empty.py", "content": ""},
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return corpus.build_repo(tmp_path_factory.mktemp("diffs") / "repo", BASE)


def test_apply_reproduces_git(repo, tmp_path):
    diff = corpus.make_diff(repo, EDITS)
    patches = diffs.parse(diff)
    after = diffs.apply(patches, BASE.get)
    expected = corpus.copy_tree(repo, tmp_path / "expected")
    corpus.apply_edits(expected, EDITS)
    for path, text in after.items():
        target = expected / path
        if text is None:
            assert not target.exists(), path
        else:
            assert target.read_bytes().decode() == text, path
    assert after["no_newline.py"] == "x = 1\ny = 3\nz = 4"
    assert after["crlf.txt"] == "one\r\nTWO\r\nthree\r\n"
    statuses = {p.path: p.status for p in patches}
    assert statuses["gone.py"] == "deleted" and statuses["brand/new.py"] == "added"
    assert statuses["moved/new_name.py"] == "renamed"
    assert after["moved/old_name.py"] is None


def test_added_lines_point_into_the_new_file(repo):
    patch = diffs.parse(corpus.make_diff(repo, [EDITS[0]]))[0]
    new = diffs.apply([patch], BASE.get)["plain.py"].splitlines()
    assert [new[i - 1] for i in sorted(diffs.added_lines(patch))] == ["b = 20", "b2 = 21"]


def test_binary_changes_are_marked(repo):
    edit = [{"path": "image.bin", "content": "\x00\x09\x08"}]
    for binary in (False, True):
        patches = diffs.parse(corpus.make_diff(repo, edit, binary=binary))
        assert [p.binary for p in patches] == [True]
        assert diffs.apply(patches, BASE.get) == {}


def test_a_hunk_may_move_like_git_allows():
    diff = "--- a/plain.py\n+++ b/plain.py\n@@ -7,2 +7,2 @@\n a = 1\n-b = 2\n+b = 5\n"
    assert diffs.apply(diffs.parse(diff), BASE.get)["plain.py"] == "a = 1\nb = 5\nc = 3\n"


@pytest.mark.parametrize("text, message", [
    ("", "holds no file changes"),
    ("just some prose\nwithout a diff\n", "holds no file changes"),
    ("--- a/plain.py\n+++ b/plain.py\n@@ -1,3 +1,3 @@\n a = 1\n-b = 2\n", "truncated or miscounted"),
    ("--- a/plain.py\n+++ b/plain.py\n@@ broken @@\n", "malformed hunk header"),
    ("--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-a\n+b\n", "not inside the repository"),
    ("--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n", "not inside the repository"),
    ("@@ -1 +1 @@\n-a\n+b\n", "without a file header"),
])
def test_unreadable_diffs_say_why(text, message):
    with pytest.raises(diffs.DiffError, match=message):
        diffs.parse(text)


@pytest.mark.parametrize("text, message", [
    ("--- a/plain.py\n+++ b/plain.py\n@@ -1,2 +1,2 @@\n a = 1\n-b = 99\n+b = 3\n", "hunk 1 .* does not apply.*line 2 is 'b = 2'"),
    ("--- a/missing.py\n+++ b/missing.py\n@@ -1 +1 @@\n-a\n+b\n", "does not exist in the base tree"),
    ("diff --git a/plain.py b/plain.py\nnew file mode 100644\n--- /dev/null\n+++ b/plain.py\n@@ -0,0 +1 @@\n+x\n", "already exists"),
    ("--- a/no_newline.py\n+++ b/no_newline.py\n@@ -1,2 +1,2 @@\n x = 1\n-y = 2\n+y = 3\n", "line 2 'y = 2' is the file's last, and the diff expects a newline"),
])
def test_diffs_that_do_not_apply_say_where(text, message):
    with pytest.raises(diffs.PatchConflict, match=message):
        diffs.apply(diffs.parse(text), BASE.get)


def test_added_lines_are_where_hunks_land_not_where_headers_say():
    """A diff with lying line numbers still applies (git tolerates offsets), so
    the monitors must look where the code really went."""
    base = {"m.py": "".join(f"x{i} = {i}\n" for i in range(30))}
    diff = "--- a/m.py\n+++ b/m.py\n@@ -2,2 +2,3 @@\n x20 = 20\n+import os; os._exit(0)\n x21 = 21\n"
    after, added = diffs.apply_with_lines(diffs.parse(diff), base.get)
    lines = after["m.py"].splitlines()
    assert [lines[i - 1] for i in added["m.py"]] == ["import os; os._exit(0)"]


def test_the_monitors_see_code_behind_lying_hunk_headers():
    from ornith_lsp.guard.boundary import Boundary
    from ornith_lsp.guard.check import review_diff

    base = {"m.py": "".join(f"x{i} = {i}\n" for i in range(30))}
    diff = "--- a/m.py\n+++ b/m.py\n@@ -2,2 +2,3 @@\n x20 = 20\n+import os; os._exit(0)\n x21 = 21\n"
    review = review_diff(diff, boundary=Boundary(root=None), read_base=base.get, list_base=lambda: list(base))
    assert [f.monitor for f in review.findings] == ["forced-exit"]
