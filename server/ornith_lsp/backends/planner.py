"""From hardware and settings to the exact server command: a pure function.

The planner walks the models best first (``catalog.RANK``) and, within a
model, its files best quality first, and takes the first that fits with
enough context.  A GGUF the catalog does not know is planned from its own
header (:mod:`.gguf`), read by the caller.  Whether something fits is the
arithmetic of :mod:`.placement`; this module is the search over the options
(files, GPU counts, KV cache types, and -- for a model asked for by name that
no GPU here can hold whole -- layers or experts left in RAM), and
:mod:`.reasons` writes every choice down in ``Plan.reasons`` with its
numbers, so ``doctor`` can show why.  An override that cannot fit raises
:class:`PlanError` with the same numbers instead of producing a server that
dies at load time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from ..settings import BackendSettings
from . import catalog, reasons
from .catalog import MODELS, RANK, SERVED_NAME, ModelSpec, Quant, embedded_for, is_embedded
from .gguf import GgufInfo
from .hardware import Gpu, Hardware
from .llamacpp import draft_for, llama_command
from .ollama import OLLAMA_PORT, is_ollama_port, ollama_context_reason
from .placement import CPU_CONTEXT, Placement, mib, pin_gpus, place, targets
from .vllm import TOOL_CALL_PARSER, vllm_command

REMOTE_CONTEXT = 32768
QUANTIZED_KV = ("q8_0", "q4_0")
"""The quantized cache types llama-server is given; both need flash attention."""

AUTO_KV = ("f16", "q8_0")
"""What ``kv_cache_type = "auto"`` tries, in order, on a GPU.  q8_0 costs little
quality and is taken only when f16 leaves less than the least context that
counts; q4_0 costs more and is used only when asked for."""


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


def plan(
    hw: Hardware,
    backend: BackendSettings,
    *,
    llama_server: str = "llama-server",
    embedded_model: str | None = None,
    vllm_cmd: str = "vllm",
    gguf_headers: Mapping[str, GgufInfo] | None = None,
) -> Plan:
    """Choose backend, model, file, context, GPUs and the argv to start it.

    ``llama_server`` and ``embedded_model`` are what the caller found with
    :mod:`.embedded`, and ``gguf_headers`` the headers of local GGUF files it
    could read, by path (touching the disk is the caller's job, not this one's).
    """
    if backend.kind == "remote" or backend.endpoint:
        return _remote_plan(backend)
    _refuse_contradictions(hw, backend)
    headers = dict(gguf_headers or {})
    wanted = backend.context_length
    skipped: list[tuple[ModelSpec, list[Placement]]] = []
    specs = _specs(hw, backend, headers)
    if backend.cpu_moe_layers and len(specs) > 1:  # the automatic choice, among models with experts
        specs = [spec for spec in specs if _offloadable(spec)]
    for spec in specs:
        _refuse_expert_offload(spec, backend)
        options = _placements(spec, hw, backend)
        chosen = _choose(options, wanted)
        if chosen is None and _may_split(spec, hw, backend):
            _refuse_unknown_experts(spec, options, backend)
            splits: list[Placement] = []
            for kv in _kv_types(spec.quants[-1], True, backend):
                splits = _split_placements(spec, hw, backend, kv)
                chosen = _choose(splits, wanted)
                if chosen is not None:
                    break
            if chosen is None and splits:
                asked = reasons.overrides(backend) or "the automatic choice"
                raise PlanError(f"{asked} cannot be served here: {reasons.split_refusal(spec, splits, backend)}")
        if chosen is not None:
            return _local_plan(chosen, skipped, hw, backend, llama_server, embedded_model, vllm_cmd, headers)
        skipped.append((spec, options))
    raise PlanError(reasons.no_fit_message(skipped, backend))


def alternatives(hw: Hardware, backend: BackendSettings, chosen: Plan, **found: Any) -> list[Plan]:
    """Larger mixture-of-experts models this machine can run with experts in
    RAM, for ``doctor`` to offer next to an automatic pick they outrank: the
    automatic choice never leaves weights in RAM by itself, since that trades
    decode speed for capability, a trade the user makes."""
    if backend.model_size != "auto" or backend.model_path is not None or backend.kind not in ("auto", "llamacpp"):
        return []
    if not hw.gpus or chosen.backend == "remote":
        return []
    rank = RANK.index(chosen.model_size) if chosen.model_size in RANK else len(RANK)
    out = []
    for size in RANK[:rank]:
        if not MODELS[size].is_moe:
            continue
        try:
            other = plan(hw, backend.model_copy(update={"model_size": size}), **found)
        except PlanError:
            continue
        if other.cpu_moe_layers:
            out.append(other)
    return out


def is_model_dir(path: Path) -> bool:
    """A model path that is not a ``.gguf`` file is a Hugging Face model directory
    for vLLM; deciding by name keeps the planner off the disk."""
    return path.suffix.lower() != ".gguf"


def plan_summary(plan: Plan) -> dict[str, Any]:
    """The ``doctor --json`` shape: every field, JSON-ready."""
    return plan.model_dump(mode="json")


def _refuse_contradictions(hw: Hardware, backend: BackendSettings) -> None:
    """Settings that cannot be combined are refused before any arithmetic."""
    tp = backend.tensor_parallel_size
    if backend.kind == "vllm" and not hw.gpus:
        raise PlanError("backend.kind = 'vllm' needs a GPU and none is usable on this machine")
    if backend.kind == "vllm" and backend.gpu_layers is not None:
        raise PlanError(
            "backend.gpu_layers splits layers between GPU and CPU, which only llama-server "
            "does; vLLM keeps every layer on the GPUs"
        )
    if backend.kind == "vllm" and backend.cpu_moe_layers:
        raise PlanError("backend.cpu_moe_layers keeps experts in RAM, which only llama-server does; vLLM keeps them on the GPUs")
    if backend.kind == "vllm" and backend.kv_cache_type in QUANTIZED_KV:
        raise PlanError(f"backend.kv_cache_type = {backend.kv_cache_type!r} is a llama-server cache type; vLLM does not take it")
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
    if pp is not None and pp > 1:
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


def _offloadable(spec: ModelSpec) -> bool:
    """Expert offload needs to know how large the experts are and how many are read per token."""
    return bool(spec.expert_count and spec.experts_used and spec.expert_share)


def _refuse_expert_offload(spec: ModelSpec, backend: BackendSettings) -> None:
    n = backend.cpu_moe_layers
    if not n:
        return
    if spec.custom and spec.expert_share and not _offloadable(spec):
        raise PlanError(_unknown_experts(spec, f"backend.cpu_moe_layers = {n}"))
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


def _unknown_experts(spec: ModelSpec, why: str) -> str:
    moved = round((spec.expert_share or 0) * spec.quants[0].weight_bytes)
    missing = [k for k, v in (("expert_count", spec.expert_count), ("expert_used_count", spec.experts_used)) if not v]
    return (
        f"{why}: {spec.repo} holds {mib(moved)} of expert tensors but its header has no "
        f"{' or '.join(missing)}, so the share of them read per token (and the speed with some in RAM) "
        "cannot be computed; set backend.gpu_layers for a plain layer split instead"
    )


def _refuse_unknown_experts(spec: ModelSpec, options: list[Placement], backend: BackendSettings) -> None:
    if spec.custom and spec.expert_share and not _offloadable(spec):
        best = reasons.closest(options)
        floor = targets(best, backend.context_length)[0]
        raise PlanError(_unknown_experts(spec, f"the GGUF does not fit the GPU whole ({best.explain(floor)})"))


def _specs(hw: Hardware, backend: BackendSettings, headers: dict[str, GgufInfo]) -> list[ModelSpec]:
    """Embedded is the CPU default (it stays interactive there) and the GPU
    fallback when no Ornith model fits with enough context.  A GGUF whose name
    does not say its size is planned from its own header."""
    if backend.kind == "embedded" or backend.model_size == "embedded":
        return [embedded_for(backend.embedded_model)]
    if backend.model_size != "auto":
        return [MODELS[backend.model_size]]
    path = backend.model_path
    if path is not None:
        inferred = _size_from_name(path.name)
        if inferred is not None:
            return [MODELS[inferred]]
        header = headers.get(str(path))
        if header is not None and not is_model_dir(path):
            return [catalog.from_gguf(header)]
        why = (
            "it is a model directory, not a GGUF whose header could say"
            if is_model_dir(path)
            else "its GGUF header was not read"
        )
        raise PlanError(
            f"backend.model_path = {str(path)!r}: its name does not say which Ornith size it is "
            f"({', '.join(RANK)}) and {why}; set backend.model_size"
        )
    if not hw.gpus:
        return [embedded_for(backend.embedded_model)]
    return [*(MODELS[size] for size in RANK), embedded_for(backend.embedded_model)]


def _size_from_name(name: str) -> str | None:
    return next((s for s in RANK if re.search(rf"(?<![0-9]){s}(?![0-9])", name, re.I)), None)


def _quants(spec: ModelSpec, backend: BackendSettings, on_cpu: bool) -> list[Quant]:
    """Best quality first on GPUs; smallest first on the CPU, where decode speed
    is bound by RAM bandwidth."""
    if spec.custom:
        return list(spec.quants)
    wanted = backend.quant
    path = backend.model_path if not is_embedded(spec) else None
    model_dir = path is not None and is_model_dir(path)
    if wanted is None and path is not None:
        fmt = "safetensors" if model_dir else "gguf"
        candidates = [q for q in spec.quants if q.format == fmt]
        wanted = next((q.name for q in candidates if q.name.lower() in path.name.lower()), None)
        if wanted is None and len(candidates) == 1:
            wanted = candidates[0].name
        if wanted is None:
            raise PlanError(
                f"backend.model_path = {str(path)!r}: its name does not say which "
                f"quant it is ({', '.join(q.name for q in candidates)}); set backend.quant"
            )
    quants = [q for q in spec.quants if wanted is None or q.name.lower() == wanted.lower()]
    if backend.kind == "vllm" or model_dir or (backend.pipeline_parallel_size or 1) > 1:
        quants = [q for q in quants if q.format == "safetensors"]
    llama_only = (
        backend.gpu_layers is not None or backend.cpu_moe_layers or backend.kv_cache_type in QUANTIZED_KV
    )
    if backend.kind == "llamacpp" or llama_only or (path is not None and not model_dir):
        quants = [q for q in quants if q.format == "gguf"]
    return quants[::-1] if on_cpu else quants


def _kv_types(quant: Quant, gpus: bool, backend: BackendSettings) -> list[str]:
    """f16 unless asked otherwise; on a GPU, ``auto`` may fall back to a
    quantized cache (see :func:`_with_kv`).  vLLM keeps its own cache type."""
    if quant.format != "gguf":
        return ["f16"]
    if backend.kv_cache_type != "auto":
        return [backend.kv_cache_type]
    return list(AUTO_KV) if gpus else ["f16"]


def _with_kv(
    spec: ModelSpec,
    quant: Quant,
    gpus: tuple[Gpu, ...],
    gpu_layers: int,
    hw: Hardware,
    backend: BackendSettings,
    cpu_moe_layers: int = 0,
) -> Placement:
    """The f16 cache unless it leaves less than the least context that counts;
    then the first quantized type that reaches it (or f16, to be explained)."""
    first = None
    for kv in _kv_types(quant, bool(gpus), backend):
        p = place(spec, quant, gpus, gpu_layers, hw, backend, kv_type=kv, cpu_moe_layers=cpu_moe_layers)
        first = first or p
        if p.max_context >= targets(p, backend.context_length)[0]:
            return p
    assert first is not None
    return first


def _placements(spec: ModelSpec, hw: Hardware, backend: BackendSettings) -> list[Placement]:
    on_cpu = not hw.gpus or backend.gpu_layers == 0
    out: list[Placement] = []
    for quant in _quants(spec, backend, on_cpu):
        if on_cpu:
            if quant.format == "gguf":
                out.append(_with_kv(spec, quant, (), 0, hw, backend))
            continue
        for gpus in _gpu_sets(hw, quant, backend):
            layers = spec.layers + 1
            if backend.gpu_layers is not None:
                layers = min(backend.gpu_layers, layers)
            moe = (backend.cpu_moe_layers or 0) if quant.format == "gguf" else 0
            out.append(_with_kv(spec, quant, gpus, layers, hw, backend, moe))
    return out


def _may_split(spec: ModelSpec, hw: Hardware, backend: BackendSettings) -> bool:
    """Leaving weights in RAM is planned only for a model asked for by name (or
    file), on GPUs, when no setting already says how to split."""
    asked = backend.model_size not in ("auto", "embedded") or (backend.model_path is not None and not is_embedded(spec))
    fixed = backend.gpu_layers is not None or backend.cpu_moe_layers is not None
    return asked and bool(hw.gpus) and not fixed and backend.kind != "vllm" and (backend.pipeline_parallel_size or 1) == 1


def _split_placements(spec: ModelSpec, hw: Hardware, backend: BackendSettings, kv: str) -> list[Placement]:
    """Smallest file first (what stays in RAM bounds decode speed), then the
    fewest layers or experts in RAM: the first that leaves enough context wins.
    A mixture of experts keeps attention and KV on the GPU and moves experts
    (``--n-cpu-moe``); a dense model moves whole layers (``-ngl`` below the count).
    The caller tries an f16 cache over every split before a quantized one."""
    out: list[Placement] = []
    for quant in reversed([q for q in _quants(spec, backend, False) if q.format == "gguf"]):
        for gpus in _gpu_sets(hw, quant, backend):
            if _offloadable(spec):
                for n in range(1, spec.layers + 1):
                    out.append(place(spec, quant, gpus, spec.layers + 1, hw, backend, kv_type=kv, cpu_moe_layers=n))
            else:
                for layers in range(spec.layers, 0, -1):
                    out.append(place(spec, quant, gpus, layers, hw, backend, kv_type=kv))
    return out


def _gpu_sets(hw: Hardware, quant: Quant, backend: BackendSettings) -> list[tuple[Gpu, ...]]:
    counts = _gpu_counts(len(hw.gpus), quant, backend.tensor_parallel_size, backend.pipeline_parallel_size)
    ordered = sorted(hw.gpus, key=lambda g: (-g.free_mib, g.index))
    return [tuple(ordered[:count]) for count in counts]


def _gpu_counts(available: int, quant: Quant, tp: int | None, pp: int | None) -> list[int]:
    """Powers of two, because tensor parallelism needs the head count divisible
    by it; llama-server only ever gets one GPU when TP is pinned to 1.  Over a
    Ray cluster each node's stage uses all the GPUs it has (the largest power
    of two), since the cluster exists because one node was not enough."""
    counts = [c for c in (1, 2, 4, 8, 16, 32, 64) if c <= available]
    if tp is None:
        return counts[-1:] if (pp or 1) > 1 else counts
    if quant.format == "gguf":
        return [1] if tp == 1 else []
    return [tp]


def _choose(options: list[Placement], wanted: int | None) -> Placement | None:
    """The first (best) option with GOOD_CONTEXT; failing that, the one with the
    most context, since context is what an agent runs out of first."""
    fitting = [p for p in options if p.max_context >= targets(p, wanted)[0]]
    good = [p for p in fitting if p.max_context >= targets(p, wanted)[1]]
    if good:
        return good[0]
    return max(fitting, key=lambda p: p.max_context, default=None)


def _context(p: Placement, wanted: int | None) -> int:
    if wanted is not None:
        return wanted
    if not p.gpus:
        return min(CPU_CONTEXT, p.max_context)
    return p.max_context


def _local_plan(
    p: Placement,
    skipped: list[tuple[ModelSpec, list[Placement]]],
    hw: Hardware,
    backend: BackendSettings,
    llama_server: str,
    embedded_model: str | None,
    vllm_cmd: str,
    headers: dict[str, GgufInfo],
) -> Plan:
    context = _context(p, backend.context_length)
    embedded = is_embedded(p.spec)
    served = p.spec.size if embedded else SERVED_NAME
    if p.spec.custom:
        served = Path(p.quant.file or p.spec.repo).stem
    tps, speed_reason = reasons.speed_reason(p)
    env: dict[str, str] = {}
    if p.gpus and p.nodes == 1:  # over Ray, the cluster's raylets hand out the GPUs
        env.update(pin_gpus(p.gpus))
    tools_reason = None
    f16_context = None
    if p.kv_type != "f16":
        f16 = place(p.spec, p.quant, p.gpus, p.gpu_layers, hw, backend, cpu_moe_layers=p.cpu_moe_layers)
        f16_context = f16.max_context
    if p.backend == "vllm":
        tp = len(p.gpus)
        model = str(backend.model_path) if backend.model_path is not None else p.quant.repo
        if backend.model_path is not None:
            env["HF_HUB_OFFLINE"] = "1"
        command = vllm_command(vllm_cmd, model, SERVED_NAME, context, tp, p.utilization, p.nodes)
    else:
        tp = 1
        if embedded:
            model = embedded_model or str(p.quant.file)
        else:
            model = str(backend.model_path or p.quant.file)
        header = headers.get(model)
        tools = header.supports_tools if header is not None else True
        tools_reason = reasons.tools_reason(header, tools)
        command = llama_command(
            llama_server, model, context, p.gpu_layers, backend, served, tools,
            cpu_moe_layers=p.cpu_moe_layers, flash_attn=p.flash_attn, kv_type=p.kv_type,
            draft=draft_for(backend.draft),
        )  # fmt: skip
    why = [
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
        speed_reason,
        *reasons.backend_extras(p, backend, context, embedded_model),
    ]
    if p.spec.licence:
        why.append(f"Model {p.spec.licence}.")
    assumed = list(p.spec.assumed)
    assumed += reasons.headroom_assumptions(p)
    if p.backend == "vllm":
        assumed.append(f"tool-call parser {TOOL_CALL_PARSER}")
    if assumed:
        why.append(f"Assumed, not given by the release: {'; '.join(assumed)}.")
    return Plan(
        backend=p.backend,
        model=model,
        model_size=p.spec.size,
        quant=p.quant.name,
        context_length=context,
        tensor_parallel_size=tp,
        pipeline_parallel_size=p.nodes if p.nodes > 1 else None,
        gpu_layers=p.gpu_layers if p.backend == "llamacpp" else p.spec.layers,
        cpu_moe_layers=p.cpu_moe_layers or None,
        kv_cache_type=p.kv_type if p.backend == "llamacpp" else None,
        gpu_indices=[g.index for g in p.gpus],
        hf_repo=None if embedded or p.spec.custom else p.quant.repo,
        command=command,
        env=env,
        served_name=served,
        expected_tokens_per_second=tps,
        reasons=why,
        assumed=assumed,
    )


def _remote_plan(backend: BackendSettings) -> Plan:
    if not backend.endpoint:
        raise PlanError("backend.kind = 'remote' needs backend.endpoint, the server's base URL")
    model = backend.model or SERVED_NAME
    context = backend.context_length or REMOTE_CONTEXT
    if backend.kind == "remote":
        why = "backend.kind = 'remote'"
    elif backend.kind == "auto":
        why = "backend.endpoint is set"
    else:
        why = f"backend.endpoint is set, which wins over backend.kind = {backend.kind!r}"
    model_source = "comes from backend.model" if backend.model else "is the release's served name (no backend.model)"
    context_source = (
        "comes from backend.context_length"
        if backend.context_length
        else "is an assumed default, since the server's real limit is unknown; set backend.context_length"
    )
    text = [
        f"Remote backend because {why}: requests go to {backend.endpoint} and nothing is started here.",
        f"Model name {model!r} {model_source}.",
        f"Context {context} {context_source}.",
    ]
    local_only = (
        "quant", "gpu_layers", "cpu_moe_layers", "tensor_parallel_size", "pipeline_parallel_size", "model_path",
    )  # fmt: skip
    ignored = [f"backend.{f}" for f in local_only if getattr(backend, f) is not None]
    if ignored:
        text.append(f"Ignored for a remote server, which chooses these itself: {', '.join(ignored)}.")
    ollama = is_ollama_port(backend.endpoint)
    if ollama:
        text.append(ollama_context_reason(f"port {OLLAMA_PORT} is Ollama's", model, context))
    return Plan(
        backend="remote",
        model=model,
        model_size=backend.model_size if backend.model_size in MODELS else None,
        quant=None,
        context_length=context,
        tensor_parallel_size=None,
        gpu_layers=None,
        command=[],
        endpoint=backend.endpoint,
        ollama=ollama,
        served_name=model,
        expected_tokens_per_second=None,
        reasons=text,
    )
