"""What the guard says about a change: findings that block it, concerns that
only ask for a second opinion, and notes about how the verdict was reached.

``allowed`` is derived from the findings, never stored beside them, so no
caller can produce a verdict that allows a change while listing a reason to
block it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from ornith_lsp.guard.hints import hint_for

Layer = Literal["boundary", "grading", "monitor", "judge"]
LAYERS = ("boundary", "grading", "monitor", "judge")


class GuardError(Exception):
    """No verdict can be given (bad input, unreadable repository); the message is for the user."""


@dataclass(frozen=True)
class Finding:
    layer: Layer
    monitor: str
    path: str | None
    line: int | None
    evidence: str

    def __post_init__(self) -> None:
        if self.layer not in LAYERS:
            raise ValueError(f"layer must be one of {LAYERS}, not {self.layer!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def where(self) -> str:
        if self.path is None:
            return ""
        return f"{self.path}:{self.line}" if self.line else self.path


class Verdict:
    """``Verdict(allowed, findings, notes)``; ``allowed`` may be omitted and must
    agree with the findings when given."""

    def __init__(
        self,
        allowed: bool | None = None,
        findings: list[Finding] | None = None,
        notes: list[str] | None = None,
        concerns: list[Finding] | None = None,
    ) -> None:
        self.findings = list(findings or [])
        self.notes = list(notes or [])
        self.concerns = list(concerns or [])
        if allowed is not None and bool(allowed) != self.allowed:
            raise ValueError("a verdict is allowed exactly when it has no findings")

    @property
    def allowed(self) -> bool:
        return not self.findings

    def __repr__(self) -> str:
        return f"Verdict(allowed={self.allowed}, findings={self.findings!r}, notes={self.notes!r})"

    def to_dict(self) -> dict:
        return {
            "allowed": self.allowed,
            "findings": [f.to_dict() for f in self.findings],
            "concerns": [f.to_dict() for f in self.concerns],
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        """One line for a status bar or a log."""
        if self.allowed:
            return "allowed" + (f" ({len(self.concerns)} concern(s) noted)" if self.concerns else "")
        names = ", ".join(dict.fromkeys(f.monitor for f in self.findings))
        return f"blocked by {names}"

    def for_model(self, budget_chars: int = 1500) -> str:
        """What the agent tells the model after a blocked attempt: which rule each
        finding broke and what an honest fix looks like, cut to the budget so a
        long list cannot crowd out the model's context."""
        if self.allowed:
            return "The guard allowed the change."
        head = "The guard blocked this change; it was not applied. Rules broken:"
        lines = [head]
        for f in self.findings:
            where = f" {f.where()}" if f.where() else ""
            lines.append(f"- [{f.monitor}]{where}: {f.evidence}")
        hints = list(dict.fromkeys(hint_for(f.monitor) for f in self.findings))
        lines.append("To do instead: " + " ".join(h for h in hints if h))
        text = "\n".join(lines)
        if len(text) <= budget_chars:
            return text
        kept, size = [head], len(head)
        tail = lines[-1][: max(0, budget_chars // 3)]
        for line in lines[1:-1]:
            if size + len(line) + len(tail) + 40 > budget_chars:
                kept.append(f"- ... and {len(self.findings) - (len(kept) - 1)} more")
                break
            kept.append(line)
            size += len(line) + 1
        kept.append(tail)
        return "\n".join(kept)[:budget_chars]
