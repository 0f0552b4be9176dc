"""What ``doctor`` reports: the hardware, the plan or why there is none, the
parts it needs, the endpoint or a local Ollama, and larger models within reach.

Each problem is one line and never hides the rest, so a report is built even
when no plan is possible; the command line only prints it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import settings as settings_mod
from ..settings import Settings
from . import embedded, ollama
from .hardware import Hardware, probe
from .planner import Plan, PlanError, alternatives, plan_summary
from .runtime import find_vllm, make_plan, probe_remote


@dataclass
class Diagnosis:
    report: dict[str, Any]
    """The ``doctor --json`` document."""
    plan: Plan | None
    problems: list[str] = field(default_factory=list)


def diagnose(s: Settings, hardware_file: Path | None = None) -> Diagnosis:
    hw = probe(hardware_file)
    problems = list(hw.problems)
    report: dict[str, Any] = {"backend": None, "error": None}
    the_plan: Plan | None = None
    try:
        the_plan, found = make_plan(s, hw)
    except PlanError as exc:
        report["error"] = str(exc)
    else:
        report.update(plan_summary(the_plan))
        problems += found
    report.update(hardware=hw.model_dump(mode="json"), problems=problems, log_dir=str(s.resolved_log_dir()))
    if the_plan is not None and the_plan.backend != "remote":
        try:
            path, where = embedded.find_llama_server(s.backend.llama_server)
            report["llama_server"] = {"path": str(path), "found_via": where}
        except embedded.MissingPart:
            report["llama_server"] = None
        report["alternatives"] = [_alternative(p) for p in _alternatives(s, hw, the_plan)]
    timeout = s.client.connect_timeout_s
    if the_plan is not None and the_plan.endpoint:
        remote = asyncio.run(probe_remote(the_plan.endpoint, api_key=settings_mod.api_key(s), timeout=timeout))
        report["remote"] = remote
        if remote["error"]:
            problems.append(remote["error"])
    elif s.backend.kind == "auto" and not s.backend.endpoint:
        report["ollama"] = asyncio.run(ollama.detect(ollama.default_root(), timeout=min(timeout, 1.0)))
    return Diagnosis(report, the_plan, problems)


def _alternatives(s: Settings, hw: Hardware, chosen: Plan) -> list[Plan]:
    llama_server = chosen.command[0] if chosen.backend == "llamacpp" and chosen.command else "llama-server"
    return alternatives(hw, s.backend, chosen, llama_server=llama_server, vllm_cmd=find_vllm())


def _alternative(p: Plan) -> dict[str, Any]:
    """A larger model with part of it in RAM, as one line and its facts."""
    where = f"the experts of {p.cpu_moe_layers} of its layers in RAM (--n-cpu-moe {p.cpu_moe_layers})"
    line = (
        f"the {p.model_size} {p.quant} with {where}, {p.context_length} tokens, about "
        f"{p.expected_tokens_per_second:g} tokens/s (an estimate): use it with --model-size {p.model_size}"
    )
    return {
        "model_size": p.model_size,
        "quant": p.quant,
        "context_length": p.context_length,
        "cpu_moe_layers": p.cpu_moe_layers,
        "kv_cache_type": p.kv_cache_type,
        "expected_tokens_per_second": p.expected_tokens_per_second,
        "command": p.command,
        "summary": line,
    }
