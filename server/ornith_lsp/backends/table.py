"""The README's hardware table, produced by the planner itself so the two
cannot drift apart (a test compares them).  Regenerate it with
``python -m ornith_lsp.backends.table``.

Each row is a machine (as ``nvidia-smi`` and ``/proc/meminfo`` would describe
it) and what was asked; the cells are the plan's own fields.  Speeds are the
planner's estimates, labelled as such.
"""

from __future__ import annotations

from ..settings import BackendSettings
from .catalog import EMBEDDED, EMBEDDED_TINY, MODELS
from .hardware import Gpu, Hardware
from .planner import plan
from .plans import Plan

GIB = 1024


def _machine(ram_gb: int, *gpus: tuple[str, int, int]) -> Hardware:
    return Hardware(
        gpus=[Gpu(index=i, name=name, total_mib=total, free_mib=free) for i, (name, total, free) in enumerate(gpus)],
        ram_mib=ram_gb * GIB,
        cpu_cores=8,
        source="the README table",
    )


_4060TI = ("NVIDIA GeForce RTX 4060 Ti", 8188, 7702)
_3060 = ("NVIDIA GeForce RTX 3060", 12288, 11800)
_4080 = ("NVIDIA GeForce RTX 4080", 16376, 15800)
_4090_DESKTOP = ("NVIDIA GeForce RTX 4090", 24564, 22500)
_4090 = ("NVIDIA GeForce RTX 4090", 24576, 24576)
_5090 = ("NVIDIA GeForce RTX 5090", 32768, 32768)
_H100 = ("NVIDIA H100 80GB HBM3", 81920, 81920)

ROWS: tuple[tuple[str, Hardware, dict[str, object]], ...] = (
    ("no GPU, 16 GB RAM", _machine(16), {}),
    ("no GPU, 16 GB RAM", _machine(16), {"model_size": "9B"}),
    ("8 GB RTX 4060 Ti (7702 MiB free), 32 GB RAM", _machine(32, _4060TI), {}),
    ("12 GB RTX 3060 (11800 MiB free), 32 GB RAM", _machine(32, _3060), {}),
    ("12 GB RTX 3060 (11800 MiB free), 32 GB RAM", _machine(32, _3060), {"model_size": "35B"}),
    ("16 GB RTX 4080 (15800 MiB free), 32 GB RAM", _machine(32, _4080), {}),
    ("16 GB RTX 4080 (15800 MiB free), 32 GB RAM", _machine(32, _4080), {"model_size": "35B"}),
    ("24 GB RTX 4090 driving a desktop (22500 MiB free)", _machine(64, _4090_DESKTOP), {}),
    ("24 GB RTX 4090, nothing else on it", _machine(64, _4090), {}),
    ("32 GB RTX 5090", _machine(64, _5090), {}),
    ("8 x 80 GB H100", _machine(1024, *[_H100] * 8), {}),
)


def _asked(settings: dict[str, object]) -> str:
    return " ".join(f"`--{k.replace('_', '-')} {v}`" for k, v in settings.items()) or "nothing"


def _how(p: Plan) -> str:
    if p.backend == "vllm":
        return f"vLLM, tensor parallel {p.tensor_parallel_size}"
    parts = ["llama-server"]
    if not p.gpu_indices:
        parts.append("on the CPU")
    elif p.cpu_moe_layers:
        parts.append(f"experts of {p.cpu_moe_layers} layers in RAM (`--n-cpu-moe {p.cpu_moe_layers}`)")
    elif p.model_size in MODELS and (p.gpu_layers or 0) <= MODELS[p.model_size].layers:
        parts.append(f"`-ngl {p.gpu_layers}` of {MODELS[p.model_size].layers + 1} layers on the GPU")
    if p.kv_cache_type not in (None, "f16"):
        parts.append(f"{p.kv_cache_type} KV cache")
    return ", ".join(parts)


def _row(label: str, hw: Hardware, settings: dict[str, object]) -> str:
    p = plan(hw, BackendSettings.model_validate(settings))
    if p.model_size in (EMBEDDED.size, EMBEDDED_TINY.size):
        # Named generically, so the table holds whichever model is embedded.
        return f"| {label} | {_asked(settings)} | the embedded model | its own | llama-server on the CPU | |"
    model = f"{p.model_size} {p.quant}"
    speed = f"~{p.expected_tokens_per_second:g} tok/s" if p.expected_tokens_per_second else ""
    return f"| {label} | {_asked(settings)} | {model} | {p.context_length} | {_how(p)} | {speed} |"


def render() -> str:
    head = [
        "| hardware | asked | model | context | how | decode (estimate) |",
        "|---|---|---|---|---|---|",
    ]
    return "\n".join(head + [_row(*row) for row in ROWS])


if __name__ == "__main__":
    print(render())
