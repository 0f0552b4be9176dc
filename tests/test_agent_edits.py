"""The edit formats and the localisation: pure functions, text in and text out."""

from __future__ import annotations

import pytest

from ornith_lsp.agent import edits
from ornith_lsp.agent.localize import definition_at, locate
from ornith_lsp.tasks import Location, Task

SOURCE = '''"""Stats."""
import math


def mean(values):
    """Average."""
    return sum(values) / (len(values) + 1)


class Box:
    def area(self, w, h):
        return w + h


def other():
    return 1
'''


def test_a_symbol_rewrite_replaces_only_that_definition():
    answer = "Here is the fix:\n```python\ndef mean(values):\n    return sum(values) / len(values)\n```\nDone."
    out = edits.apply("symbol", SOURCE, answer, "mean")
    assert "return sum(values) / len(values)\n" in out
    assert "len(values) + 1" not in out
    assert out.count("def other") == 1 and "class Box" in out
    assert out.startswith('"""Stats."""\nimport math\n')


def test_a_method_rewrite_keeps_the_class_indentation():
    answer = "```python\ndef area(self, w, h):\n    return w * h\n```"
    out = edits.apply("symbol", SOURCE, answer, "Box.area")
    assert "    def area(self, w, h):\n        return w * h\n" in out


def test_new_imports_are_hoisted_and_known_definitions_left_alone():
    answer = ("```python\nfrom typing import List\nimport math\n\n\ndef helper(x):\n    return x\n\n\n"
              "def other():\n    return 2\n\n\ndef mean(values: List[float]):\n    return helper(sum(values)) / len(values)\n```")
    out = edits.apply("symbol", SOURCE, answer, "mean")
    assert out.count("import math") == 1
    assert "from typing import List" in out.split("def ")[0]
    assert "def helper(x):" in out and out.index("def helper") < out.index("def mean")
    assert "def other():\n    return 1" in out  # the file's own other() is untouched


@pytest.mark.parametrize("answer, message", [
    ("no code at all", "no code block"),
    ("```python\ndef mean(values):\n    return (\n```", "not valid Python"),
    ("```python\ndef average(values):\n    return 1\n```", "not `mean`"),
    ("```python\ndef mean(values):\n    return sum(values", "not closed"),
])
def test_unusable_answers_say_what_to_do(answer, message):
    with pytest.raises(edits.EditError, match=message):
        edits.apply("symbol", SOURCE, answer, "mean")


def test_a_whole_file_must_keep_every_definition():
    with pytest.raises(edits.EditError, match="drops"):
        edits.apply("file", SOURCE, "```python\ndef mean(v):\n    return 0\n```", None)
    full = SOURCE.replace("(len(values) + 1)", "len(values)")
    assert edits.apply("file", SOURCE, f"```python\n{full}```", None) == full


def test_search_replace_blocks_tolerate_indentation_and_refuse_ambiguity():
    answer = "<<<<<<< SEARCH\nreturn sum(values) / (len(values) + 1)\n=======\nreturn sum(values) / len(values)\n>>>>>>> REPLACE"
    out = edits.apply("search-replace", SOURCE, answer, None)
    assert "    return sum(values) / len(values)\n" in out
    twice = SOURCE + "\n\ndef again():\n    return 1\n"
    with pytest.raises(edits.EditError, match="more than once"):
        edits.apply("search-replace", twice, "<<<<<<< SEARCH\n    return 1\n=======\n    return 3\n>>>>>>> REPLACE", None)
    with pytest.raises(edits.EditError, match="not found"):
        edits.apply("search-replace", SOURCE, "<<<<<<< SEARCH\nnope\n=======\nx\n>>>>>>> REPLACE", None)


def test_normalised_code_ignores_comments_docstrings_and_spacing():
    a = 'def f(x):\n    """Doc."""\n    # comment\n    return x+1\n'
    b = "def f(x):\n    return x + 1  # other\n"
    assert edits.normalised(a) == edits.normalised(b)
    assert edits.normalised(a) != edits.normalised("def f(x):\n    return x + 2\n")


def test_definition_at_finds_the_innermost_definition():
    assert definition_at(SOURCE, 7) == ("mean", 5, 7)
    assert definition_at(SOURCE, 12) == ("Box.area", 11, 12)
    assert definition_at(SOURCE, 2) is None


def test_locate_follows_the_traceback_then_the_tests_imports(tmp_path):
    (tmp_path / "stats.py").write_text(SOURCE)
    (tmp_path / "test_stats.py").write_text("from stats import mean, other\n\n\ndef test_mean():\n    assert mean([1, 3]) == 2\n")
    is_test = lambda rel: rel.startswith("test_")  # noqa: E731
    in_code = Task(source="test", title="t", message="ZeroDivisionError", test_id="test_stats.py::test_mean",
                   location=Location(path="stats.py", line=7))
    focus = locate(tmp_path, in_code, is_test)
    assert (focus.path, focus.symbol, focus.start, focus.end) == ("stats.py", "mean", 5, 7)
    assert "deepest frame" in focus.why
    in_assert = in_code.model_copy(update={"location": Location(path="test_stats.py", line=5)})
    focus = locate(tmp_path, in_assert, is_test)
    assert (focus.path, focus.symbol) == ("stats.py", "mean") and "calls mean" in focus.why
    nothing = Task(source="test", title="t", message="m", test_id="test_x.py::test_y")
    assert locate(tmp_path, nothing, is_test) is None
