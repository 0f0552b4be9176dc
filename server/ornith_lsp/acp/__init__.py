"""``ornith-lsp acp``: the verified-fix agent for editors' agent panels.

The Agent Client Protocol (Zed, JetBrains, CodeCompanion.nvim, agent-shell)
over stdio, built on the ``agent-client-protocol`` SDK.  A thin front end: the
prompt is read into tasks (:mod:`.intent`), the fix service does the work,
its events become ``session/update`` notifications (:mod:`.updates`), and a
verified change is written only after the user allows it (:mod:`.turn`).
"""
