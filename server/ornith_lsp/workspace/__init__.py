"""The workspace: a shadow tree for the agent, checkpoints for the user, and
the way a verified diff travels back (WorkspaceEdit, text, or files)."""

from ornith_lsp.workspace.checkpoints import Checkpoint, list_checkpoints, rollback
from ornith_lsp.workspace.edits import PatchError, apply_diff_to_text, apply_to_tree, diff_to_workspace_edit
from ornith_lsp.workspace.repo import WorkspaceError
from ornith_lsp.workspace.shadow import Shadow, ShadowError

__all__ = [
    "Checkpoint", "PatchError", "Shadow", "ShadowError", "WorkspaceError",
    "apply_diff_to_text", "apply_to_tree", "diff_to_workspace_edit", "list_checkpoints", "rollback",
]
