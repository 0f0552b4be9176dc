"""One line for a backend that would not start.

A start-up failure carries the backend's log tail (20 lines of llama.cpp
chatter); a CI log needs the one line that says why -- "error loading model:
... corrupted or incomplete", "couldn't bind HTTP server socket", "failed to
allocate" -- up front, with the tail kept underneath for whoever digs.
"""

from __future__ import annotations

import re

# llama.cpp's "0.00.043.227 E " prefix: elapsed time and a level letter
_PREFIX = re.compile(r"^\s*\d[\d.]*\s+[A-Z]\s+")
_ERROR = re.compile(r"(^|\s)E\s|error|failed|cannot|can't|couldn't|could not|out of memory|bad_alloc|"
                    r"address already in use|permission denied|no such file", re.IGNORECASE)
_NOISE = re.compile(r"^(===|warning: )|security: no API key")


def cause(log_tail: str) -> str | None:
    """The first line of the tail that reads like the reason, without its timestamp."""
    for line in log_tail.splitlines():
        if line.strip() and not _NOISE.search(line) and _ERROR.search(line):
            return _PREFIX.sub("", line).strip()
    return None


def one_line(message: str, tail_lines: int = 8) -> tuple[str, list[str]]:
    """(one line saying what failed and why, the last lines of the log)."""
    head, _, tail = message.partition("\n")
    head = head.rstrip(":").strip()
    why = cause(tail)
    lines = [line for line in tail.splitlines() if line.strip()][-tail_lines:]
    return (f"{head}: {why}" if why and why not in head else head), lines
