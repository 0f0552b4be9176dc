"""From hardware and settings to the exact server command: a pure function.

The planner walks the models best first (``catalog.RANK``) and, within a
model, its files best quality first, and takes the first that fits with
enough context.  A GGUF the catalog does not know is planned from its own
header (:mod:`.gguf`), read by the caller.  This module is only that search
over the options (files, GPU counts, KV cache types, and -- for a model asked
for by name that no GPU here can hold whole -- layers or experts left in
RAM).  Whether something fits is the arithmetic of :mod:`.placement`; what
cannot be asked is refused by :mod:`.refusals`; the chosen placement becomes
a plan with its argv and reasons in :mod:`.local` (a remote endpoint's in
:mod:`.remote`), and :mod:`.reasons` writes every choice down with its
numbers, so ``doctor`` can show why.  An override that cannot fit raises
:class:`~.plans.PlanError` with the same numbers instead of producing a
server that dies at load time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..settings import BackendSettings
from . import catalog, reasons
from .catalog import MODELS, RANK, ModelSpec, Quant, embedded_for, is_embedded
from .gguf import GgufInfo
from .hardware import Gpu, Hardware
from .llamacpp import QUANTIZED_KV
from .local import Found, Skipped, local_plan
from .placement import Placement, place, targets
from .plans import Plan, PlanError, is_model_dir
from .refusals import refuse_contradictions, refuse_expert_offload, refuse_unknown_experts
from .remote import remote_plan

AUTO_KV = ("f16", "q8_0")
"""What ``kv_cache_type = "auto"`` tries, in order, on a GPU.  q8_0 costs little
quality and is taken only when f16 leaves less than the least context that
counts; q4_0 costs more and is used only when asked for."""


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
        return remote_plan(backend)
    refuse_contradictions(hw, backend)
    found = Found(llama_server, embedded_model, vllm_cmd, dict(gguf_headers or {}))
    skipped: Skipped = []
    specs = _specs(hw, backend, found.headers)
    if backend.cpu_moe_layers and len(specs) > 1:  # the automatic choice, among models with experts
        specs = [spec for spec in specs if spec.offloadable]
    for spec in specs:
        refuse_expert_offload(spec, backend)
        options = _placements(spec, hw, backend)
        chosen = _choose(options, backend.context_length)
        if chosen is None and _may_split(spec, hw, backend):
            refuse_unknown_experts(spec, options, backend)
            chosen = _choose_split(spec, hw, backend)
        if chosen is not None:
            return local_plan(chosen, skipped, hw, backend, found)
        skipped.append((spec, options))
    raise PlanError(reasons.no_fit_message(skipped, backend))


def _choose_split(spec: ModelSpec, hw: Hardware, backend: BackendSettings) -> Placement | None:
    """The first split that leaves enough context, an f16 cache over every
    split before a quantized one; when none does, refused with the closest."""
    splits: list[Placement] = []
    for kv in _kv_types(spec.quants[-1], True, backend):
        splits = _split_placements(spec, hw, backend, kv)
        chosen = _choose(splits, backend.context_length)
        if chosen is not None:
            return chosen
    if splits:
        asked = reasons.overrides(backend) or "the automatic choice"
        raise PlanError(f"{asked} cannot be served here: {reasons.split_refusal(spec, splits, backend)}")
    return None


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


def _specs(hw: Hardware, backend: BackendSettings, headers: Mapping[str, GgufInfo]) -> list[ModelSpec]:
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
    path = backend.model_path if not is_embedded(spec) else None
    model_dir = path is not None and is_model_dir(path)
    wanted = backend.quant
    if wanted is None and path is not None:
        wanted = _quant_from_path(spec, path, model_dir)
    quants = [q for q in spec.quants if wanted is None or q.name.lower() == wanted.lower()]
    if backend.kind == "vllm" or model_dir or (backend.pipeline_parallel_size or 1) > 1:
        quants = [q for q in quants if q.format == "safetensors"]
    llama_only = (
        backend.gpu_layers is not None or backend.cpu_moe_layers or backend.kv_cache_type in QUANTIZED_KV
    )
    if backend.kind == "llamacpp" or llama_only or (path is not None and not model_dir):
        quants = [q for q in quants if q.format == "gguf"]
    return quants[::-1] if on_cpu else quants


def _quant_from_path(spec: ModelSpec, path: Path, model_dir: bool) -> str:
    """The quant a ``backend.model_path`` names, or the only one of its format."""
    candidates = [q for q in spec.quants if q.format == ("safetensors" if model_dir else "gguf")]
    wanted = next((q.name for q in candidates if q.name.lower() in path.name.lower()), None)
    if wanted is None and len(candidates) == 1:
        wanted = candidates[0].name
    if wanted is None:
        raise PlanError(
            f"backend.model_path = {str(path)!r}: its name does not say which "
            f"quant it is ({', '.join(q.name for q in candidates)}); set backend.quant"
        )
    return wanted


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
            if spec.offloadable:
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
