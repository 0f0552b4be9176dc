"""Editor diagnostics as tasks.

The editor speaks in URIs, 0-based lines and UTF-16 columns; the agent and the
reports speak in workspace-relative paths and 1-based lines, like every
compiler message a model has read.  The conversion happens here, once.
"""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types as lsp
from pygls.uris import to_fs_path

from ornith_lsp.paths import relative_path
from ornith_lsp.tasks.model import Location, Task

TITLE_LIMIT = 100


def task_title(verb: str, message: str) -> str:
    """One line for a code action menu: the first line of the message, cut short."""
    first = message.strip().splitlines()[0] if message.strip() else ""
    if len(first) > TITLE_LIMIT:
        first = first[: TITLE_LIMIT - 1] + "…"
    return f"Ornith: {verb} {first}".rstrip()


def from_lsp_diagnostic(root: Path, uri: str, diag: lsp.Diagnostic) -> Task:
    """The task of making ``diag`` go away.

    Columns become 1-based like the lines (the LSP's UTF-16 count, plus one);
    a range that ends at column 0 of a later line ends on the line before it,
    which is how a "whole line" diagnostic is usually sent.
    """
    fs_path = to_fs_path(uri) if uri.startswith("file:") else None
    rel = relative_path(root, fs_path) if fs_path else None
    if rel is None:
        raise ValueError(f"diagnostic for {uri} is outside the workspace {root}")
    start, end = diag.range.start, diag.range.end
    end_line = end.line if end.character == 0 and end.line > start.line else end.line + 1
    return Task(
        source="diagnostic",
        title=task_title("fix", diag.message),
        message=diag.message,
        location=Location(path=rel, line=start.line + 1, end_line=end_line, column=start.character + 1),
        code=None if diag.code is None else str(diag.code),
        diagnostic_source=diag.source,
    )
