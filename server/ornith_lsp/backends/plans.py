"""What planning produces: the :class:`Plan` every path returns (local or
remote), and the :class:`PlanError` a plan that cannot be served raises.

Kept apart from the search so that the modules which build a plan (the
search in :mod:`.planner`, :mod:`.local`, :mod:`.remote`) and those which read
one (:mod:`.runtime`, :mod:`.diagnosis`, :mod:`.table`) share one definition
without importing each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel


class PlanError(ValueError):
    """Settings that cannot be served on this machine; the message has the arithmetic."""


class Plan(BaseModel):
    backend: Literal["vllm", "llamacpp", "remote"]
    model: str
    model_size: str | None
    quant: str | None
    context_length: int
    tensor_parallel_size: int | None
    pipeline_parallel_size: int | None = None
    gpu_layers: int | None
    cpu_moe_layers: int | None = None
    """Layers whose routed experts stay in RAM (``--n-cpu-moe``); None when none do."""
    kv_cache_type: str | None = None
    gpu_indices: list[int] = []
    hf_repo: str | None = None
    command: list[str]
    env: dict[str, str] = {}
    """Set for the server process on top of the inherited environment."""
    endpoint: str | None = None
    ollama: bool = False
    served_name: str
    expected_tokens_per_second: float | None
    reasons: list[str]
    assumed: list[str] = []


def plan_summary(plan: Plan) -> dict[str, Any]:
    """The ``doctor --json`` shape: every field, JSON-ready."""
    return plan.model_dump(mode="json")


def is_model_dir(path: Path) -> bool:
    """A model path that is not a ``.gguf`` file is a Hugging Face model directory
    for vLLM; deciding by name keeps the planner off the disk."""
    return path.suffix.lower() != ".gguf"
