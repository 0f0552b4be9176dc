"""What a grading run found, and which node ids a target selects: shared by
the pytest grader and the other languages' graders without either importing
the other."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class GradeResult:
    passed: bool
    ran: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    summary_found: bool = False
    report_path: Path | None = None
    reason: str = ""
    exit_code: int | None = None
    restored: list[str] = field(default_factory=list)
    log_path: Path | None = None
    kind: str = "tests-failed"


def selects(target: str, node: str) -> bool:
    if node == target:
        return True
    if node.startswith(target + "::"):
        return True
    return "[" not in target.rsplit("::", 1)[-1] and node.startswith(target + "[")
