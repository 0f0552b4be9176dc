"""Rust's inline tests: ``#[cfg(test)]`` items and ``#[test]`` functions inside
source files, protected item by item.

The file around them is the code under test and must stay editable, so the
boundary cannot protect it whole.  Instead the test items (with their
attributes) are compared before and after a change -- any difference is a
change to the tests -- and before grading the shadow's test items are
replaced by the base's, wherever the change moved them.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache

from tree_sitter import Language, Node, Parser

_TEST_ATTR = re.compile(r"^#\[\s*(?:cfg\s*\(.*\btest\b.*\)|(?:[\w:]+::)?test\b|test_case\b|rstest\b)")


@cache
def _parser() -> Parser:
    import tree_sitter_rust

    return Parser(Language(tree_sitter_rust.language()))


def test_items(text: str) -> list[tuple[int, int, str]]:
    """(start line, end line, text) of every test item, attributes included, in order."""
    data = text.encode("utf-8", "surrogateescape")
    tree = _parser().parse(data)
    out: list[tuple[int, int, str]] = []
    _scan(tree.root_node, data, out)
    return out


def _scan(container: Node, data: bytes, out: list[tuple[int, int, str]]) -> None:
    attrs: list[Node] = []
    for child in container.named_children:
        if child.type == "attribute_item":
            attrs.append(child)
            continue
        if child.type in ("line_comment", "block_comment"):
            continue
        is_test = any(_TEST_ATTR.match((a.text or b"").decode("utf-8", "replace")) for a in attrs)
        start = attrs[0] if attrs else child
        if is_test:
            out.append((start.start_point.row + 1, child.end_point.row + 1,
                        data[start.start_byte:child.end_byte].decode("utf-8", "surrogateescape")))
        elif child.type == "mod_item":
            body = child.child_by_field_name("body")
            if body is not None:
                _scan(body, data, out)
        attrs = []


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def changed_test_items(old: str | None, new: str | None) -> tuple[int | None, str] | None:
    """(line in the new text, what changed) when the test items differ, else None."""
    if new is None:
        return None
    before = test_items(old or "")
    after = test_items(new)
    if Counter(_normal(t) for *_, t in before) == Counter(_normal(t) for *_, t in after):
        return None
    old_set = {_normal(t) for *_, t in before}
    new_set = {_normal(t) for *_, t in after}
    added = [(line, t) for line, _, t in after if _normal(t) not in old_set]
    removed = [t for *_, t in before if _normal(t) not in new_set]
    if added:
        line, text = added[0]
        head = text.strip().splitlines()[0][:80]
        verb = "changes" if removed else "adds"
        return line, f"{verb} the inline test item starting `{head}`"
    head = removed[0].strip().splitlines()[0][:80] if removed else "a test item"
    return None, f"removes the inline test item starting `{head}`"


def restore(shadow_text: str, base_text: str) -> str:
    """``shadow_text`` with its test items replaced by the base's: the items are
    cut out where they stand and the base's appended at the end, which Rust's
    order-free items allow.  Unchanged when the items already match."""
    if changed_test_items(base_text, shadow_text) is None:
        return shadow_text
    lines = shadow_text.split("\n")
    keep = [True] * len(lines)
    for start, end, _ in test_items(shadow_text):
        for i in range(start - 1, end):
            keep[i] = False
    body = "\n".join(line for line, k in zip(lines, keep) if k).rstrip("\n")
    tests = "\n\n".join(t for *_, t in test_items(base_text))
    return f"{body}\n\n{tests}\n" if tests else body + "\n"
