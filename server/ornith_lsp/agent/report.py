"""The agent's typed records: its limits, each model turn, each sampled
candidate, the verification and the final report -- shared by the loop and
the strategies, and serialised as they are into headless reports."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ornith_lsp.agent.edits import EditFormat

Status = Literal["fixed", "unfixed", "vetoed", "budget", "error", "cancelled", "interrupted"]


class Limits(BaseModel):
    turns: int = 24
    tokens: int = 200_000
    wall_s: float = 600.0
    output_tokens: int = 512
    context_length: int = 8192
    temperature: float = 0.2
    strategy: str = "auto"  # auto | model-plan | one of strategies.BUILTIN
    small_model: bool = False
    edit_format: EditFormat = "symbol"
    candidates: int = 5
    tool_calls: Literal["auto", "native", "json_schema"] = "auto"


class Verification(BaseModel):
    ok: bool
    vetoed: bool = False
    summary: str
    findings: list[dict[str, Any]] = Field(default_factory=list)


class Turn(BaseModel):
    n: int
    stage: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    prefill_ms: float | None = None
    decode_ms: float | None = None
    tool: str | None = None
    outcome: str = ""


class Candidate(BaseModel):
    """One sampled fix and what became of it."""

    n: int
    temperature: float
    outcome: str
    wall_s: float


class Report(BaseModel):
    task_id: str
    status: Status = "unfixed"
    reason: str = ""
    strategy: str | None = None
    strategy_chosen_by: Literal["model", "setting", "fallback"] | None = None
    strategies_run: list[str] = Field(default_factory=list)
    tool_call_mode: Literal["native", "json_schema", "text", "free_text"] | None = None
    edit_format: str | None = None
    focus: str | None = None
    scaffolds: list[dict[str, Any]] = Field(default_factory=list)
    turns: list[Turn] = Field(default_factory=list)
    candidates: list[Candidate] = Field(default_factory=list)
    verification: Verification | None = None
    dead_ends: list[str] = Field(default_factory=list)
    wall_s: float = 0.0

    def tokens(self) -> dict[str, int]:
        return {"prompt": sum(t.prompt_tokens for t in self.turns),
                "completion": sum(t.completion_tokens for t in self.turns)}

    def decode_tok_s(self) -> float | None:
        ms = sum(t.decode_ms or 0 for t in self.turns)
        done = sum(t.completion_tokens for t in self.turns if t.decode_ms)
        return round(done / ms * 1000, 2) if ms else None

    def cache(self) -> dict[str, Any]:
        later = self.turns[1:]
        prompt = sum(t.prompt_tokens for t in later)
        cached = sum(t.cached_tokens for t in later)
        return {"prompt_tokens": sum(t.prompt_tokens for t in self.turns),
                "cached_tokens": sum(t.cached_tokens for t in self.turns),
                "reused_fraction_after_first_turn": round(cached / prompt, 4) if prompt else None}


class Stop(Exception):
    """Ends the task: verified, budget, error."""

    def __init__(self, status: Status, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason
