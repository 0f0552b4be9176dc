"""Code context for the agent: tree-sitter tags, the symbol around a line,
the helpers it uses, and a ranked repository map within a token budget."""

from .languages import LanguageSpec, for_path
from .parse import FileTags, Index, Symbol, definitions_used, enclosing
from .repomap import estimate_tokens, repo_map

__all__ = [
    "FileTags",
    "Index",
    "LanguageSpec",
    "Symbol",
    "definitions_used",
    "enclosing",
    "estimate_tokens",
    "for_path",
    "repo_map",
]
