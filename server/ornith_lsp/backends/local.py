"""From the placement the search chose to a :class:`~.plans.Plan` for a server
started here: its argv (built beside each backend, in :mod:`.llamacpp` and
:mod:`.vllm`), the GPUs it may see, and one reason per choice (:mod:`.reasons`).

Pure, like the search: the caller passes what it found on disk (the
llama-server binary, the embedded model's path, GGUF headers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..settings import BackendSettings
from . import reasons
from .catalog import SERVED_NAME, ModelSpec, is_embedded
from .gguf import GgufInfo
from .hardware import Hardware
from .llamacpp import draft_for, llama_command
from .placement import CPU_CONTEXT, Placement, pin_gpus, place
from .plans import Plan
from .vllm import TOOL_CALL_PARSER, vllm_command

Skipped = list[tuple[ModelSpec, list[Placement]]]
"""Models tried before the chosen one, with the options each had."""


@dataclass(frozen=True)
class Found:
    """What the caller located on this machine, for the argv."""

    llama_server: str
    embedded_model: str | None
    vllm_cmd: str
    headers: Mapping[str, GgufInfo]


@dataclass(frozen=True)
class _Launch:
    model: str
    command: list[str]
    env: dict[str, str]
    tensor_parallel_size: int
    tools_reason: str | None


def local_plan(p: Placement, skipped: Skipped, hw: Hardware, backend: BackendSettings, found: Found) -> Plan:
    """The plan for placement ``p``; ``skipped`` are the better models that did
    not fit, each named in the reasons with its closest option's arithmetic."""
    context = context_for(p, backend.context_length)
    embedded = is_embedded(p.spec)
    served = p.spec.size if embedded else SERVED_NAME
    if p.spec.custom:
        served = Path(p.quant.file or p.spec.repo).stem
    launch = _launch(p, backend, context, served, found)
    tps, speed_reason = reasons.speed_reason(p)
    assumed = _assumed(p)
    why = [
        *_reasons(p, skipped, hw, backend, context, found, launch.tools_reason),
        speed_reason,
        *reasons.backend_extras(p, backend, context, found.embedded_model),
    ]
    if p.spec.licence:
        why.append(f"Model {p.spec.licence}.")
    if assumed:
        why.append(f"Assumed, not given by the release: {'; '.join(assumed)}.")
    return Plan(
        backend=p.backend,
        model=launch.model,
        model_size=p.spec.size,
        quant=p.quant.name,
        context_length=context,
        tensor_parallel_size=launch.tensor_parallel_size,
        pipeline_parallel_size=p.nodes if p.nodes > 1 else None,
        gpu_layers=p.gpu_layers if p.backend == "llamacpp" else p.spec.layers,
        cpu_moe_layers=p.cpu_moe_layers or None,
        kv_cache_type=p.kv_type if p.backend == "llamacpp" else None,
        gpu_indices=[g.index for g in p.gpus],
        hf_repo=None if embedded or p.spec.custom else p.quant.repo,
        command=launch.command,
        env=launch.env,
        served_name=served,
        expected_tokens_per_second=tps,
        reasons=why,
        assumed=assumed,
    )


def context_for(p: Placement, wanted: int | None) -> int:
    """What was asked; else all that fits on GPUs, and the CPU default on a CPU."""
    if wanted is not None:
        return wanted
    if not p.gpus:
        return min(CPU_CONTEXT, p.max_context)
    return p.max_context


def _launch(p: Placement, backend: BackendSettings, context: int, served: str, found: Found) -> _Launch:
    env: dict[str, str] = {}
    if p.gpus and p.nodes == 1:  # over Ray, the cluster's raylets hand out the GPUs
        env.update(pin_gpus(p.gpus))
    if p.backend == "vllm":
        model = str(backend.model_path) if backend.model_path is not None else p.quant.repo
        if backend.model_path is not None:
            env["HF_HUB_OFFLINE"] = "1"
        tp = len(p.gpus)
        command = vllm_command(found.vllm_cmd, model, SERVED_NAME, context, tp, p.utilization, p.nodes)
        return _Launch(model, command, env, tp, None)
    if is_embedded(p.spec):
        model = found.embedded_model or str(p.quant.file)
    else:
        model = str(backend.model_path or p.quant.file)
    header = found.headers.get(model)
    tools = header.supports_tools if header is not None else True
    command = llama_command(
        found.llama_server, model, context, p.gpu_layers, backend, served, tools,
        cpu_moe_layers=p.cpu_moe_layers, flash_attn=p.flash_attn, kv_type=p.kv_type,
        draft=draft_for(backend.draft),
    )  # fmt: skip
    return _Launch(model, command, env, 1, reasons.tools_reason(header, tools))


def _reasons(
    p: Placement,
    skipped: Skipped,
    hw: Hardware,
    backend: BackendSettings,
    context: int,
    found: Found,
    tools_reason: str | None,
) -> list[str]:
    f16_context = None
    if p.kv_type != "f16":
        f16 = place(p.spec, p.quant, p.gpus, p.gpu_layers, hw, backend, cpu_moe_layers=p.cpu_moe_layers)
        f16_context = f16.max_context
    return [
        reasons.hardware_reason(hw),
        *hw.problems,
        reasons.backend_reason(p, backend),
        reasons.model_reason(p, backend, hw),
        *(reasons.skipped_reason(spec, options, backend) for spec, options in skipped if options),
        reasons.quant_reason(p, backend),
        *reasons.size_disagreement(p),
        reasons.context_reason(p, context, backend),
        *reasons.kv_reason(p, f16_context, backend),
        *reasons.release_comparison(p, context),
        reasons.gpu_reason(p, hw, backend),
        reasons.layers_reason(p, backend),
        *([tools_reason] if tools_reason else []),
    ]


def _assumed(p: Placement) -> list[str]:
    assumed = list(p.spec.assumed)
    assumed += reasons.headroom_assumptions(p)
    if p.backend == "vllm":
        assumed.append(f"tool-call parser {TOOL_CALL_PARSER}")
    return assumed
