"""Tasks: what the agent is asked to fix, whatever produced the request."""

from ornith_lsp.tasks.model import Location, Task

__all__ = ["Location", "Task"]
