"""The workspace: a shadow tree for the agent, checkpoints for the user, and
the way a verified diff travels back (WorkspaceEdit, text, or files).

The names below are loaded on first use, not on import: the guard imports
:mod:`ornith_lsp.workspace.diffs`, and every ``guard check`` would otherwise
pay for loading the LSP protocol types (about half a second) that only
:mod:`ornith_lsp.workspace.edits` needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ornith_lsp.workspace.checkpoints import Checkpoint, list_checkpoints, rollback
    from ornith_lsp.workspace.diffs import PatchError
    from ornith_lsp.workspace.edits import apply_diff_to_text, apply_to_tree, diff_to_workspace_edit
    from ornith_lsp.workspace.repo import WorkspaceError
    from ornith_lsp.workspace.shadow import Shadow, ShadowError

_HOME = {
    "Checkpoint": "checkpoints", "list_checkpoints": "checkpoints", "rollback": "checkpoints",
    "PatchError": "diffs",
    "apply_diff_to_text": "edits", "apply_to_tree": "edits", "diff_to_workspace_edit": "edits",
    "WorkspaceError": "repo",
    "Shadow": "shadow", "ShadowError": "shadow",
}

__all__ = [
    "Checkpoint", "PatchError", "Shadow", "ShadowError", "WorkspaceError", "apply_diff_to_text", "apply_to_tree",
    "diff_to_workspace_edit", "list_checkpoints", "rollback",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value
