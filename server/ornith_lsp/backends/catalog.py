"""Model facts, in one table, so the planner's arithmetic has a single source.

The Ornith 1.0 release gives only some numbers (file sizes of four files,
which card each fits on).  Everything else a memory plan needs -- layer
counts, KV heads, head sizes, the sizes of files the release does not list --
is filled in here with plausible values and listed in each entry's
``assumed`` so a plan can say which of its numbers are guesses.

Sizes the release does not give are ``params x bits / 8``; the bits per
weight are llama.cpp's effective averages (K-quants mix block types, so
Q4_K_M is ~4.85 bits, not 4).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from .embedded import CODER, EMBEDDED_NAME, TINY, EmbeddedModel
from .gguf import GgufInfo

SERVED_NAME = "Ornith-1.0"
MAX_CONTEXT = 262144

KV_CACHE_TYPES: dict[str, float] = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
"""Bytes per cached element for llama-server's ``-ctk``/``-ctv``: ggml's q8_0
stores 32 values in 34 bytes and q4_0 in 18; f16 is the default."""

BITS_PER_WEIGHT = {
    "Q4_1": 5.0,
    "Q4_K_M": 4.85,
    "Q5_K_M": 5.69,
    "Q8_0": 8.5,
    "fp8": 8.0,
    "bf16": 16.0,
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Quant(_Frozen):
    """One downloadable form of a model.  ``file`` is set for GGUF (llama-server
    loads one file); safetensors are loaded by vLLM from the whole ``repo``."""

    name: str
    format: Literal["gguf", "safetensors"]
    repo: str
    file: str | None
    size_gb: float
    size_source: str

    @property
    def weight_bytes(self) -> int:
        return round(self.size_gb * 1e9)


class ModelSpec(_Frozen):
    """``quants`` are ordered best quality first; the planner relies on that."""

    size: str
    params_b: float
    active_params_b: float
    layers: int
    kv_heads: int
    head_dim: int
    max_context: int
    repo: str
    quants: tuple[Quant, ...]
    assumed: tuple[str, ...] = ()
    custom: bool = False
    """Described by a GGUF's own header rather than by this table."""
    licence: str | None = None
    """For a model that ships with ornith-lsp: its licence and where the file comes from."""
    vocab_size: int | None = None
    """Sizes llama.cpp's logits buffer; None when not known."""
    expert_count: int | None = None
    experts_used: int | None = None
    expert_share: float | None = None
    """Share of a file's bytes in routed-expert tensors, which ``--n-cpu-moe`` can keep in RAM."""

    def kv_bytes(self, cache_type: str = "f16") -> int:
        """One token of context with the cache stored as ``cache_type``."""
        return math.ceil(2 * self.layers * self.kv_heads * self.head_dim * KV_CACHE_TYPES[cache_type])

    @property
    def is_moe(self) -> bool:
        return bool(self.expert_count)

    @property
    def offloadable(self) -> bool:
        """Keeping experts in RAM is planned only when the share of them read per
        token is known, since that share sets the decode speed with them there."""
        return bool(self.expert_count and self.experts_used and self.expert_share)

    def quant(self, name: str) -> Quant | None:
        return next((q for q in self.quants if q.name.lower() == name.lower()), None)

    def computed_size_gb(self, quant: Quant) -> float:
        return round(self.params_b * BITS_PER_WEIGHT[quant.name] / 8, 1)


def _gguf(repo: str, stem: str, name: str, size_gb: float | None, params_b: float) -> Quant:
    return _quant("gguf", repo, f"{stem}-{name}.gguf", name, size_gb, params_b)


def _safetensors(repo: str, name: str, size_gb: float | None, params_b: float) -> Quant:
    return _quant("safetensors", repo, None, name, size_gb, params_b)


def _quant(
    fmt: Literal["gguf", "safetensors"],
    repo: str,
    file: str | None,
    name: str,
    size_gb: float | None,
    params_b: float,
) -> Quant:
    """A size given by the release is kept as is; a missing one is computed and
    says so, so a plan never passes off arithmetic as a published figure."""
    if size_gb is not None:
        return Quant(name=name, format=fmt, repo=repo, file=file, size_gb=size_gb, size_source="release")
    bits = BITS_PER_WEIGHT[name]
    return Quant(
        name=name,
        format=fmt,
        repo=repo,
        file=file,
        size_gb=round(params_b * bits / 8, 1),
        size_source=f"computed: {params_b:g}B params x {bits:g} bits / 8",
    )


_ORG = "deepreinforce-ai"
_GUESSED_NAMES = "repo ids and GGUF file names other than the release's two ids"
_VOCAB = 151936
_ASSUMED_VOCAB = f"a {_VOCAB}-token vocabulary"


def _routed_share(params_b: float, active_b: float, experts: int, used: int) -> float:
    """Share of the weights in routed experts: with E of them in experts, of which
    ``used / experts`` are read per token, ``params - E + E x used / experts = active``."""
    return round((params_b - active_b) / (1 - used / experts) / params_b, 4)

MODELS: dict[str, ModelSpec] = {
    "9B": ModelSpec(
        size="9B",
        params_b=9,
        active_params_b=9,
        layers=36,
        kv_heads=4,
        head_dim=128,
        max_context=MAX_CONTEXT,
        repo=f"{_ORG}/Ornith-1.0-9B",
        quants=(
            _safetensors(f"{_ORG}/Ornith-1.0-9B", "bf16", 19.0, 9),
            _gguf(f"{_ORG}/Ornith-1.0-9B-GGUF", "Ornith-1.0-9B", "Q8_0", None, 9),
            _gguf(f"{_ORG}/Ornith-1.0-9B-GGUF", "Ornith-1.0-9B", "Q4_K_M", 6.0, 9),
        ),
        vocab_size=_VOCAB,
        assumed=("9B: 36 layers, 4 KV heads, head_dim 128", _ASSUMED_VOCAB, _GUESSED_NAMES),
    ),
    "31B": ModelSpec(
        size="31B",
        params_b=31,
        active_params_b=31,
        layers=64,
        kv_heads=8,
        head_dim=128,
        max_context=MAX_CONTEXT,
        repo=f"{_ORG}/Ornith-1.0-31B",
        quants=(
            _safetensors(f"{_ORG}/Ornith-1.0-31B", "bf16", None, 31),
            _gguf(f"{_ORG}/Ornith-1.0-31B-GGUF", "Ornith-1.0-31B", "Q8_0", None, 31),
            _gguf(f"{_ORG}/Ornith-1.0-31B-GGUF", "Ornith-1.0-31B", "Q4_K_M", None, 31),
        ),
        vocab_size=_VOCAB,
        assumed=("31B: 64 layers, 8 KV heads, head_dim 128; all file sizes", _ASSUMED_VOCAB, _GUESSED_NAMES),
    ),
    "35B": ModelSpec(
        size="35B",
        params_b=35,
        active_params_b=3,
        layers=48,
        kv_heads=8,
        head_dim=128,
        max_context=MAX_CONTEXT,
        repo=f"{_ORG}/Ornith-1.0-35B",
        quants=(
            _safetensors(f"{_ORG}/Ornith-1.0-35B", "bf16", None, 35),
            _gguf(f"{_ORG}/Ornith-1.0-35B-GGUF", "Ornith-1.0-35B", "Q8_0", None, 35),
            _gguf(f"{_ORG}/Ornith-1.0-35B-GGUF", "Ornith-1.0-35B", "Q5_K_M", 24.7, 35),
            _gguf(f"{_ORG}/Ornith-1.0-35B-GGUF", "Ornith-1.0-35B", "Q4_K_M", 21.2, 35),
        ),
        vocab_size=_VOCAB,
        expert_count=128,
        experts_used=8,
        expert_share=_routed_share(35, 3, 128, 8),
        assumed=(
            "35B: 48 layers, 8 KV heads, head_dim 128",
            f"35B: 128 routed experts, 8 per token, no shared expert, so {_routed_share(35, 3, 128, 8):.1%} "
            "of each file is expert weights",
            _ASSUMED_VOCAB,
            _GUESSED_NAMES,
        ),
    ),
    "397B": ModelSpec(
        size="397B",
        params_b=397,
        active_params_b=17,
        layers=60,
        kv_heads=8,
        head_dim=128,
        max_context=MAX_CONTEXT,
        repo=f"{_ORG}/Ornith-1.0-397B",
        quants=(
            _safetensors(f"{_ORG}/Ornith-1.0-397B", "bf16", None, 397),
            _safetensors(f"{_ORG}/Ornith-1.0-397B-FP8", "fp8", None, 397),
        ),
        assumed=(
            "397B: 17B active params, 60 layers, 8 KV heads, head_dim 128; all file sizes",
            _GUESSED_NAMES,
        ),
    ),
}

RANK: tuple[str, ...] = ("397B", "35B", "31B", "9B")
"""Preference order.  The 35B outranks the dense 31B because the release says
to prefer it wherever it fits (about 3B active parameters decode faster); the
31B outranks the 9B because the release offers it for more VRAM than the 9B needs."""

def embedded_spec(model: EmbeddedModel) -> ModelSpec:
    """An embedded model as the planner sees it: a small GGUF from PyPI."""
    source = model.package.replace("_", "-") if model.package else f"{len(model.packages)} chunk packages"
    return ModelSpec(
        size=model.name,
        params_b=model.params_b,
        active_params_b=model.params_b,
        layers=model.layers,
        kv_heads=model.kv_heads,
        head_dim=model.head_dim,
        max_context=model.context,
        repo=f"{source} (PyPI)",
        quants=(
            Quant(
                name=model.quant,
                format="gguf",
                repo=f"{source} (PyPI)",
                file=model.file,
                size_gb=model.size_gb,
                size_source=f"the file joined from PyPI, ~{model.size_gb:.1f} GB",
            ),
        ),
        licence=f"{model.name}: licence {model.licence}; source: {model.provenance}",
    )


EMBEDDED = embedded_spec(CODER)
EMBEDDED_TINY = embedded_spec(TINY)


def is_embedded(spec: ModelSpec) -> bool:
    return spec is EMBEDDED or spec is EMBEDDED_TINY


def embedded_for(key: str) -> ModelSpec:
    """The embedded model ``backend.embedded_model`` names."""
    return EMBEDDED_TINY if key == "tiny" else EMBEDDED


def spec(size: str) -> ModelSpec:
    if size in (TINY.name, "tiny"):
        return EMBEDDED_TINY
    return EMBEDDED if size in (EMBEDDED_NAME, "embedded") else MODELS[size]


CUSTOM = "custom GGUF"


def from_gguf(info: GgufInfo) -> ModelSpec:
    """A GGUF the table does not know, described by its own header.

    Its size on disk is its weight size and its header gives the KV cache, so the
    memory arithmetic is as sound as for the catalog's models; only the speed
    estimate assumes something (that every weight is read for every token).
    """
    path = Path(info.path)
    quant = Quant(
        name=info.file_type or "GGUF",
        format="gguf",
        repo=str(path.parent),
        file=str(path),
        size_gb=info.size_bytes / 1e9,
        size_source="the file's size on disk",
    )
    assumed: tuple[str, ...] = ()
    share = info.expert_bytes / info.size_bytes if info.expert_bytes else None
    active = 1.0
    if info.expert_count and info.expert_used_count and share:
        active = 1 - share + share * info.expert_used_count / info.expert_count
        assumed = (
            f"custom GGUF: {info.expert_count} experts, {info.expert_used_count} read per token, "
            f"{share:.1%} of the file in expert tensors (from its header), so about {active:.0%} of it is read per token",
        )
    elif info.expert_count:
        assumed = (
            f"custom GGUF: a mixture of {info.expert_count} experts is estimated as if every "
            "weight were read per token, so its speed is underestimated",
        )
    return ModelSpec(
        size=CUSTOM,
        params_b=1,
        active_params_b=round(active, 4),
        layers=info.block_count,
        kv_heads=info.head_count_kv,
        head_dim=info.head_dim,
        max_context=info.context_length,
        repo=str(path),
        quants=(quant,),
        assumed=assumed,
        custom=True,
        vocab_size=info.vocab_size,
        expert_count=info.expert_count,
        experts_used=info.expert_used_count,
        expert_share=share,
    )
