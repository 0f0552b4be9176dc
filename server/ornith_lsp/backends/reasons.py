"""The prose of a plan: one sentence per choice, each with its numbers.

``doctor`` prints these as they are, so each says what was chosen, why, and
the arithmetic behind it; a refusal reuses the same explanations.  Pure
functions of a :class:`~.placement.Placement`, the hardware and the settings.
"""

from __future__ import annotations

from ..settings import BackendSettings
from . import catalog
from .catalog import KV_CACHE_TYPES, RANK, ModelSpec, is_embedded
from .gguf import GgufInfo
from .hardware import CPU_BANDWIDTH_GBS, Hardware
from .placement import (
    CONTEXT_STEP,
    DECODE_EFFICIENCY,
    DEFAULT_VOCAB,
    FIT_MARGIN_MIB,
    GOOD_CONTEXT,
    MASK_BYTES,
    MIN_CONTEXT,
    UBATCH,
    Placement,
    active_bytes,
    expert_bytes,
    mib,
    pin_gpus,
    speed,
    targets,
)
from .vllm import VLLM_GPU_MEMORY_UTILIZATION


def hardware_reason(hw: Hardware) -> str:
    gpus = ", ".join(f"GPU {g.index} {g.name} {g.free_mib}/{g.total_mib} MiB free" for g in hw.gpus)
    return (
        f"Hardware from {hw.source}: {gpus or 'no usable GPU'}; "
        f"{hw.ram_mib} MiB RAM; {hw.cpu_cores} CPU cores."
    )


def backend_reason(p: Placement, backend: BackendSettings) -> str:
    asked = f" (backend.kind = {backend.kind!r})" if backend.kind != "auto" else ""
    if p.backend == "llamacpp":
        return f"llama-server{asked}, because the {p.quant.name} file is a GGUF, llama.cpp's own format."
    return (
        f"vLLM{asked}, because {p.quant.name} safetensors are vLLM's format and it shards them by "
        "tensor parallelism; the release requires vLLM >= 0.19.1 (35B) and transformers >= 5.8.1, "
        "which are checked before it starts."
    )


def model_reason(p: Placement, backend: BackendSettings, hw: Hardware) -> str:
    if backend.kind == "embedded":
        return f"The {p.spec.size} because backend.kind = 'embedded' asked for it."
    if backend.model_size != "auto":
        return f"The {p.spec.size} because backend.model_size = {backend.model_size!r} asked for it."
    if p.spec.custom:
        s = p.spec
        return (
            f"A custom GGUF: backend.model_path {backend.model_path.name if backend.model_path else ''!r} does not name an Ornith size, "
            f"so its own header sizes it: {s.layers} layers, {s.kv_heads} KV heads x {s.head_dim}, "
            f"trained context {s.max_context}."
        )
    if backend.model_path is not None:
        return f"The {p.spec.size} because backend.model_path {backend.model_path.name!r} names it."
    if is_embedded(p.spec) and not hw.gpus:
        return (
            f"The embedded {p.spec.size}, the default with no GPU because it stays interactive "
            'on a CPU; set backend.model_size = "9B" to run Ornith on the CPU if RAM allows.'
        )
    if is_embedded(p.spec):
        return f"The embedded {p.spec.size}, because no Ornith model fits these GPUs with {MIN_CONTEXT} tokens."
    return (
        f"The {p.spec.size}: the first of {' > '.join(RANK)} that fits with at least {MIN_CONTEXT} "
        "tokens; the release prefers the 35B wherever it fits (about 3B active parameters decode "
        "faster than the 9B, and it is more accurate), and offers the 31B for more VRAM than the 9B needs."
    )


def closest(options: list[Placement]) -> Placement:
    return max(options, key=lambda p: (p.max_context, p.room))


def skipped_reason(spec: ModelSpec, options: list[Placement], backend: BackendSettings) -> str:
    best = closest(options)
    floor = targets(best, backend.context_length)[0]
    return f"Not the {spec.size}: its closest option leaves {best.max_context} tokens ({best.explain(floor)})."


def quant_reason(p: Placement, backend: BackendSettings) -> str:
    name = f"{p.quant.name} ({p.quant.size_gb:g} GB)"
    if p.spec.custom:
        return f"{p.quant.name} (general.file_type in the header), {p.quant.size_gb:.3g} GB: the file's size on disk."
    if backend.quant is not None:
        return f"{name} because backend.quant asked for it."
    if backend.model_path is not None and not is_embedded(p.spec):
        return f"{name} because backend.model_path's name says so (or it is the only {p.quant.format} form); the arithmetic uses the catalog's size for it."
    if len(p.spec.quants) == 1:
        return f"{name}: the only file of the {p.spec.size}."
    if not p.gpus:
        return f"{name}: the smallest file of the {p.spec.size}, since CPU decode speed is bound by RAM bandwidth."
    if p.split:
        return f"{name}: the smallest file of the {p.spec.size}, since the weights left in RAM bound decode speed."
    if p.max_context >= min(GOOD_CONTEXT, p.spec.max_context):
        return f"{name}: the best-quality file of the {p.spec.size} that still leaves >= {GOOD_CONTEXT} tokens."
    return f"{name}: no file of the {p.spec.size} leaves {GOOD_CONTEXT} tokens here, so the one leaving the most."


def size_disagreement(p: Placement) -> list[str]:
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


def _kv_formula(p: Placement) -> str:
    s = p.spec
    per = KV_CACHE_TYPES[p.kv_type]
    width = "2 bytes" if p.kv_type == "f16" else f"{per * 32:g}/32 bytes ({p.kv_type})"
    return (
        f"KV per token is 2 x {s.layers} layers x {s.kv_heads} KV heads x {s.head_dim} x {width} "
        f"= {s.kv_bytes(p.kv_type) / 1024:g} KiB"
    )


def context_reason(p: Placement, context: int, backend: BackendSettings) -> str:
    if backend.context_length is not None:
        return f"Context {context} because backend.context_length asked for it, and it fits: {p.explain(context)}."
    tight = min(p.pools, key=lambda pool: pool.max_tokens())
    raw = tight.max_tokens()
    if not p.gpus:
        return f"Context {context}, the CPU default since CPU prompt processing is slow; it fits: {p.explain(context)}."
    capped = f", capped at the {p.spec.size}'s maximum {p.spec.max_context}" if raw >= p.spec.max_context else ""
    kv = p.spec.kv_bytes(p.kv_type)
    share = "" if tight.kv_per_token == kv else f"; {tight.label} holds {tight.kv_per_token / 1024:.4g} KiB of it"
    per_token = f"{tight.kv_per_token / 1024:.4g} KiB"
    if tight.mask_per_token:
        per_token = f"({per_token} KV + {tight.mask_per_token / 1024:g} KiB attention mask)"
    weights = tight.weights_text or f"{mib(tight.weights)} weights"
    return (
        f"Context {context}: ({tight.capacity_text} - {weights} - {tight.reserve_text}) / "
        f"{per_token} per token = {raw} tokens, rounded down to a multiple of "
        f"{CONTEXT_STEP}{capped}; {_kv_formula(p)}{share}."
    )


def kv_reason(p: Placement, f16_context: int | None, backend: BackendSettings) -> list[str]:
    """Why the KV cache is quantized, when it is."""
    if p.backend != "llamacpp":
        return []
    if backend.kv_cache_type not in ("auto", "f16") and backend.kv_cache_type == p.kv_type:
        return [f"-ctk/-ctv {p.kv_type} because backend.kv_cache_type asked for it; it needs flash attention (-fa on)."]
    if p.kv_type == "f16":
        return []
    floor = targets(p, backend.context_length)[0]
    return [
        f"KV cache stored as {p.kv_type} (-ctk/-ctv {p.kv_type}, with -fa on, which a quantized V cache needs): "
        f"with f16 only {f16_context} tokens fit, under the {floor} needed; {p.kv_type} fits "
        f"{p.max_context}.  Set backend.kv_cache_type = \"f16\" to refuse the trade."
    ]


RELEASE_CLAIMS = {("35B", "Q4_K_M"): (24, 8192, 16384)}
"""The release's one quantified claim: 35B Q4_K_M on a 24 GB card at 8K-16K."""


def release_comparison(p: Placement, context: int) -> list[str]:
    """Compared only on the card the claim is about, fully offloaded."""
    claim = RELEASE_CLAIMS.get((p.spec.size, p.quant.name))
    if claim is None or len(p.gpus) != 1 or p.gpu_layers <= p.spec.layers or p.cpu_moe_layers:
        return []
    if abs(p.gpus[0].total_mib - claim[0] * 1024) > 1024:
        return []
    card_gb, low, high = claim
    agrees = "agrees" if low <= context <= high else "DISAGREES (stated, not adjusted)"
    return [
        f"Release: {p.spec.size} {p.quant.name} on a {card_gb} GB card at {low}-{high} tokens; "
        f"the arithmetic here gives {context} with {p.gpus[0].free_mib} MiB free, which {agrees}."
    ]


def gpu_reason(p: Placement, hw: Hardware, backend: BackendSettings) -> str:
    if not p.gpus:
        return "Tensor parallel size 1: no GPU is used."
    indices = pin_gpus(p.gpus)["CUDA_VISIBLE_DEVICES"]
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
    holds = "holds the whole model" if not p.split else "holds what the layer split below puts on it"
    return f"Tensor parallel size 1: GPU {indices} {holds}.{pinned}"


def layers_reason(p: Placement, backend: BackendSettings) -> str:
    layers = p.spec.layers
    if p.backend == "vllm":
        return f"All {layers} layers on the GPUs: vLLM has no CPU/GPU layer split."
    if p.gpu_layers == 0:
        return f"-ngl 0: all {layers} layers run on the CPU."
    if p.cpu_moe_layers:
        asked = "backend.cpu_moe_layers asked for it" if backend.cpu_moe_layers is not None else (
            f"the whole {p.spec.size} does not fit the GPU, and {p.cpu_moe_layers} is the fewest that leave "
            "the context below"
        )
        return (
            f"-ngl {p.gpu_layers} --n-cpu-moe {p.cpu_moe_layers}: every layer's attention, shared weights and "
            f"KV cache on the GPU, and the routed experts of the first {p.cpu_moe_layers} of {layers} layers "
            f"({mib(expert_bytes(p.spec, p.quant))} each) in RAM, where the CPU computes them: {asked}."
        )
    if p.gpu_layers >= layers + 1:
        return f"-ngl {p.gpu_layers}: all {layers} layers and the output layer on the GPU."
    why = "backend.gpu_layers" if backend.gpu_layers is not None else (
        f"the most that fit the GPU, since the whole {p.spec.size} does not"
    )
    return (
        f"-ngl {p.gpu_layers} of {layers + 1} ({why}): about "
        f"{p.gpu_layers / (layers + 1):.0%} of the weights and KV cache on the GPU, the rest in RAM."
    )


def tools_reason(header: GgufInfo | None, tools: bool) -> str:
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


def speed_reason(p: Placement) -> tuple[float, str]:
    tps, f = speed(p)
    gpu_bytes, ram_bytes = active_bytes(p)
    sources = []
    if p.gpus:
        origin = "published" if f["gpu_known"] else "assumed for an unknown card"
        sources.append(f"{f['gpu_gbs']:g} GB/s per GPU ({f['gpu']}, {origin})")
    if ram_bytes > 0:
        sources.append(f"{CPU_BANDWIDTH_GBS:g} GB/s RAM (assumed)")
    parallel = int(f["parallel"])  # type: ignore[call-overload]
    shards = f" over {parallel} GPUs in parallel" if parallel > 1 else ""
    if p.nodes > 1:
        shards += f", {p.nodes} pipeline stages one after another (network time not counted)"
    if p.split:
        what = "experts" if p.cpu_moe_layers else "layers"
        read = (
            f"{gpu_bytes / 1e9:.2f} GB read per token from GPU memory and {ram_bytes / 1e9:.2f} GB from RAM "
            f"(the {what} kept there), one after the other"
        )
    else:
        read = f"{(gpu_bytes + ram_bytes) / 1e9:.2f} GB of active weights read per token{shards}"
    return tps, (
        f"About {tps:g} tokens/s: {' and '.join(sources)}, {read}, x {DECODE_EFFICIENCY:g} efficiency -- "
        "an estimate, not a measurement."
    )


def backend_extras(p: Placement, backend: BackendSettings, context: int, embedded_model: str | None) -> list[str]:
    extras = []
    if p.backend == "vllm" and p.utilization < VLLM_GPU_MEMORY_UTILIZATION:
        extras.append(
            f"--gpu-memory-utilization {p.utilization:.2f}: less than vLLM's default "
            f"{VLLM_GPU_MEMORY_UTILIZATION} of a card is free, and vLLM refuses to start otherwise."
        )
    if p.flash_attn and p.gpus:
        extras.append(
            "-fa on: flash attention keeps llama.cpp's compute buffer to a fixed part plus a 1 KiB-per-token "
            "f16 mask, as the arithmetic above assumes (without it, the scores of every head grow with the context)."
        )
    if p.backend == "llamacpp" and backend.parallel > 1:
        slots = backend.parallel
        extras.append(f"-np {slots} divides the {context} tokens into {slots} slots of {context // slots}.")
    if is_embedded(p.spec) and embedded_model is None:
        extras.append(f"{p.quant.file} is a placeholder: the caller passes the path find_embedded_model() returns.")
    if is_embedded(p.spec) and backend.model_path is not None:
        if embedded_model == str(backend.model_path):
            extras.append(f"backend.model_path {backend.model_path.name!r} is served in place of the embedded model's file.")
        else:
            extras.append("backend.model_path is not used for the embedded model.")
    pull = f"ornith-lsp pull --model-size {p.spec.size} --quant {p.quant.name}"
    if not is_embedded(p.spec) and p.backend == "llamacpp" and backend.model_path is None:
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


def headroom_assumptions(p: Placement) -> list[str]:
    """The figures the GPU arithmetic rests on, for ``Plan.assumed``."""
    if p.backend != "llamacpp" or not p.gpus:
        return []
    out = [
        f"llama-server's GPU headroom: llama.cpp's default --fit-target margin of {FIT_MARGIN_MIB} MiB per GPU "
        "(CUDA context, cuBLAS, driver) plus its compute buffer under flash attention, bounded by the f32 logits "
        f"of one {UBATCH}-token micro-batch plus a {UBATCH * MASK_BYTES // 1024} KiB-per-token f16 attention mask "
        "(the mask's size measured on the shipped llama-server; CUDA figures are not measured here)"
    ]
    if p.spec.vocab_size is None:
        out.append(f"a {DEFAULT_VOCAB}-token vocabulary for the logits buffer, since the {p.spec.size}'s is not known")
    return out


def overrides(backend: BackendSettings) -> str:
    fields = (
        "kind", "model_size", "quant", "context_length", "tensor_parallel_size",
        "pipeline_parallel_size", "gpu_layers", "cpu_moe_layers", "kv_cache_type", "model_path",
    )  # fmt: skip
    defaults = BackendSettings()
    changed = [f for f in fields if getattr(backend, f) != getattr(defaults, f)]
    return ", ".join(f"backend.{f} = {getattr(backend, f)}" for f in changed)


def no_fit_message(tried: list[tuple[ModelSpec, list[Placement]]], backend: BackendSettings) -> str:
    asked = overrides(backend) or "the automatic choice"
    attempts = [(spec, options) for spec, options in tried if options]
    if not attempts:
        sizes = ", ".join(spec.size for spec, _ in tried)
        return (
            f"nothing in the catalog matches {asked} (sizes tried: {sizes}); "
            "check backend.quant and backend.kind"
        )
    lines = []
    for _spec, options in attempts:
        best = closest(options)
        floor = targets(best, backend.context_length)[0]
        lines.append(f"{best.explain(floor)} (at most {best.max_context} tokens fit)")
    return f"{asked} cannot be served here: " + " | ".join(lines)


def split_refusal(spec: ModelSpec, splits: list[Placement], backend: BackendSettings) -> str:
    """Why no split works, from the split that comes closest: the fewest
    layers or experts in RAM that leave the GPU enough context (so RAM is what
    is short), or, when none does, everything movable in RAM (so the GPU is)."""
    def floor(p: Placement) -> int:
        return targets(p, backend.context_length)[0]

    def what(p: Placement) -> str:
        if p.cpu_moe_layers:
            return f"the experts of {p.cpu_moe_layers} of {spec.layers} layers"
        return f"{spec.layers + 1 - p.gpu_layers} of {spec.layers + 1} layers"

    gpu_fits = [p for p in splits if p.pools[0].max_tokens() >= floor(p)]
    if gpu_fits:
        best = gpu_fits[0]
        return (
            f"the GPU holds the {spec.size} {best.quant.name} with {what(best)} in RAM, but RAM cannot hold "
            f"them: {best.explain(floor(best))}"
        )
    best = max(splits, key=lambda p: (p.pools[0].max_tokens(), p.room))
    return (
        f"even with {what(best)} in RAM, the GPU cannot hold the rest of the {spec.size} "
        f"{best.quant.name} with {floor(best)} tokens: {best.explain(floor(best))}"
    )
