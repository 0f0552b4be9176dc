"""``ornith-lsp guard check``: exit 0 allowed, 1 blocked, 2 only when no verdict
can be given, and a clear one-line message for every kind of bad input."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from guard_corpus import corpus
from ornith_lsp import procs
from ornith_lsp.guard import cli

PROGRAMS, CASES = corpus.load_cases()
BY_ID = {c.id: c for c in CASES}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return corpus.build_repo(tmp_path_factory.mktemp("cli") / "gcd", corpus.load_bundle("gcd"))


@pytest.fixture
def files(tmp_path):
    def write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    return write


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ornith-lsp")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["guard", "check", *argv])
    return args.func(args)


def verdict_of(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_an_honest_fix_exits_0_after_real_grading(repo, files, capsys):
    diff = files("fix.diff", corpus.make_diff(repo, BY_ID["H-gcd-fix-like-the-reference"].edits))
    task = files("task.json", json.dumps({"kind": "test", "tests": PROGRAMS["gcd"]["tests"]}))
    assert run("--root", str(repo), "--diff", str(diff), "--task", str(task), "--json") == 0
    out = verdict_of(capsys)
    assert out["allowed"] is True and out["findings"] == []
    assert any("ran and passed" in n for n in out["notes"])


def test_a_cheat_exits_1_with_findings_in_the_documented_shape(repo, files, capsys):
    diff = files("cheat.diff", corpus.make_diff(repo, BY_ID["B18-lookup-dict"].edits + BY_ID["A06-xfail"].edits))
    assert run("--root", str(repo), "--diff", str(diff), "--json") == 1
    out = verdict_of(capsys)
    assert out["allowed"] is False
    assert all(set(f) == {"layer", "monitor", "path", "line", "evidence"} for f in out["findings"])
    assert {(f["layer"], f["monitor"]) for f in out["findings"]} == {("boundary", "test-file"), ("monitor", "lookup-table")}


def test_text_output_names_layer_monitor_and_place(repo, files, capsys):
    diff = files("cheat.diff", corpus.make_diff(repo, BY_ID["B15-os-exit-at-import"].edits))
    assert run("--root", str(repo), "--diff", str(diff)) == 1
    text = capsys.readouterr().out
    assert text.startswith("BLOCKED") and "[monitor/forced-exit] gcd.py:4:" in text


def test_a_binary_change_is_a_verdict_not_an_error(repo, files, capsys):
    diff = files("bin.diff", "diff --git a/logo.png b/logo.png\nnew file mode 100644\nindex 0000000..1111111\n"
                             "Binary files /dev/null and b/logo.png differ\n")
    assert run("--root", str(repo), "--diff", str(diff), "--json") == 1
    assert [f["monitor"] for f in verdict_of(capsys)["findings"]] == ["binary-file"]


def test_a_diff_that_does_not_apply_but_touches_the_tests_is_still_blocked(repo, files, capsys):
    stale = "--- a/tests/test_gcd.py\n+++ b/tests/test_gcd.py\n@@ -1,1 +1,1 @@\n-from old import gcd\n+from new import gcd\n"
    assert run("--root", str(repo), "--diff", str(files("stale.diff", stale)), "--json") == 1
    out = verdict_of(capsys)
    assert [f["monitor"] for f in out["findings"]] == ["test-file"]
    assert any("does not apply" in n for n in out["notes"])


def test_a_judge_that_is_down_is_a_note_not_an_error(repo, files, capsys):
    diff = files("fix.diff", corpus.make_diff(repo, BY_ID["H-gcd-fix-like-the-reference"].edits))
    dead = f"http://127.0.0.1:{procs.free_port()}/v1"
    assert run("--root", str(repo), "--diff", str(diff), "--judge", "--judge-endpoint", dead, "--json") == 0
    assert any("falling back to the deterministic layers" in n for n in verdict_of(capsys)["notes"])


def _bad_inputs(repo: Path, tmp: Path) -> list[tuple[list[str], str]]:
    (tmp / "plain").mkdir(exist_ok=True)
    good_diff = tmp / "ok.diff"
    good_diff.write_text(corpus.unified("gcd.py", "x\n", "y\n"))
    stale = tmp / "stale.diff"
    stale.write_text(corpus.unified("gcd.py", "not the base\n", "y\n"))
    binary = tmp / "blob.diff"
    binary.write_bytes(b"\x00\x01PK\x03\x04")
    prose = tmp / "prose.diff"
    prose.write_text("please fix the gcd function\n")
    bad_json = tmp / "bad.json"
    bad_json.write_text("{kind: test")
    bad_kind = tmp / "kind.json"
    bad_kind.write_text('{"kind": "lint"}')
    no_tests = tmp / "notests.json"
    no_tests.write_text('{"kind": "test", "tests": []}')
    bad_diag = tmp / "diag.json"
    bad_diag.write_text('{"kind": "diagnostic", "source": "", "path": "gcd.py"}')
    return [
        (["--root", str(tmp / "plain"), "--diff", str(good_diff)], "not a git repository"),
        (["--root", str(tmp / "missing"), "--diff", str(good_diff)], "does not exist"),
        (["--root", str(repo / "tests"), "--diff", str(good_diff)], "inside the git repository"),
        (["--root", str(repo), "--diff", str(stale)], "does not apply"),
        (["--root", str(repo), "--diff", str(tmp / "nope.diff")], "no such file"),
        (["--root", str(repo), "--diff", str(binary)], "is a binary file, not a unified diff"),
        (["--root", str(repo), "--diff", str(prose)], "holds no file changes"),
        (["--root", str(repo), "--diff", str(good_diff), "--task", str(bad_json)], "not valid JSON"),
        (["--root", str(repo), "--diff", str(good_diff), "--task", str(bad_kind)], '"kind" must be "test" or "diagnostic"'),
        (["--root", str(repo), "--diff", str(good_diff), "--task", str(no_tests)], "non-empty list of pytest node ids"),
        (["--root", str(repo), "--diff", str(good_diff), "--task", str(bad_diag)], 'needs "source"'),
        (["--root", str(repo), "--diff", str(good_diff), "--judge"], "--judge needs an endpoint"),
    ]


def test_bad_input_exits_2_with_one_clear_line(repo, tmp_path, capsys):
    for argv, message in _bad_inputs(repo, tmp_path):
        assert run(*argv) == 2, argv
        captured = capsys.readouterr()
        assert captured.out == ""
        assert message in captured.err, (argv, captured.err)
        assert captured.err.startswith("ornith-lsp guard: ") and captured.err.count("\n") == 1


def test_the_module_entry_point_runs_the_same_code(repo, tmp_path):
    diff = tmp_path / "cheat.diff"
    diff.write_text(corpus.make_diff(repo, BY_ID["C28-ruff-noqa-file"].edits))
    done = subprocess.run([sys.executable, "-m", "ornith_lsp", "guard", "check", "--root", str(repo),
                           "--diff", str(diff), "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["findings"][0]["monitor"] == "suppression-config"


def test_settings_from_ornith_toml_shape_the_boundary(tmp_path, capsys):
    files = dict(corpus.load_bundle("gcd"))
    files["ornith.toml"] = '[guard]\nunprotected = ["tests/data/"]\n'
    repo = corpus.build_repo(tmp_path / "gcd", files)
    diff = tmp_path / "data.diff"
    diff.write_text(corpus.make_diff(repo, [{"path": "tests/data/cases.json", "content": "[[3, 12, 3]]\n"}]))
    assert run("--root", str(repo), "--diff", str(diff), "--json") == 0
    (repo / "ornith.toml").write_text('[guard]\nallow_new_tests = "sometimes"\n')
    assert run("--root", str(repo), "--diff", str(diff)) == 2
    assert "guard.allow_new_tests" in capsys.readouterr().err
