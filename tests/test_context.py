"""context/: real tree-sitter over small repositories written into tmp_path."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from ornith_lsp.context import Index, definitions_used, enclosing, estimate_tokens, repo_map
from ornith_lsp.context.repomap import pagerank


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def line_of(root: Path, name: str, needle: str) -> int:
    lines = (root / name).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


NESTED = """
    LIMIT = 3

    class Shelf:
        size = 2

        def add(self, item):
            def check(x):
                return x is not None
            return check(item)

        @property
        def full(self):
            return False

    def top(a):
        return a
"""


def test_enclosing_finds_the_innermost_function_method_or_class(tmp_path):
    write(tmp_path, {"shelf.py": NESTED})
    index = Index(tmp_path).refresh()

    def around(needle):
        symbol = enclosing(index, "shelf.py", line_of(tmp_path, "shelf.py", needle))
        return symbol and (symbol.name, symbol.kind)

    assert around("return x is not None") == ("check", "function")
    assert around("return check(item)") == ("add", "method")
    assert around("return False") == ("full", "method")
    assert around("size = 2") == ("Shelf", "class")
    assert around("return a") == ("top", "function")
    assert around("LIMIT = 3") is None


def test_a_syntax_error_still_yields_what_tree_sitter_recovers(tmp_path):
    write(tmp_path, {"broken.py": "def good():\n    return 1\n\nx = (1, \n\ndef later():\n    pass\n"})
    names = {s.name for s in Index(tmp_path).refresh().files["broken.py"].definitions}
    assert "good" in names


def test_definitions_used_are_the_helpers_a_function_reaches_across_files(tmp_path):
    write(tmp_path, {
        "helpers.py": """
            class Config:
                pass

            def normalize(text):
                return text.strip()

            def unused():
                pass

            def log(message):
                pass
        """,
        "main.py": """
            from helpers import Config, normalize

            def log(message):
                print(message)

            def run(config: Config, text):
                def step(x):
                    return normalize(x)
                log(text)
                return step(text)
        """,
    })
    index = Index(tmp_path).refresh()
    run = enclosing(index, "main.py", line_of(tmp_path, "main.py", "log(text)"))
    used = {(s.name, s.path) for s in definitions_used(index, run)}
    assert used == {("Config", "helpers.py"), ("normalize", "helpers.py"), ("log", "main.py")}


def many_files() -> dict[str, str]:
    files = {
        "focus.py": """
            from util import heavily_used_helper

            class Planner:
                def plan(self, goal):
                    return heavily_used_helper(goal)

            def entry():
                return Planner().plan(1)
        """,
        "util.py": """
            def heavily_used_helper(value):
                return value
        """,
        "lonely.py": """
            def never_called_helper(value):
                return value
        """,
    }
    for i in range(8):
        files[f"user_{i}.py"] = f"""
            from util import heavily_used_helper

            def caller_{i}(x):
                return heavily_used_helper(x) + heavily_used_helper(x + {i})
        """
    return files


def test_repo_map_puts_the_focus_file_first_and_respects_the_budget(tmp_path):
    write(tmp_path, many_files())
    index = Index(tmp_path).refresh()
    whole = repo_map(index, focus_paths=["focus.py"], mentioned=set(), token_budget=10_000)
    assert whole.startswith("focus.py:\n")
    assert "│class Planner:\n│    def plan(self, goal):\n" in whole
    assert whole.index("def entry") < whole.index("util.py:")
    sizes = []
    for budget in (0, 5, 20, 40, 80, 160):
        text = repo_map(index, focus_paths=[str(tmp_path / "focus.py")], mentioned=set(), token_budget=budget)
        assert estimate_tokens(text) <= budget
        sizes.append(len(text))
    assert sizes[0] == 0 and sizes == sorted(sizes) and sizes[-1] == len(whole)


def test_repo_map_uses_the_callers_tokenizer(tmp_path):
    write(tmp_path, many_files())
    index = Index(tmp_path).refresh()
    words = lambda text: len(text.split())  # noqa: E731
    text = repo_map(index, focus_paths=["focus.py"], mentioned=set(), token_budget=12, count_tokens=words)
    assert 0 < words(text) <= 12


def test_a_heavily_referenced_helper_ranks_above_an_unreferenced_one(tmp_path):
    write(tmp_path, many_files())
    index = Index(tmp_path).refresh()
    text = repo_map(index, focus_paths=[], mentioned=set(), token_budget=10_000)
    assert text.index("def heavily_used_helper") < text.index("def never_called_helper")
    assert text.startswith("util.py:")


def test_mentioned_identifiers_pull_their_definitions_up(tmp_path):
    write(tmp_path, many_files())
    index = Index(tmp_path).refresh()
    text = repo_map(index, focus_paths=[], mentioned={"never_called_helper"}, token_budget=10_000)
    assert text.startswith("lonely.py:")


def test_pagerank_flows_to_what_is_referenced_and_toward_the_personalization():
    star = {(leaf, "hub"): 1.0 for leaf in "abcd"}
    rank = pagerank(star, {})
    assert max(rank, key=rank.get) == "hub" and sum(rank.values()) == pytest.approx(1.0)
    biased = pagerank({("a", "b"): 1.0, ("b", "a"): 1.0, ("c", "a"): 1.0}, {"c": 1.0})
    assert biased["c"] > pagerank({("a", "b"): 1.0, ("b", "a"): 1.0, ("c", "a"): 1.0}, {})["c"]


def test_touching_one_file_reparses_only_that_file(tmp_path):
    write(tmp_path, {f"m{i}.py": f"def f{i}():\n    pass\n" for i in range(5)})
    index = Index(tmp_path).refresh()
    assert index.parses == 5
    index.refresh()
    assert index.parses == 5
    os.utime(tmp_path / "m0.py", ns=(0, 10**18))
    index.refresh()
    assert index.parses == 6
    changed = tmp_path / "m2.py"
    changed.write_text("def renamed():\n    pass\n")
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    index.refresh()
    assert index.parses == 7
    assert [s.name for s in index.files["m2.py"].definitions] == ["renamed"]
    (tmp_path / "m4.py").unlink()
    assert "m4.py" not in index.refresh().files and index.parses == 7


def test_an_unsaved_buffer_is_used_instead_of_the_disk(tmp_path):
    write(tmp_path, {"a.py": "def on_disk():\n    pass\n"})
    index = Index(tmp_path).refresh()
    index.update(tmp_path / "a.py", text="def in_editor():\n    pass\n")
    index.refresh()
    assert [s.name for s in index.files["a.py"].definitions] == ["in_editor"]
    assert [s.name for s in index.definitions("in_editor")] == ["in_editor"]
    index.close("a.py")
    assert [s.name for s in index.files["a.py"].definitions] == ["on_disk"]
    assert index.definitions("in_editor") == []


def test_binary_non_utf8_and_large_files_are_skipped_with_a_reason(tmp_path):
    write(tmp_path, {"ok.py": "def fine():\n    pass\n"})
    (tmp_path / "blob.py").write_bytes(b"def x():\x00\x01\x02 pass\n")
    (tmp_path / "latin.py").write_bytes("def caf\xe9():\n    pass\n".encode("latin-1"))
    (tmp_path / "huge.py").write_text("X = 1\n" * 200_000)
    index = Index(tmp_path).refresh()
    assert index.skipped == {"blob.py": "binary", "latin.py": "not UTF-8", "huge.py": "larger than max_bytes"}
    assert set(index.files) == {"ok.py"}


def test_symlinks_out_of_the_root_and_ignored_dirs_are_not_followed(tmp_path):
    outside = write(tmp_path / "outside", {"secret.py": "def secret():\n    pass\n"})
    root = write(tmp_path / "repo", {
        "real.py": "def real():\n    pass\n",
        ".venv/lib/v.py": "def venv_thing():\n    pass\n",
        "node_modules/n.py": "def node_thing():\n    pass\n",
        ".git/g.py": "def git_thing():\n    pass\n",
        "__pycache__/c.py": "def cached():\n    pass\n",
    })
    (root / "link.py").symlink_to(outside / "secret.py")
    (root / "linkdir").symlink_to(outside, target_is_directory=True)
    (root / "alias.py").symlink_to(root / "real.py")
    index = Index(root).refresh()
    assert set(index.files) == {"real.py", "alias.py"}
    assert index.skipped == {"link.py": "symlink out of the root"}
    assert index.update(outside / "secret.py") is None
    assert index.update(root / "linkdir" / "secret.py") is None
    (tmp_path / "alias").symlink_to(root, target_is_directory=True)
    assert index.update(tmp_path / "alias" / "real.py") is index.files["real.py"]


def test_the_stdlib_json_package_indexes():
    index = Index(Path(json.__file__).parent).refresh()
    [decoder] = index.definitions("JSONDecoder")
    assert (decoder.path, decoder.kind) == ("decoder.py", "class")
    assert decoder.signature.startswith("class JSONDecoder")
    method = enclosing(index, "decoder.py", decoder.end_line)
    assert method.kind == "method" and decoder.line < method.line
    assert not index.skipped
