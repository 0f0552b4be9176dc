"""ornith-lsp: a language server that runs a local coding model as a verified-fix agent."""

__version__ = "0.1.0"
