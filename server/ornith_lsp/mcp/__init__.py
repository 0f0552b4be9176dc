"""``ornith-lsp mcp``: the verifier lent to other agents over the Model Context Protocol.

Another agent (a chat in a terminal, an IDE's assistant) calls four tools --
``run_tests``, ``guard_check``, ``verify_patch``, ``fix`` -- and gets typed
answers; each tool is a thin adapter over the fix service and the guard, so
a patch verified here is verified exactly as the editor's fixes are.  No tool
writes to the user's tree: changes are laid in shadows and come back as diffs.

``models`` holds the tools' input and output models, ``tools`` the adapters
(no protocol in them), ``server`` the SDK wiring.  Inside this package the
SDK is imported absolutely (``import mcp``), never this package.
"""
