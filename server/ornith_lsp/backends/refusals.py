"""Settings the planner refuses before or instead of a plan, each with why.

A contradiction (two settings that cannot hold together, or one this
machine cannot honour) is refused before any arithmetic, so the user reads
the setting to change rather than a server that dies at load time.  Expert
offload that cannot be computed is refused with the numbers that are known.
"""

from __future__ import annotations

from ..settings import BackendSettings
from . import reasons
from .catalog import ModelSpec
from .hardware import Hardware
from .llamacpp import QUANTIZED_KV
from .placement import Placement, mib, targets
from .plans import PlanError


def refuse_contradictions(hw: Hardware, backend: BackendSettings) -> None:
    """Settings that cannot be combined are refused before any arithmetic."""
    _refuse_vllm_only_gpu(hw, backend)
    _refuse_llama_only_on_vllm(backend)
    _refuse_split_settings(hw, backend)
    _refuse_parallelism(hw, backend)


def _refuse_vllm_only_gpu(hw: Hardware, backend: BackendSettings) -> None:
    if backend.kind == "vllm" and not hw.gpus:
        raise PlanError("backend.kind = 'vllm' needs a GPU and none is usable on this machine")


def _refuse_llama_only_on_vllm(backend: BackendSettings) -> None:
    if backend.kind != "vllm":
        return
    if backend.gpu_layers is not None:
        raise PlanError(
            "backend.gpu_layers splits layers between GPU and CPU, which only llama-server "
            "does; vLLM keeps every layer on the GPUs"
        )
    if backend.cpu_moe_layers:
        raise PlanError("backend.cpu_moe_layers keeps experts in RAM, which only llama-server does; vLLM keeps them on the GPUs")
    if backend.kv_cache_type in QUANTIZED_KV:
        raise PlanError(f"backend.kv_cache_type = {backend.kv_cache_type!r} is a llama-server cache type; vLLM does not take it")


def _refuse_split_settings(hw: Hardware, backend: BackendSettings) -> None:
    if backend.cpu_moe_layers and backend.gpu_layers is not None:
        raise PlanError(
            "backend.cpu_moe_layers and backend.gpu_layers both leave weights in RAM; set one of them "
            "(cpu_moe_layers keeps every layer's attention on the GPU, gpu_layers moves whole layers)"
        )
    if backend.cpu_moe_layers and not hw.gpus:
        raise PlanError(
            f"backend.cpu_moe_layers = {backend.cpu_moe_layers} keeps experts in RAM next to a GPU, "
            "and no GPU is usable on this machine"
        )


def _refuse_parallelism(hw: Hardware, backend: BackendSettings) -> None:
    tp = backend.tensor_parallel_size
    if tp is not None and tp > 1 and backend.kind in ("llamacpp", "embedded"):
        raise PlanError(
            f"backend.tensor_parallel_size = {tp} needs vLLM; llama-server splits layers "
            "across GPUs instead of tensors"
        )
    if tp is not None and tp > max(1, len(hw.gpus)):
        raise PlanError(
            f"backend.tensor_parallel_size = {tp} but this machine has {len(hw.gpus)} usable GPU(s)"
        )
    pp = backend.pipeline_parallel_size
    if pp is None or pp <= 1:
        return
    if backend.kind in ("llamacpp", "embedded") or backend.gpu_layers is not None:
        raise PlanError(
            f"backend.pipeline_parallel_size = {pp} spreads a model over {pp} nodes of a Ray "
            "cluster, which only vLLM does"
        )
    if not hw.gpus:
        raise PlanError(
            f"backend.pipeline_parallel_size = {pp} needs GPUs, and this node (taken as the "
            "model for every node) has none usable"
        )


def refuse_expert_offload(spec: ModelSpec, backend: BackendSettings) -> None:
    """``backend.cpu_moe_layers`` asked of a model that has no experts to move,
    no file llama-server loads, or fewer layers than asked."""
    n = backend.cpu_moe_layers
    if not n:
        return
    if spec.custom and spec.expert_share and not spec.offloadable:
        raise PlanError(unknown_experts(spec, f"backend.cpu_moe_layers = {n}"))
    if not any(q.format == "gguf" for q in spec.quants):
        raise PlanError(f"backend.cpu_moe_layers = {n} is a llama-server setting, and the {spec.size} has no GGUF file")
    if not spec.is_moe:
        kind = "GGUF" if spec.custom else f"{spec.size}"
        raise PlanError(
            f"backend.cpu_moe_layers = {n} keeps routed experts in RAM, but the {kind} is a dense model "
            f"(no expert tensors, no expert count in its {'header' if spec.custom else 'catalog entry'}); "
            "set backend.gpu_layers to leave whole layers in RAM instead"
        )
    if n > spec.layers:
        raise PlanError(f"backend.cpu_moe_layers = {n} but the {spec.size} has {spec.layers} layers")


def unknown_experts(spec: ModelSpec, why: str) -> str:
    moved = round((spec.expert_share or 0) * spec.quants[0].weight_bytes)
    missing = [k for k, v in (("expert_count", spec.expert_count), ("expert_used_count", spec.experts_used)) if not v]
    return (
        f"{why}: {spec.repo} holds {mib(moved)} of expert tensors but its header has no "
        f"{' or '.join(missing)}, so the share of them read per token (and the speed with some in RAM) "
        "cannot be computed; set backend.gpu_layers for a plain layer split instead"
    )


def refuse_unknown_experts(spec: ModelSpec, options: list[Placement], backend: BackendSettings) -> None:
    """A GGUF with expert tensors but no expert counts in its header cannot be
    split by experts, and a layer split would misjudge its speed."""
    if spec.custom and spec.expert_share and not spec.offloadable:
        best = reasons.closest(options)
        floor = targets(best, backend.context_length)[0]
        raise PlanError(unknown_experts(spec, f"the GGUF does not fit the GPU whole ({best.explain(floor)})"))
