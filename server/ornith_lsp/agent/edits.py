"""Edit formats a small model can write: code as code, never inside JSON.

Measured on a 1.5B coder model, a corrected program asked for as a fenced code
block was verified about thirteen times as often as the same program asked for
as a JSON string (which the model breaks by not escaping docstrings, or by
repeating ``\\n`` until the token limit).  So every format here reads plain text:

- ``symbol``: the new text of one function or class, in a fenced block; the
  harness puts it where the old definition was (located with ``ast``), keeping
  its indentation, and hoists any new imports the block starts with.
- ``file``: the whole new file, for small files.
- ``search-replace``: aider-style ``<<<<<<< SEARCH / ======= / >>>>>>> REPLACE``
  blocks, matched exactly first and then ignoring indentation and blank lines.

All functions are pure (text in, text out) and raise :class:`EditError` with a
sentence the model can act on.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from typing import Literal

EditFormat = Literal["symbol", "file", "search-replace"]
EDIT_FORMATS: tuple[EditFormat, ...] = ("symbol", "file", "search-replace")

_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+-]*)[^\n]*\n(.*?)^[ \t]*```", re.S | re.M)
_BLOCK = re.compile(
    r"^[ \t]*<{5,9} ?SEARCH[^\n]*\n(.*?)^[ \t]*={5,9}[ \t]*\n(.*?)^[ \t]*>{5,9} ?REPLACE[^\n]*$", re.S | re.M)


class EditError(ValueError):
    """The answer cannot be turned into an edit; the message goes back to the model."""


@dataclass(frozen=True)
class Span:
    """A definition's lines, 1-based and inclusive, decorators included."""

    name: str
    start: int
    end: int
    indent: str


def code_blocks(text: str) -> list[str]:
    """Every fenced block's body, in order; an unclosed last fence counts only
    when the answer plainly ended inside it (a cut-off answer is refused)."""
    return [body for _, body in _FENCE.findall(text)]


def find_definition(source: str, name: str) -> Span | None:
    """Where ``name`` (``f``, ``Class``, or ``Class.method``) is defined, outermost first."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    parts = name.split(".")
    body: list[ast.stmt] = tree.body
    found: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | None = None
    for i, part in enumerate(parts):
        found = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                      and n.name == part), None)
        if found is None:
            return None
        if i < len(parts) - 1:
            body = found.body if isinstance(found, ast.ClassDef) else []
    assert found is not None
    start = min([found.lineno, *(d.lineno for d in found.decorator_list)])
    line = source.splitlines()[start - 1]
    return Span(name=name, start=start, end=found.end_lineno or found.lineno,
                indent=line[: len(line) - len(line.lstrip())])


def _top_level_names(source: str) -> list[str]:
    tree = ast.parse(source)
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def _imports(tree: ast.Module, source: str) -> list[str]:
    lines = source.splitlines()
    return ["\n".join(lines[n.lineno - 1: n.end_lineno]) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]


def _pick_block(answer: str) -> str:
    blocks = [b for b in code_blocks(answer) if b.strip()]
    if not blocks:
        if answer.count("```") % 2 == 1:
            raise EditError("the code block was not closed (the answer was probably cut off); write the code "
                            "again, shorter, between ``` fences")
        raise EditError("no code block found; answer with the code between ```python and ``` fences")
    return max(blocks, key=len)  # a model that adds a usage example writes it second, and shorter


def replace_symbol(source: str, name: str, answer: str) -> str:
    """``source`` with the definition of ``name`` replaced by the one in ``answer``.

    The block may hold the definition alone, or the definition with new
    imports and helper functions around it: imports the file lacks go to the
    file's top; helpers the file lacks go just before the definition; other
    definitions the file already has are left as they are (only ``name``
    changes), which keeps a rewrite from touching code nobody asked about."""
    span = find_definition(source, name)
    if span is None:
        raise EditError(f"`{name}` is not defined in the file any more")
    block = textwrap.dedent(_pick_block(answer)).strip("\n")
    try:
        tree = ast.parse(block)
    except SyntaxError as exc:
        raise EditError(f"the code is not valid Python (line {exc.lineno}: {exc.msg}); write the whole "
                        f"definition of `{name}` again") from None
    leaf = name.split(".")[-1]
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    target = next((n for n in defs if n.name == leaf), None)
    if target is None:
        if len(defs) == 1 and isinstance(defs[0], ast.FunctionDef) == isinstance(
                ast.parse(textwrap.dedent(_lines(source, span))).body[0], ast.FunctionDef):
            raise EditError(f"the code defines `{defs[0].name}`, not `{leaf}`; keep the name `{leaf}`")
        raise EditError(f"the code block does not define `{leaf}`; write the whole corrected `{leaf}`")
    lines = block.splitlines()
    start = min([target.lineno, *(d.lineno for d in target.decorator_list)])
    new_def = "\n".join(lines[start - 1: target.end_lineno])
    existing = set(_top_level_names(source))
    helpers = ["\n".join(lines[min([n.lineno, *(d.lineno for d in n.decorator_list)]) - 1: n.end_lineno])
               for n in defs if n is not target and n.name not in existing and span.indent == ""]
    src_lines = source.splitlines()
    replacement = textwrap.indent(new_def, span.indent).splitlines()
    if helpers:
        replacement = "\n\n\n".join(helpers).splitlines() + ["", ""] + replacement
    out = src_lines[: span.start - 1] + replacement + src_lines[span.end:]
    text = "\n".join(out) + ("\n" if source.endswith("\n") else "")
    have = set(_imports(ast.parse(source), source))
    new_imports = [i for i in _imports(tree, block) if i not in have]
    return _add_imports(text, new_imports) if new_imports else text


def _lines(source: str, span: Span) -> str:
    return "\n".join(source.splitlines()[span.start - 1: span.end])


def _add_imports(source: str, imports: list[str]) -> str:
    """After the module docstring, ``__future__`` imports and existing imports."""
    tree = ast.parse(source)
    after = 0
    for i, node in enumerate(tree.body):
        if (i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)) or isinstance(node, (ast.Import, ast.ImportFrom)):
            after = node.end_lineno or after
        else:
            break
    lines = source.splitlines()
    return "\n".join(lines[:after] + imports + lines[after:]) + ("\n" if source.endswith("\n") else "")


def replace_file(source: str, answer: str) -> str:
    """The whole new file from the answer's code block, checked to parse."""
    block = _pick_block(answer)
    try:
        ast.parse(block)
    except SyntaxError as exc:
        raise EditError(f"the code is not valid Python (line {exc.lineno}: {exc.msg}); write the whole file again") from None
    missing = [n for n in _top_level_names(source) if n not in _top_level_names(block)]
    if missing:
        raise EditError(f"the new file drops {', '.join(missing[:5])}; write the complete file, every definition kept")
    return block if block.endswith("\n") else block + "\n"


def _norm(line: str) -> str:
    return " ".join(line.split())


def _locate(lines: list[str], search: list[str]) -> tuple[int, int] | None:
    """Exact match first, then ignoring indentation and blank lines; a match
    must be unique, since a guess between two places is how edits go wrong."""
    n = len(search)
    exact = [i for i in range(len(lines) - n + 1) if lines[i: i + n] == search]
    if len(exact) == 1:
        return exact[0], exact[0] + n
    if len(exact) > 1:
        raise EditError("a SEARCH text occurs more than once; include more lines around it so it is unique")
    want = [_norm(s) for s in search if s.strip()]
    if not want:
        return None
    hits = []
    for i in range(len(lines)):
        if _norm(lines[i]) != want[0]:
            continue
        j, k = i, 0
        while j < len(lines) and k < len(want):
            if not lines[j].strip():
                j += 1
                continue
            if _norm(lines[j]) != want[k]:
                break
            j, k = j + 1, k + 1
        if k == len(want):
            hits.append((i, j))
    if len(hits) > 1:
        raise EditError("a SEARCH text occurs more than once; include more lines around it so it is unique")
    return hits[0] if hits else None


def _reindent(replace: list[str], found: list[str], search: list[str]) -> list[str]:
    """Shift the replacement by however much the file's indentation differs
    from the model's SEARCH text."""
    def indent(lines: list[str]) -> int:
        return next((len(x) - len(x.lstrip()) for x in lines if x.strip()), 0)

    delta = indent(found) - indent(search)
    if delta > 0:
        return [(" " * delta + x) if x.strip() else x for x in replace]
    if delta < 0:
        return [x[min(-delta, len(x) - len(x.lstrip())):] for x in replace]
    return replace


def apply_blocks(source: str, answer: str) -> str:
    """Apply every SEARCH/REPLACE block in ``answer`` to ``source``, in order."""
    blocks = _BLOCK.findall(answer)
    if not blocks:
        raise EditError("no SEARCH/REPLACE block found; write <<<<<<< SEARCH, the exact old lines, =======, "
                        "the new lines, >>>>>>> REPLACE")
    lines = source.splitlines()
    for search_text, replace_text in blocks:
        search = search_text.splitlines()
        replace = replace_text.splitlines()
        if not any(s.strip() for s in search):
            raise EditError("a SEARCH part is empty; copy the lines to change from the file")
        where = _locate(lines, search)
        if where is None:
            first = next(s for s in search if s.strip()).strip()
            raise EditError(f"a SEARCH text was not found in the file (it starts {first[:60]!r}); copy the lines "
                            "exactly as they are in the file")
        i, j = where
        lines[i:j] = _reindent(replace, lines[i:j], search)
    text = "\n".join(lines) + ("\n" if source.endswith("\n") else "")
    return text


def apply(fmt: EditFormat, source: str, answer: str, symbol: str | None) -> str:
    """One entry point for the strategies: the new file text, or EditError."""
    if fmt == "symbol":
        if symbol is None:
            return replace_file(source, answer)
        return replace_symbol(source, symbol, answer)
    if fmt == "file":
        return replace_file(source, answer)
    return apply_blocks(source, answer)


def normalised(code: str) -> str:
    """Code without comments, docstring-free and reformatted: two answers that
    differ only in spacing or comments are the same attempt (a dead end)."""
    try:
        tree = ast.parse(textwrap.dedent(code))
    except SyntaxError:
        return " ".join(code.split())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.unparse(tree)
