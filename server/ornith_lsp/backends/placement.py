"""Placement arithmetic: the bytes a model file, its KV cache and the server's
working memory take on each memory pool, and the decode speed that follows.

"Fits" is arithmetic, in bytes, per pool (the GPUs used, and RAM when layers
or experts stay on the CPU)::

    weights + (KV + attention mask) per token x context + headroom <= usable memory

For llama-server the headroom on a GPU is not one constant but follows
llama.cpp's own accounting: its compute buffer (a part fixed by the model's
width and the micro-batch, plus an f16 attention mask that grows with the
context under flash attention) and the 1024 MiB margin its ``--fit`` leaves
free for the CUDA context, cuBLAS and the driver.  vLLM sizes its own
activations inside ``--gpu-memory-utilization``, so its pools keep the fixed
headroom they always had.  Everything here is a pure function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ..settings import BackendSettings
from .catalog import MAX_CONTEXT, ModelSpec, Quant
from .hardware import CPU_BANDWIDTH_GBS, Gpu, Hardware, gpu_bandwidth_gbs
from .vllm import VLLM_GPU_MEMORY_UTILIZATION

MIB = 1 << 20

FIT_MARGIN_MIB = 1024
"""Per GPU, left free beyond weights, KV cache and compute buffer: llama.cpp's
own default ``--fit-target`` (1024 MiB per device), the margin its ``--fit``
keeps for the CUDA context, cuBLAS/pool allocations and the driver."""

UBATCH = 512
"""llama-server's default micro-batch (``-ub``); the compute buffer is sized for it."""

LOGIT_BYTES = 4
"""The fixed part of the compute buffer is bounded by the f32 logits of a whole
micro-batch, vocabulary x 512 x 4 bytes.  Measured on the shipped llama-server
(SmolLM2-135M, CPU, ``-ub 512 -fa on``, ``-lv 4``): 22.64 MiB at ``-c 8192`` and
30.64 MiB at ``-c 16384``, so 14.64 MiB fixed, well under this bound's 96 MiB
for its 49152-token vocabulary; the bound is used because the fixed part grows
with the model's width and the catalog does not know every model's FFN size."""

MASK_BYTES = 2
"""The f16 attention mask under flash attention: context x micro-batch x 2 bytes,
1 KiB per token -- exactly the 8.00 MiB per 8192 tokens measured above.  Without
flash attention the same runs measured 167.51 and 327.51 MiB (20 KiB per token:
the f32 scores of every head), which is why GPU plans pass ``-fa on``."""

DEFAULT_VOCAB = 152064
"""Used when a model's vocabulary is not known (Qwen2.5's padded size; larger than most)."""

VLLM_HEADROOM_MIB = 1536
"""Per GPU for vLLM, kept free of weights and KV cache within its memory share
(activations it profiles at start, CUDA graphs, allocator slack)."""

CPU_HEADROOM_MIB = 2048
"""RAM left to the OS, the editor and the language server itself."""

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


@dataclass(frozen=True)
class Pool:
    """One memory a placement must fit in: the GPUs it uses, or RAM."""

    label: str
    capacity: int
    capacity_text: str
    reserve: int
    reserve_text: str
    weights: int
    kv_per_token: int
    weights_text: str = ""
    mask_per_token: int = 0
    """Compute-buffer bytes that grow with the context (the attention mask)."""

    @property
    def per_token(self) -> int:
        return self.kv_per_token + self.mask_per_token

    def max_tokens(self) -> int:
        room = self.capacity - self.reserve - self.weights
        if room < 0:
            return 0
        if self.per_token == 0:  # nothing here grows with the context
            return MAX_CONTEXT
        return room // self.per_token

    def need(self, context: int) -> int:
        return self.weights + self.per_token * context + self.reserve

    def explain(self, context: int) -> str:
        need = self.need(context)
        verdict = "<=" if need <= self.capacity else ">"
        parts = [self.weights_text or f"{mib(self.weights)} weights"]
        if self.kv_per_token:
            parts.append(
                f"{context} x {self.kv_per_token / 1024:g} KiB = {mib(self.kv_per_token * context)} KV"
            )
        parts.append(self.reserve_text)
        if self.mask_per_token:
            parts.append(
                f"{context} x {self.mask_per_token / 1024:g} KiB = {mib(self.mask_per_token * context)} attention mask"
            )
        return f"{self.label}: {' + '.join(parts)} = {mib(need)} {verdict} {self.capacity_text}"


@dataclass(frozen=True)
class Placement:
    """A model file on a set of GPUs (none = CPU), with some layers, or some
    layers' experts, left in RAM, and the KV cache stored as ``kv_type``."""

    spec: ModelSpec
    quant: Quant
    gpus: tuple[Gpu, ...]
    gpu_layers: int
    pools: tuple[Pool, ...]
    utilization: float
    nodes: int = 1
    kv_type: str = "f16"
    cpu_moe_layers: int = 0

    @property
    def backend(self) -> Literal["vllm", "llamacpp"]:
        return "llamacpp" if self.quant.format == "gguf" else "vllm"

    @property
    def flash_attn(self) -> bool:
        """llama-server on a GPU always runs flash attention: the compute buffer
        arithmetic assumes it, and a quantized V cache requires it."""
        return self.backend == "llamacpp" and (bool(self.gpus) or self.kv_type != "f16")

    @property
    def split(self) -> bool:
        """Some weights stay in RAM although GPUs are used."""
        return bool(self.gpus) and (self.cpu_moe_layers > 0 or self.gpu_layers <= self.spec.layers)

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
        kv = f", {self.kv_type} KV cache" if self.kv_type != "f16" else ""
        return f"{self.spec.size} {self.quant.name}{kv} -- {text}"


def mib(n: int) -> str:
    return f"{n / MIB:.0f} MiB"


def times(count: int) -> str:
    return f"{count} x " if count > 1 else ""


def gpu_label(gpus: tuple[Gpu, ...]) -> str:
    return ("GPU " if len(gpus) == 1 else "GPUs ") + ",".join(str(g.index) for g in gpus)


def targets(p: Placement, wanted: int | None) -> tuple[int, int]:
    """(least context that counts as fitting, context that makes it preferred)."""
    if wanted is not None:
        return wanted, wanted
    if not p.gpus:
        cpu = min(CPU_CONTEXT, p.spec.max_context)
        return cpu, cpu
    return min(MIN_CONTEXT, p.spec.max_context), min(GOOD_CONTEXT, p.spec.max_context)


def vllm_utilization(gpus: tuple[Gpu, ...]) -> float:
    if not gpus:
        return VLLM_GPU_MEMORY_UTILIZATION
    free_share = min(math.floor(g.free_mib / g.total_mib * 100) / 100 for g in gpus)
    return min(VLLM_GPU_MEMORY_UTILIZATION, free_share)


def expert_bytes(spec: ModelSpec, quant: Quant) -> int:
    """Bytes of one layer's routed experts in this file."""
    return round(quant.weight_bytes * (spec.expert_share or 0) / spec.layers)


def compute_buffer(spec: ModelSpec) -> int:
    """llama.cpp's GPU compute buffer under flash attention, less its mask."""
    return (spec.vocab_size or DEFAULT_VOCAB) * UBATCH * LOGIT_BYTES


def place(
    spec: ModelSpec,
    quant: Quant,
    gpus: tuple[Gpu, ...],
    gpu_layers: int,
    hw: Hardware,
    backend: BackendSettings,
    *,
    kv_type: str = "f16",
    cpu_moe_layers: int = 0,
) -> Placement:
    """Split weights and KV between GPU and RAM: in proportion to the layers on
    each, or, with ``cpu_moe_layers``, every layer on the GPU but the routed
    experts of the first ``cpu_moe_layers`` layers in RAM (KV stays on the GPU)."""
    on_gpu = gpu_layers / (spec.layers + 1)
    utilization = vllm_utilization(gpus) if quant.format == "safetensors" else VLLM_GPU_MEMORY_UTILIZATION
    nodes = (backend.pipeline_parallel_size or 1) if quant.format == "safetensors" else 1
    moved = cpu_moe_layers * expert_bytes(spec, quant)
    pools = []
    if gpus:
        pools.append(gpu_pool(spec, quant, gpus, on_gpu, utilization, nodes, kv_type, cpu_moe_layers))
    if on_gpu < 1:
        pools.append(ram_pool(spec, quant, 1 - on_gpu, hw, backend, kv_type))
    elif cpu_moe_layers:
        pools.append(expert_ram_pool(spec, quant, cpu_moe_layers, moved, hw, backend))
    return Placement(spec, quant, gpus, gpu_layers, tuple(pools), utilization, nodes, kv_type, cpu_moe_layers)


def gpu_pool(
    spec: ModelSpec,
    quant: Quant,
    gpus: tuple[Gpu, ...],
    share: float,
    utilization: float,
    nodes: int,
    kv_type: str = "f16",
    cpu_moe_layers: int = 0,
) -> Pool:
    """Tensor parallelism and llama-server's layer split both divide the model
    evenly, so the GPU with the least room bounds every GPU's share.  Pipeline
    stages split the layers (weights and KV alike) over ``nodes`` nodes, each
    assumed to have this node's GPUs: the probe sees only the node it runs on.
    Each GPU of a layer split computes whole layers, so each needs the whole
    compute buffer; with experts in RAM, prompt processing also copies one
    layer's experts at a time to the GPU, which the compute buffer holds."""
    count = len(gpus)
    kv = spec.kv_bytes(kv_type)
    weights = round(quant.weight_bytes * share)
    weights_text = ""
    mask = 0
    if quant.format == "gguf":
        free = min(g.free_mib for g in gpus)
        per_gpu, capacity_text = free * MIB, f"{times(count)}{free} MiB free"
        compute = compute_buffer(spec)
        compute_text = f"{mib(compute)} compute buffer ({spec.vocab_size or DEFAULT_VOCAB} x {UBATCH} x {LOGIT_BYTES} B logits)"
        if cpu_moe_layers:
            layer = expert_bytes(spec, quant)
            weights -= cpu_moe_layers * layer
            weights_text = (
                f"{mib(weights)} weights ({spec.layers - cpu_moe_layers} of {spec.layers} layers' experts "
                "and every layer's attention)"
            )
            compute += layer
            compute_text += f" + {mib(layer)} for one layer's experts copied in during prompt processing"
        reserve = count * (FIT_MARGIN_MIB * MIB + compute)
        reserve_text = f"{times(count)}({FIT_MARGIN_MIB} MiB margin + {compute_text})"
        mask = count * UBATCH * MASK_BYTES
    else:
        total = min(g.total_mib for g in gpus)
        per_gpu = math.floor(utilization * total * MIB)
        capacity_text = f"{times(count)}{utilization:g} x {total} MiB usable by vLLM"
        kv *= max(1, math.ceil(count / spec.kv_heads))
        reserve = count * VLLM_HEADROOM_MIB * MIB
        reserve_text = f"{times(count)}{VLLM_HEADROOM_MIB} MiB headroom"
    label = gpu_label(gpus)
    if nodes > 1:
        label = f"{nodes} nodes x {label}"
        capacity_text = f"{nodes} nodes x {capacity_text}"
        reserve *= nodes
        reserve_text = f"{nodes} nodes x {reserve_text}"
    return Pool(
        label=label,
        capacity=nodes * count * per_gpu,
        capacity_text=capacity_text,
        reserve=reserve,
        reserve_text=reserve_text,
        weights=weights,
        weights_text=weights_text,
        kv_per_token=math.ceil(kv * share),
        mask_per_token=mask,
    )


def _ram_reserve(backend: BackendSettings) -> tuple[int, str]:
    cache = backend.cache_ram_mib
    return (CPU_HEADROOM_MIB + cache) * MIB, f"{CPU_HEADROOM_MIB} MiB headroom + {cache} MiB prompt cache"


def ram_pool(
    spec: ModelSpec, quant: Quant, share: float, hw: Hardware, backend: BackendSettings, kv_type: str = "f16"
) -> Pool:
    reserve, reserve_text = _ram_reserve(backend)
    return Pool(
        label="RAM",
        capacity=hw.ram_mib * MIB,
        capacity_text=f"{hw.ram_mib} MiB RAM",
        reserve=reserve,
        reserve_text=reserve_text,
        weights=round(quant.weight_bytes * share),
        kv_per_token=math.ceil(spec.kv_bytes(kv_type) * share),
    )


def expert_ram_pool(
    spec: ModelSpec, quant: Quant, layers: int, moved: int, hw: Hardware, backend: BackendSettings
) -> Pool:
    """The experts kept in RAM are read from the page cache of the mapped file:
    RAM must hold them next to what the system and the editor need."""
    reserve, reserve_text = _ram_reserve(backend)
    return Pool(
        label="RAM",
        capacity=hw.ram_mib * MIB,
        capacity_text=f"{hw.ram_mib} MiB RAM",
        reserve=reserve,
        reserve_text=reserve_text,
        weights=moved,
        weights_text=f"{layers} x {mib(expert_bytes(spec, quant))} = {mib(moved)} experts",
        kv_per_token=0,
    )


def active_bytes(p: Placement) -> tuple[float, float]:
    """(bytes read per token from GPU memory, from RAM).

    Decode reads every active weight once per token.  For a mixture of experts
    that is the dense part (attention, embeddings, router) in full plus
    ``experts_used / expert_count`` of each layer's experts, wherever they are.
    """
    weights = p.quant.weight_bytes
    if p.cpu_moe_layers and p.spec.is_moe:
        layer = expert_bytes(p.spec, p.quant)
        count = p.spec.expert_count or 1
        read = (p.spec.experts_used or count) / count  # unknown: every expert read, as the catalog assumes
        dense = weights - layer * p.spec.layers
        return dense + (p.spec.layers - p.cpu_moe_layers) * layer * read, p.cpu_moe_layers * layer * read
    active = weights * p.spec.active_params_b / p.spec.params_b
    on_gpu = p.gpu_layers / (p.spec.layers + 1) if p.gpus else 0.0
    return active * on_gpu, active * (1 - on_gpu)


def speed(p: Placement) -> tuple[float, dict[str, object]]:
    """Tokens/s and the figures behind it.  Tensor parallel GPUs read their
    shards at the same time, llama-server's layer split reads them one GPU
    after another, and RAM and GPU parts of a split run one after the other."""
    gpu_bytes, ram_bytes = active_bytes(p)
    seconds = ram_bytes / (CPU_BANDWIDTH_GBS * 1e9)
    parallel = len(p.gpus) if p.backend == "vllm" else 1
    facts: dict[str, object] = {"gpu_bytes": gpu_bytes, "ram_bytes": ram_bytes, "parallel": parallel}
    if p.gpus:
        slowest = min(p.gpus, key=lambda g: gpu_bandwidth_gbs(g.name)[0])
        bandwidth, known = gpu_bandwidth_gbs(slowest.name)
        seconds += gpu_bytes / (bandwidth * 1e9 * parallel)
        facts.update(gpu=slowest.name, gpu_gbs=bandwidth, gpu_known=known)
    return round(DECODE_EFFICIENCY / seconds, 1), facts


def pin_gpus(gpus: tuple[Gpu, ...]) -> dict[str, str]:
    """The server sees exactly the GPUs the arithmetic counted: a card left out
    (full, or unreadable) would otherwise get its share of llama-server's layer
    split.  PCI order makes CUDA number the cards as nvidia-smi does."""
    indices = ",".join(str(g.index) for g in sorted(gpus, key=lambda g: g.index))
    return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": indices}
