"""What ``doctor`` reports: the hardware, the plan or why there is none, the
parts it needs, the endpoint or a local Ollama, and larger models within reach.

Each problem is one line and never hides the rest, so a report is built even
when no plan is possible; the command line only prints it.  The report is a
typed :class:`Diagnosis`; :meth:`Diagnosis.to_json` is the ``doctor --json``
document, flat as it has always been (the plan's fields at the top level), and
a section is left out where it does not apply rather than sent empty.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .. import settings as settings_mod
from ..settings import Settings
from . import embedded, ollama
from .hardware import Hardware, probe
from .planner import alternatives
from .plans import Plan, PlanError, plan_summary
from .remote import probe_remote
from .runtime import find_vllm, make_plan

OPTIONAL = ("llama_server", "alternatives", "remote", "ollama", "tests", "leftovers")
"""Sections in ``doctor --json`` only when they apply, in this order."""


class LlamaServerFound(BaseModel):
    path: str
    found_via: str


class OllamaFound(BaseModel):
    """An Ollama server: the answer of :func:`.ollama.detect`."""

    root: str
    version: str
    models: list[str]


class RemoteProbe(BaseModel):
    """What the endpoint said: :func:`.remote.probe_remote`'s answer."""

    endpoint: str
    models: list[str] | None
    error: str | None
    ollama: OllamaFound | None


class Alternative(BaseModel):
    """A larger model with part of it in RAM, as one line and its facts."""

    model_size: str | None
    quant: str | None
    context_length: int
    cpu_moe_layers: int | None
    kv_cache_type: str | None
    expected_tokens_per_second: float | None
    command: list[str]
    summary: str


class Diagnosis(BaseModel):
    hardware: Hardware
    plan: Plan | None
    error: str | None = None
    """Why no plan is possible (the :class:`~.plans.PlanError`), when none is."""
    problems: list[str] = []
    log_dir: str
    llama_server: LlamaServerFound | None = None
    alternatives: list[Alternative] = []
    remote: RemoteProbe | None = None
    ollama: OllamaFound | None = None
    tests: dict[str, Any] | None = None
    """The project's test command, resolved by the caller (another floor's report)."""
    leftovers: list[dict[str, Any]] = []
    """Shadows of dead runs, found by the caller (another floor's report)."""

    def to_json(self) -> dict[str, Any]:
        """The ``doctor --json`` document: ``backend`` and ``error`` first, the
        plan's fields, then the facts; optional sections only where set."""
        doc: dict[str, Any] = {"backend": None, "error": self.error}
        if self.plan is not None:
            doc.update(plan_summary(self.plan))
        doc.update(
            hardware=self.hardware.model_dump(mode="json"), problems=list(self.problems), log_dir=self.log_dir
        )
        dumped = self.model_dump(mode="json", include=set(OPTIONAL) & self.model_fields_set)
        doc.update((key, dumped[key]) for key in OPTIONAL if key in dumped)
        return doc


def diagnose(s: Settings, hardware_file: Path | None = None) -> Diagnosis:
    hw = probe(hardware_file)
    found = Diagnosis(hardware=hw, plan=None, problems=list(hw.problems), log_dir=str(s.resolved_log_dir()))
    try:
        found.plan, plan_problems = make_plan(s, hw)
    except PlanError as exc:
        found.error = str(exc)
    else:
        found.problems += plan_problems
    if found.plan is not None and found.plan.backend != "remote":
        found.llama_server = _llama_server(s)
        found.alternatives = [_alternative(p) for p in _alternatives(s, hw, found.plan)]
    timeout = s.client.connect_timeout_s
    if found.plan is not None and found.plan.endpoint:
        api_key = settings_mod.api_key(s)
        found.remote = RemoteProbe.model_validate(
            asyncio.run(probe_remote(found.plan.endpoint, api_key=api_key, timeout=timeout))
        )
        if found.remote.error:
            found.problems.append(found.remote.error)
    elif s.backend.kind == "auto" and not s.backend.endpoint:
        local = asyncio.run(ollama.detect(ollama.default_root(), timeout=min(timeout, 1.0)))
        found.ollama = OllamaFound.model_validate(local) if local is not None else None
    return found


def _llama_server(s: Settings) -> LlamaServerFound | None:
    try:
        path, where = embedded.find_llama_server(s.backend.llama_server)
    except embedded.MissingPart:
        return None
    return LlamaServerFound(path=str(path), found_via=where)


def _alternatives(s: Settings, hw: Hardware, chosen: Plan) -> list[Plan]:
    llama_server = chosen.command[0] if chosen.backend == "llamacpp" and chosen.command else "llama-server"
    return alternatives(hw, s.backend, chosen, llama_server=llama_server, vllm_cmd=find_vllm())


def _alternative(p: Plan) -> Alternative:
    where = f"the experts of {p.cpu_moe_layers} of its layers in RAM (--n-cpu-moe {p.cpu_moe_layers})"
    line = (
        f"the {p.model_size} {p.quant} with {where}, {p.context_length} tokens, about "
        f"{p.expected_tokens_per_second:g} tokens/s (an estimate): use it with --model-size {p.model_size}"
    )
    return Alternative(
        model_size=p.model_size,
        quant=p.quant,
        context_length=p.context_length,
        cpu_moe_layers=p.cpu_moe_layers,
        kv_cache_type=p.kv_cache_type,
        expected_tokens_per_second=p.expected_tokens_per_second,
        command=p.command,
        summary=line,
    )
