"""Talking to a model server; see :mod:`ornith_lsp.llm.client`."""

from .client import (
    ChatClient,
    Completion,
    LLMConnectionError,
    LLMError,
    LLMHTTPError,
    LLMTimeout,
    Usage,
)

__all__ = [
    "ChatClient",
    "Completion",
    "LLMConnectionError",
    "LLMError",
    "LLMHTTPError",
    "LLMTimeout",
    "Usage",
]
