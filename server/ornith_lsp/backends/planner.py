"""From hardware and settings to the exact server command: a pure function.

The planner walks the models best first (``catalog.RANK``) and, within a
model, its files best quality first, and takes the first that fits with
enough context.  A GGUF the catalog does not know is planned from its own
header (:mod:`.gguf`), read by the caller.  "Fits" is arithmetic, in bytes, on memory pools (the GPUs
used, and RAM when layers stay on the CPU)::

    weights + KV bytes per token x context + headroom <= usable memory

and the context is whatever that leaves, rounded down to a multiple of 1024
and capped at the model's maximum.  Every choice is written down in
``Plan.reasons`` with its numbers, so ``doctor`` can show why -- and an
override that cannot fit raises :class:`PlanError` with the same numbers
instead of producing a server that dies at load time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel

from ..settings import BackendSettings
from . import catalog
from .catalog import EMBEDDED, EMBEDDED_TINY, MODELS, RANK, SERVED_NAME, ModelSpec, Quant
from .gguf import GgufInfo
from .hardware import CPU_BANDWIDTH_GBS, Gpu, Hardware, gpu_bandwidth_gbs

MIB = 1 << 20

HEADROOM_MIB = 1536
"""Per GPU, kept free of weights and KV cache: the CUDA context (300-500 MiB),
compute buffers for one micro-batch, and allocator slack.  1.5 GiB is where the
release's own claims hold with the assumed architectures: the 35B Q4_K_M on a
24 GB card gets 14336 tokens (release: 8K-16K) and the 9B Q4_K_M still gets
12288 on an 8 GB card.  3 GiB would push the 9B off 8 GB cards; 1 GiB would
give the 35B 17K on 24 GB, above the release's range."""

CPU_HEADROOM_MIB = 2048
"""RAM left to the OS, the editor and the language server itself."""

VLLM_GPU_MEMORY_UTILIZATION = 0.9
"""vLLM's default share of each card; it refuses to start if less is free, so
the plan lowers it (and says so) on a card that is partly in use."""

MIN_CONTEXT = 8192
"""Below this an agent cannot hold a file and its diagnostics: a model that
fits only with less is treated as not fitting."""

GOOD_CONTEXT = 32768
"""A file of a model is preferred to a smaller file of it only if it still leaves this much."""

CPU_CONTEXT = 8192
"""CPU prompt processing runs at tens of tokens/s for a 9B, so a longer prompt
would take minutes; the plan does not offer more unless asked."""

CONTEXT_STEP = 1024
DECODE_EFFICIENCY = 0.6
"""Share of peak memory bandwidth decode achieves in practice (assumed)."""

TOOL_CALL_PARSER = "qwen3_coder"
REMOTE_CONTEXT = 32768
OLLAMA_PORT = 11434


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


@dataclass(frozen=True)
class _Pool:
    """One memory a placement must fit in: the GPUs it uses, or RAM."""

    label: str
    capacity: int
    capacity_text: str
    reserve: int
    reserve_text: str
    weights: int
    kv_per_token: int

    def max_tokens(self) -> int:
        return max(0, self.capacity - self.reserve - self.weights) // self.kv_per_token

    def need(self, context: int) -> int:
        return self.weights + self.kv_per_token * context + self.reserve

    def explain(self, context: int) -> str:
        need = self.need(context)
        verdict = "<=" if need <= self.capacity else ">"
        return (
            f"{self.label}: {_mib(self.weights)} weights + {context} x "
            f"{self.kv_per_token / 1024:g} KiB = {_mib(self.kv_per_token * context)} KV + "
            f"{self.reserve_text} = {_mib(need)} {verdict} {self.capacity_text}"
        )


@dataclass(frozen=True)
class _Placement:
    """A model file on a set of GPUs (none = CPU) with some layers offloaded."""

    spec: ModelSpec
    quant: Quant
    gpus: tuple[Gpu, ...]
    gpu_layers: int
    pools: tuple[_Pool, ...]
    utilization: float
    nodes: int = 1

    @property
    def backend(self) -> Literal["vllm", "llamacpp"]:
        return "llamacpp" if self.quant.format == "gguf" else "vllm"

    @property
    def max_context(self) -> int:
        tokens = min(pool.max_tokens() for pool in self.pools)
        return min(tokens // CONTEXT_STEP * CONTEXT_STEP, self.spec.max_context)

    @property
    def room(self) -> int:
        return min(pool.capacity - pool.reserve - pool.weights for pool in self.pools)

    def explain(self, context: int) -> str:
        text = "; ".join(pool.explain(context) for pool in self.pools)
        if context > self.spec.max_context:
            text += f"; and the {self.spec.size} handles at most {self.spec.max_context} tokens"
        return f"{self.spec.size} {self.quant.name} -- {text}"


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
    skipped: list[tuple[ModelSpec, list[_Placement]]] = []
    for spec in _specs(hw, backend, headers):
        options = _placements(spec, hw, backend)
        chosen = _choose(options, wanted)
        if chosen is not None:
            return _local_plan(chosen, skipped, hw, backend, llama_server, embedded_model, vllm_cmd, headers)
        skipped.append((spec, options))
    raise PlanError(_no_fit_message(skipped, backend))


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


def _embedded(backend: BackendSettings) -> ModelSpec:
    return EMBEDDED_TINY if backend.embedded_model == "tiny" else EMBEDDED


def _is_embedded(spec: ModelSpec) -> bool:
    return spec is EMBEDDED or spec is EMBEDDED_TINY


def _specs(hw: Hardware, backend: BackendSettings, headers: dict[str, GgufInfo]) -> list[ModelSpec]:
    """Embedded is the CPU default (it stays interactive there) and the GPU
    fallback when no Ornith model fits with enough context.  A GGUF whose name
    does not say its size is planned from its own header."""
    if backend.kind == "embedded" or backend.model_size == "embedded":
        return [_embedded(backend)]
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
        return [_embedded(backend)]
    return [*(MODELS[size] for size in RANK), _embedded(backend)]


def _size_from_name(name: str) -> str | None:
    return next((s for s in RANK if re.search(rf"(?<![0-9]){s}(?![0-9])", name, re.I)), None)


def _quants(spec: ModelSpec, backend: BackendSettings, on_cpu: bool) -> list[Quant]:
    """Best quality first on GPUs; smallest first on the CPU, where decode speed
    is bound by RAM bandwidth."""
    if spec.custom:
        return list(spec.quants)
    wanted = backend.quant
    path = backend.model_path if not _is_embedded(spec) else None
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
    if backend.kind == "llamacpp" or backend.gpu_layers is not None or (path is not None and not model_dir):
        quants = [q for q in quants if q.format == "gguf"]
    return quants[::-1] if on_cpu else quants


def _placements(spec: ModelSpec, hw: Hardware, backend: BackendSettings) -> list[_Placement]:
    on_cpu = not hw.gpus or backend.gpu_layers == 0
    out: list[_Placement] = []
    for quant in _quants(spec, backend, on_cpu):
        if on_cpu:
            if quant.format == "gguf":
                out.append(_place(spec, quant, (), 0, hw, backend))
            continue
        for count in _gpu_counts(len(hw.gpus), quant, backend.tensor_parallel_size, backend.pipeline_parallel_size):
            gpus = tuple(sorted(hw.gpus, key=lambda g: (-g.free_mib, g.index))[:count])
            layers = spec.layers + 1
            if backend.gpu_layers is not None:
                layers = min(backend.gpu_layers, layers)
            out.append(_place(spec, quant, gpus, layers, hw, backend))
    return out


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


def _place(
    spec: ModelSpec,
    quant: Quant,
    gpus: tuple[Gpu, ...],
    gpu_layers: int,
    hw: Hardware,
    backend: BackendSettings,
) -> _Placement:
    """Split weights and KV between GPU and RAM in proportion to the layers on each."""
    on_gpu = gpu_layers / (spec.layers + 1)
    utilization = _vllm_utilization(gpus) if quant.format == "safetensors" else VLLM_GPU_MEMORY_UTILIZATION
    nodes = (backend.pipeline_parallel_size or 1) if quant.format == "safetensors" else 1
    pools = []
    if gpus:
        pools.append(_gpu_pool(spec, quant, gpus, on_gpu, utilization, nodes))
    if on_gpu < 1:
        pools.append(_ram_pool(spec, quant, 1 - on_gpu, hw, backend))
    return _Placement(spec, quant, gpus, gpu_layers, tuple(pools), utilization, nodes)


def _vllm_utilization(gpus: tuple[Gpu, ...]) -> float:
    if not gpus:
        return VLLM_GPU_MEMORY_UTILIZATION
    free_share = min(math.floor(g.free_mib / g.total_mib * 100) / 100 for g in gpus)
    return min(VLLM_GPU_MEMORY_UTILIZATION, free_share)


def _gpu_pool(
    spec: ModelSpec, quant: Quant, gpus: tuple[Gpu, ...], share: float, utilization: float, nodes: int
) -> _Pool:
    """Tensor parallelism and llama-server's layer split both divide the model
    evenly, so the GPU with the least room bounds every GPU's share.  Pipeline
    stages split the layers (weights and KV alike) over ``nodes`` nodes, each
    assumed to have this node's GPUs: the probe sees only the node it runs on."""
    count = len(gpus)
    kv = spec.kv_bytes_per_token
    if quant.format == "gguf":
        free = min(g.free_mib for g in gpus)
        per_gpu, capacity_text = free * MIB, f"{_times(count)}{free} MiB free"
    else:
        total = min(g.total_mib for g in gpus)
        per_gpu = math.floor(utilization * total * MIB)
        capacity_text = f"{_times(count)}{utilization:g} x {total} MiB usable by vLLM"
        kv *= max(1, math.ceil(count / spec.kv_heads))
    label = _gpu_label(gpus)
    if nodes > 1:
        label = f"{nodes} nodes x {label}"
        capacity_text = f"{nodes} nodes x {capacity_text}"
    return _Pool(
        label=label,
        capacity=nodes * count * per_gpu,
        capacity_text=capacity_text,
        reserve=nodes * count * HEADROOM_MIB * MIB,
        reserve_text=f"{_times(nodes * count)}{HEADROOM_MIB} MiB headroom",
        weights=round(quant.weight_bytes * share),
        kv_per_token=math.ceil(kv * share),
    )


def _ram_pool(spec: ModelSpec, quant: Quant, share: float, hw: Hardware, backend: BackendSettings) -> _Pool:
    cache = backend.cache_ram_mib
    return _Pool(
        label="RAM",
        capacity=hw.ram_mib * MIB,
        capacity_text=f"{hw.ram_mib} MiB RAM",
        reserve=(CPU_HEADROOM_MIB + cache) * MIB,
        reserve_text=f"{CPU_HEADROOM_MIB} MiB headroom + {cache} MiB prompt cache",
        weights=round(quant.weight_bytes * share),
        kv_per_token=math.ceil(spec.kv_bytes_per_token * share),
    )


def _targets(p: _Placement, wanted: int | None) -> tuple[int, int]:
    """(least context that counts as fitting, context that makes it preferred)."""
    if wanted is not None:
        return wanted, wanted
    if not p.gpus:
        cpu = min(CPU_CONTEXT, p.spec.max_context)
        return cpu, cpu
    return min(MIN_CONTEXT, p.spec.max_context), min(GOOD_CONTEXT, p.spec.max_context)


def _choose(options: list[_Placement], wanted: int | None) -> _Placement | None:
    """The first (best) option with GOOD_CONTEXT; failing that, the one with the
    most context, since context is what an agent runs out of first."""
    fitting = [p for p in options if p.max_context >= _targets(p, wanted)[0]]
    good = [p for p in fitting if p.max_context >= _targets(p, wanted)[1]]
    if good:
        return good[0]
    return max(fitting, key=lambda p: p.max_context, default=None)


def _context(p: _Placement, wanted: int | None) -> int:
    if wanted is not None:
        return wanted
    if not p.gpus:
        return min(CPU_CONTEXT, p.max_context)
    return p.max_context


def _closest(options: list[_Placement]) -> _Placement:
    return max(options, key=lambda p: (p.max_context, p.room))


def _no_fit_message(tried: list[tuple[ModelSpec, list[_Placement]]], backend: BackendSettings) -> str:
    asked = _overrides(backend) or "the automatic choice"
    attempts = [(spec, options) for spec, options in tried if options]
    if not attempts:
        sizes = ", ".join(spec.size for spec, _ in tried)
        return (
            f"nothing in the catalog matches {asked} (sizes tried: {sizes}); "
            "check backend.quant and backend.kind"
        )
    lines = []
    for spec, options in attempts:
        best = _closest(options)
        floor = _targets(best, backend.context_length)[0]
        lines.append(f"{best.explain(floor)} (at most {best.max_context} tokens fit)")
    return f"{asked} cannot be served here: " + " | ".join(lines)


def _overrides(backend: BackendSettings) -> str:
    fields = (
        "kind", "model_size", "quant", "context_length", "tensor_parallel_size",
        "pipeline_parallel_size", "gpu_layers", "model_path",
    )  # fmt: skip
    defaults = BackendSettings()
    changed = [f for f in fields if getattr(backend, f) != getattr(defaults, f)]
    return ", ".join(f"backend.{f} = {getattr(backend, f)}" for f in changed)


def _local_plan(
    p: _Placement,
    skipped: list[tuple[ModelSpec, list[_Placement]]],
    hw: Hardware,
    backend: BackendSettings,
    llama_server: str,
    embedded_model: str | None,
    vllm_cmd: str,
    headers: dict[str, GgufInfo],
) -> Plan:
    context = _context(p, backend.context_length)
    embedded = _is_embedded(p.spec)
    served = p.spec.size if embedded else SERVED_NAME
    if p.spec.custom:
        served = Path(p.quant.file or p.spec.repo).stem
    tps, speed_reason = _speed(p)
    env: dict[str, str] = {}
    if p.gpus and p.nodes == 1:  # over Ray, the cluster's raylets hand out the GPUs
        env.update(_pin_gpus(p.gpus))
    tools_reason = None
    if p.backend == "vllm":
        tp = len(p.gpus)
        model = str(backend.model_path) if backend.model_path is not None else p.quant.repo
        if backend.model_path is not None:
            env["HF_HUB_OFFLINE"] = "1"
        command = _vllm_command(vllm_cmd, model, context, tp, p.utilization, p.nodes)
    else:
        tp = 1
        if embedded:
            model = embedded_model or str(p.quant.file)
        else:
            model = str(backend.model_path or p.quant.file)
        header = headers.get(model)
        tools = header.supports_tools if header is not None else True
        tools_reason = _tools_reason(header, tools)
        command = _llama_command(llama_server, model, context, p.gpu_layers, backend, served, tools)
    reasons = [
        _hardware_reason(hw),
        *hw.problems,
        _backend_reason(p, backend),
        _model_reason(p, backend, hw),
        *(_skipped_reason(spec, options, backend) for spec, options in skipped if options),
        _quant_reason(p, backend),
        *_size_disagreement(p),
        _context_reason(p, context, backend),
        *_release_comparison(p, context),
        _gpu_reason(p, hw, backend),
        _layers_reason(p),
        *([tools_reason] if tools_reason else []),
        speed_reason,
        *_backend_extras(p, backend, context, embedded_model),
    ]
    assumed = list(p.spec.assumed)
    if p.backend == "vllm":
        assumed.append(f"tool-call parser {TOOL_CALL_PARSER}")
    if assumed:
        reasons.append(f"Assumed, not given by the release: {'; '.join(assumed)}.")
    return Plan(
        backend=p.backend,
        model=model,
        model_size=p.spec.size,
        quant=p.quant.name,
        context_length=context,
        tensor_parallel_size=tp,
        pipeline_parallel_size=p.nodes if p.nodes > 1 else None,
        gpu_layers=p.gpu_layers if p.backend == "llamacpp" else p.spec.layers,
        gpu_indices=[g.index for g in p.gpus],
        hf_repo=None if embedded or p.spec.custom else p.quant.repo,
        command=command,
        env=env,
        served_name=served,
        expected_tokens_per_second=tps,
        reasons=reasons,
        assumed=assumed,
    )


def _pin_gpus(gpus: tuple[Gpu, ...]) -> dict[str, str]:
    """The server sees exactly the GPUs the arithmetic counted: a card left out
    (full, or unreadable) would otherwise get its share of llama-server's layer
    split.  PCI order makes CUDA number the cards as nvidia-smi does."""
    indices = ",".join(str(g.index) for g in sorted(gpus, key=lambda g: g.index))
    return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": indices}


def _llama_command(
    binary: str, model: str, context: int, gpu_layers: int, backend: BackendSettings, alias: str, tools: bool
) -> list[str]:
    argv = [binary, "-m", model, "-c", str(context), "-ngl", str(gpu_layers)]
    if tools:
        argv.append("--jinja")
    argv += ["-np", str(backend.parallel), "--cache-ram", str(backend.cache_ram_mib)]
    if backend.threads is not None:
        argv += ["-t", str(backend.threads)]
    return argv + ["--host", "127.0.0.1", "--port", "{port}", "--alias", alias]


def _vllm_command(binary: str, model: str, context: int, tp: int, utilization: float, nodes: int) -> list[str]:
    argv = [binary, "serve", model, "--served-model-name", SERVED_NAME, "--max-model-len", str(context)]
    argv += ["--enable-auto-tool-choice", "--tool-call-parser", TOOL_CALL_PARSER]
    argv += ["--tensor-parallel-size", str(tp)]
    if nodes > 1:
        argv += ["--pipeline-parallel-size", str(nodes), "--distributed-executor-backend", "ray"]
    if utilization < VLLM_GPU_MEMORY_UTILIZATION:
        argv += ["--gpu-memory-utilization", f"{utilization:.2f}"]
    return argv + ["--host", "127.0.0.1", "--port", "{port}"]


def _tools_reason(header: GgufInfo | None, tools: bool) -> str:
    if header is None:
        return (
            "--jinja: llama-server renders the model's own chat template, which offers tool calls "
            "(assumed for an Ornith file whose header was not read)."
        )
    if tools:
        return "--jinja: the GGUF's chat template renders a tool list, so tool calls are offered."
    if header.chat_template is None:
        return "No --jinja: the GGUF has no chat template, so it cannot render tools; no tool calls are offered."
    return (
        "No --jinja: the GGUF's chat template never mentions tools, so no tool calls are offered "
        "(llama-server builds that enable Jinja by default still render the template as it is)."
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
    reasons = [
        f"Remote backend because {why}: requests go to {backend.endpoint} and nothing is started here.",
        f"Model name {model!r} {model_source}.",
        f"Context {context} {context_source}.",
    ]
    local_only = ("quant", "gpu_layers", "tensor_parallel_size", "pipeline_parallel_size", "model_path")
    ignored = [f"backend.{f}" for f in local_only if getattr(backend, f) is not None]
    if ignored:
        reasons.append(f"Ignored for a remote server, which chooses these itself: {', '.join(ignored)}.")
    ollama = is_ollama_port(backend.endpoint)
    if ollama:
        reasons.append(ollama_context_reason(f"port {OLLAMA_PORT} is Ollama's", model, context))
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
        reasons=reasons,
    )


def is_ollama_port(endpoint: str | None) -> bool:
    try:
        return bool(endpoint) and urlsplit(endpoint).port == OLLAMA_PORT
    except ValueError:
        return False


def ollama_context_reason(how: str, model: str, context: int) -> str:
    """Why and how the context is pinned: Ollama's OpenAI-compatible API ignores
    ``num_ctx``, and a server left at its default (2048-4096 tokens on most
    machines) silently drops the start of a longer prompt."""
    return (
        f"Ollama ({how}): its OpenAI-compatible API ignores num_ctx, so at start a model "
        f"{ollama_model_name(model, context)!r} is created from {model!r} with PARAMETER num_ctx {context} "
        "(POST /api/create, what a Modelfile does; the weights are shared, nothing is downloaded) "
        "and every request names it."
    )


def ollama_model_name(model: str, context: int) -> str:
    """``qwen2.5-coder:7b`` -> ``qwen2.5-coder:7b-ornith-ctx32768``: a tag of the
    same model, so ``ollama list`` shows where it came from."""
    suffix = f"-ornith-ctx{context}"
    if model.endswith(suffix):
        return model
    name, _, tag = model.rpartition(":") if ":" in model.rsplit("/", 1)[-1] else (model, "", "latest")
    return f"{name}:{tag}{suffix}"


def _speed(p: _Placement) -> tuple[float, str]:
    """Decode reads every active weight once per token, so speed is bandwidth /
    bytes per token; tensor parallel GPUs read their shards at the same time,
    llama-server's layer split reads them one GPU after another."""
    active = p.quant.weight_bytes * p.spec.active_params_b / p.spec.params_b
    on_gpu = p.gpu_layers / (p.spec.layers + 1) if p.gpus else 0.0
    seconds = active * (1 - on_gpu) / (CPU_BANDWIDTH_GBS * 1e9)
    sources = []
    parallel = len(p.gpus) if p.backend == "vllm" else 1
    if p.gpus:
        slowest = min(p.gpus, key=lambda g: gpu_bandwidth_gbs(g.name)[0])
        bandwidth, known = gpu_bandwidth_gbs(slowest.name)
        seconds += active * on_gpu / (bandwidth * 1e9 * parallel)
        origin = "published" if known else "assumed for an unknown card"
        sources.append(f"{bandwidth:g} GB/s per GPU ({slowest.name}, {origin})")
    if on_gpu < 1:
        sources.append(f"{CPU_BANDWIDTH_GBS:g} GB/s RAM (assumed)")
    tps = round(DECODE_EFFICIENCY / seconds, 1)
    shards = f" over {parallel} GPUs in parallel" if parallel > 1 else ""
    if p.nodes > 1:
        shards += f", {p.nodes} pipeline stages one after another (network time not counted)"
    return tps, (
        f"About {tps:g} tokens/s: {' and '.join(sources)}, {active / 1e9:.2f} GB of active weights read per "
        f"token{shards}, x {DECODE_EFFICIENCY:g} efficiency -- an estimate, not a measurement."
    )


def _hardware_reason(hw: Hardware) -> str:
    gpus = ", ".join(f"GPU {g.index} {g.name} {g.free_mib}/{g.total_mib} MiB free" for g in hw.gpus)
    return (
        f"Hardware from {hw.source}: {gpus or 'no usable GPU'}; "
        f"{hw.ram_mib} MiB RAM; {hw.cpu_cores} CPU cores."
    )


def _backend_reason(p: _Placement, backend: BackendSettings) -> str:
    asked = f" (backend.kind = {backend.kind!r})" if backend.kind != "auto" else ""
    if p.backend == "llamacpp":
        return f"llama-server{asked}, because the {p.quant.name} file is a GGUF, llama.cpp's own format."
    return (
        f"vLLM{asked}, because {p.quant.name} safetensors are vLLM's format and it shards them by "
        "tensor parallelism; the release requires vLLM >= 0.19.1 (35B) and transformers >= 5.8.1, "
        "which are checked before it starts."
    )


def _model_reason(p: _Placement, backend: BackendSettings, hw: Hardware) -> str:
    if backend.kind == "embedded":
        return f"The {p.spec.size} because backend.kind = 'embedded' asked for it."
    if backend.model_size != "auto":
        return f"The {p.spec.size} because backend.model_size = {backend.model_size!r} asked for it."
    if p.spec.custom:
        s = p.spec
        return (
            f"A custom GGUF: backend.model_path {backend.model_path.name!r} does not name an Ornith size, "
            f"so its own header sizes it: {s.layers} layers, {s.kv_heads} KV heads x {s.head_dim}, "
            f"trained context {s.max_context}."
        )
    if backend.model_path is not None:
        return f"The {p.spec.size} because backend.model_path {backend.model_path.name!r} names it."
    if _is_embedded(p.spec) and not hw.gpus:
        return (
            f"The embedded {p.spec.size}, the default with no GPU because it stays interactive "
            'on a CPU; set backend.model_size = "9B" to run Ornith on the CPU if RAM allows.'
        )
    if _is_embedded(p.spec):
        return f"The embedded {p.spec.size}, because no Ornith model fits these GPUs with {MIN_CONTEXT} tokens."
    return (
        f"The {p.spec.size}: the first of {' > '.join(RANK)} that fits with at least {MIN_CONTEXT} "
        "tokens; the release prefers the 35B wherever it fits (about 3B active parameters decode "
        "faster than the 9B, and it is more accurate), and offers the 31B for more VRAM than the 9B needs."
    )


def _skipped_reason(spec: ModelSpec, options: list[_Placement], backend: BackendSettings) -> str:
    best = _closest(options)
    floor = _targets(best, backend.context_length)[0]
    return f"Not the {spec.size}: its closest option leaves {best.max_context} tokens ({best.explain(floor)})."


def _quant_reason(p: _Placement, backend: BackendSettings) -> str:
    name = f"{p.quant.name} ({p.quant.size_gb:g} GB)"
    if p.spec.custom:
        return f"{p.quant.name} (general.file_type in the header), {p.quant.size_gb:.3g} GB: the file's size on disk."
    if backend.quant is not None:
        return f"{name} because backend.quant asked for it."
    if backend.model_path is not None and not _is_embedded(p.spec):
        return f"{name} because backend.model_path's name says so (or it is the only {p.quant.format} form); the arithmetic uses the catalog's size for it."
    if len(p.spec.quants) == 1:
        return f"{name}: the only file of the {p.spec.size}."
    if not p.gpus:
        return f"{name}: the smallest file of the {p.spec.size}, since CPU decode speed is bound by RAM bandwidth."
    if p.max_context >= min(GOOD_CONTEXT, p.spec.max_context):
        return f"{name}: the best-quality file of the {p.spec.size} that still leaves >= {GOOD_CONTEXT} tokens."
    return f"{name}: no file of the {p.spec.size} leaves {GOOD_CONTEXT} tokens here, so the one leaving the most."


def _size_disagreement(p: _Placement) -> list[str]:
    """A release figure more than 5% off params x bits is reported, never corrected."""
    q = p.quant
    if p.spec.custom:
        return []
    if q.size_source != "release":
        return [f"The {p.spec.size} {q.name} size {q.size_gb:g} GB is {q.size_source}, not a release figure."]
    computed = p.spec.computed_size_gb(q)
    if abs(computed - q.size_gb) > 0.05 * q.size_gb:
        return [
            f"The release gives the {p.spec.size} {q.name} as {q.size_gb:g} GB but "
            f"{p.spec.params_b:g}B x {catalog.BITS_PER_WEIGHT[q.name]:g} bits / 8 = {computed:g} GB; "
            "the plan uses the release figure."
        ]
    return []


def _context_reason(p: _Placement, context: int, backend: BackendSettings) -> str:
    if backend.context_length is not None:
        return f"Context {context} because backend.context_length asked for it, and it fits: {p.explain(context)}."
    tight = min(p.pools, key=lambda pool: pool.max_tokens())
    raw = tight.max_tokens()
    if not p.gpus:
        return f"Context {context}, the CPU default since CPU prompt processing is slow; it fits: {p.explain(context)}."
    capped = f", capped at the {p.spec.size}'s maximum {p.spec.max_context}" if raw >= p.spec.max_context else ""
    kv = p.spec.kv_bytes_per_token
    share = "" if tight.kv_per_token == kv else f"; {tight.label} holds {tight.kv_per_token / 1024:.4g} KiB of it"
    return (
        f"Context {context}: ({tight.capacity_text} - {_mib(tight.weights)} weights - {tight.reserve_text}) / "
        f"{tight.kv_per_token / 1024:.4g} KiB per token = {raw} tokens, rounded down to a multiple of "
        f"{CONTEXT_STEP}{capped}; KV per token is 2 x {p.spec.layers} layers x {p.spec.kv_heads} KV heads x "
        f"{p.spec.head_dim} x 2 bytes = {kv / 1024:g} KiB{share}."
    )


_RELEASE_CLAIMS = {("35B", "Q4_K_M"): (24, 8192, 16384)}
"""The release's one quantified claim: 35B Q4_K_M on a 24 GB card at 8K-16K."""


def _release_comparison(p: _Placement, context: int) -> list[str]:
    """Compared only on the card the claim is about, fully offloaded."""
    claim = _RELEASE_CLAIMS.get((p.spec.size, p.quant.name))
    if claim is None or len(p.gpus) != 1 or p.gpu_layers <= p.spec.layers:
        return []
    if abs(p.gpus[0].total_mib - claim[0] * 1024) > 1024:
        return []
    card_gb, low, high = claim
    agrees = "agrees" if low <= context <= high else "DISAGREES (stated, not adjusted)"
    return [
        f"Release: {p.spec.size} {p.quant.name} on a {card_gb} GB card at {low}-{high} tokens; "
        f"the arithmetic here gives {context} with {p.gpus[0].free_mib} MiB free, which {agrees}."
    ]


def _gpu_reason(p: _Placement, hw: Hardware, backend: BackendSettings) -> str:
    if not p.gpus:
        return "Tensor parallel size 1: no GPU is used."
    indices = _pin_gpus(p.gpus)["CUDA_VISIBLE_DEVICES"]
    pinned = (
        f" It is started with CUDA_VISIBLE_DEVICES={indices}, so the other GPUs stay free."
        if len(p.gpus) < len(hw.gpus)
        else f" It is started with CUDA_VISIBLE_DEVICES={indices}, so it sees exactly these GPUs."
    )
    if p.backend == "vllm" and p.nodes > 1:
        return (
            f"Tensor parallel size {len(p.gpus)} within each node and pipeline parallel size {p.nodes} "
            f"across nodes (backend.pipeline_parallel_size), over a Ray cluster (--distributed-executor-backend "
            f"ray): start `ray start --head` here and `ray start --address=HEAD:6379` on the other "
            f"{p.nodes - 1} node(s) first; each is assumed to have this node's GPUs, and Ray assigns them."
        )
    if p.backend == "vllm":
        why = (
            "backend.tensor_parallel_size asked for it"
            if backend.tensor_parallel_size is not None
            else f"the fewest GPUs (a power of two, as tensor parallelism needs) where the {p.quant.name} fits best"
        )
        return f"Tensor parallel size {len(p.gpus)} over GPU(s) {indices}: {why}.{pinned}"
    if len(p.gpus) > 1:
        return (
            f"Tensor parallel size 1: llama-server splits layers across GPUs {indices} (one after "
            f"another, not tensor parallel).{pinned}"
        )
    return f"Tensor parallel size 1: GPU {indices} holds the whole model.{pinned}"


def _layers_reason(p: _Placement) -> str:
    layers = p.spec.layers
    if p.backend == "vllm":
        return f"All {layers} layers on the GPUs: vLLM has no CPU/GPU layer split."
    if p.gpu_layers == 0:
        return f"-ngl 0: all {layers} layers run on the CPU."
    if p.gpu_layers >= layers + 1:
        return f"-ngl {p.gpu_layers}: all {layers} layers and the output layer on the GPU."
    return (
        f"-ngl {p.gpu_layers} of {layers + 1} (backend.gpu_layers): about "
        f"{p.gpu_layers / (layers + 1):.0%} of the weights and KV cache on the GPU, the rest in RAM."
    )


def _backend_extras(
    p: _Placement, backend: BackendSettings, context: int, embedded_model: str | None
) -> list[str]:
    extras = []
    if p.backend == "vllm" and p.utilization < VLLM_GPU_MEMORY_UTILIZATION:
        extras.append(
            f"--gpu-memory-utilization {p.utilization:.2f}: less than vLLM's default "
            f"{VLLM_GPU_MEMORY_UTILIZATION} of a card is free, and vLLM refuses to start otherwise."
        )
    if p.backend == "llamacpp" and backend.parallel > 1:
        slots = backend.parallel
        extras.append(f"-np {slots} divides the {context} tokens into {slots} slots of {context // slots}.")
    if _is_embedded(p.spec) and embedded_model is None:
        extras.append(f"{p.quant.file} is a placeholder: the caller passes the path find_embedded_model() returns.")
    if _is_embedded(p.spec) and backend.model_path is not None:
        if embedded_model == str(backend.model_path):
            extras.append(f"backend.model_path {backend.model_path.name!r} is served in place of the embedded model's file.")
        else:
            extras.append("backend.model_path is not used for the embedded model.")
    pull = f"ornith-lsp pull --model-size {p.spec.size} --quant {p.quant.name}"
    if not _is_embedded(p.spec) and p.backend == "llamacpp" and backend.model_path is None:
        extras.append(
            f"{p.quant.file} comes from {p.quant.repo} and is never downloaded at start: fetch it with "
            f"`{pull}` and pass its path as backend.model_path."
        )
    if p.backend == "vllm" and backend.model_path is None:
        extras.append(
            f"vLLM fetches {p.quant.repo} into the Hugging Face cache on its first start; to fetch it "
            f"beforehand, run `{pull}` and set backend.model_path to the directory it prints."
        )
    if p.backend == "vllm" and backend.model_path is not None:
        extras.append(
            f"The model directory {str(backend.model_path)!r} is served as it is, with HF_HUB_OFFLINE=1 "
            "so vLLM never reaches the Hugging Face Hub."
        )
    return extras


def _gpu_label(gpus: tuple[Gpu, ...]) -> str:
    return ("GPU " if len(gpus) == 1 else "GPUs ") + ",".join(str(g.index) for g in gpus)


def _times(count: int) -> str:
    return f"{count} x " if count > 1 else ""


def _mib(n: int) -> str:
    return f"{n / MIB:.0f} MiB"
