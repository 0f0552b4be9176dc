"""Which grammar and which tags query read a file, chosen by its suffix.

Adding a language is a row in ``GRAMMARS`` (its grammar package exposes
``language()``, as every ``tree-sitter-*`` wheel does; TypeScript's names
``language_typescript()`` and ``language_tsx()``) and a
``queries/<name>-tags.scm`` file using the capture names of
``python-tags.scm``; nothing else in ``context/`` knows about any language.
Grammars load on first use, so a language nobody opens costs no import.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tree_sitter import Language, Query

QUERIES = Path(__file__).parent / "queries"


@dataclass(frozen=True)
class Grammar:
    name: str
    module: str
    suffixes: tuple[str, ...]
    function: str = "language"
    query: str = ""
    """The tags query's name when it is shared (TSX reads TypeScript's)."""


GRAMMARS = (
    Grammar("python", "tree_sitter_python", (".py", ".pyi")),
    Grammar("javascript", "tree_sitter_javascript", (".js", ".mjs", ".cjs", ".jsx")),
    Grammar("typescript", "tree_sitter_typescript", (".ts", ".mts", ".cts"), "language_typescript"),
    Grammar("tsx", "tree_sitter_typescript", (".tsx",), "language_tsx", "typescript"),
    Grammar("go", "tree_sitter_go", (".go",)),
    Grammar("rust", "tree_sitter_rust", (".rs",)),
)


@dataclass(frozen=True)
class LanguageSpec:
    name: str
    language: Language
    tags: Query


BY_SUFFIX = {suffix: grammar for grammar in GRAMMARS for suffix in grammar.suffixes}


@cache
def _load(grammar: Grammar) -> LanguageSpec:
    language = Language(getattr(importlib.import_module(grammar.module), grammar.function)())
    query = (QUERIES / f"{grammar.query or grammar.name}-tags.scm").read_text(encoding="utf-8")
    return LanguageSpec(grammar.name, language, Query(language, query))


def for_path(path: str | Path) -> LanguageSpec | None:
    """The language reading ``path``, or None for files the index does not read."""
    grammar = BY_SUFFIX.get(Path(path).suffix)
    return _load(grammar) if grammar else None
