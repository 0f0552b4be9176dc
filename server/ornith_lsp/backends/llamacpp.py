"""llama-server's command line, for the embedded model and for any GGUF.

Every flag written here is one the shipped llama-server lists in its
``--help`` (a test reads it), so an upgrade that renames one fails in CI
rather than on a user's machine at start-up.
"""

from __future__ import annotations

from ..settings import BackendSettings

FLAGS = (
    "-m", "-c", "-ngl", "--n-cpu-moe", "-fa", "-ctk", "-ctv", "--jinja", "-np",
    "--cache-ram", "-t", "--spec-type", "--host", "--port", "--alias",
)  # fmt: skip
"""Every flag :func:`llama_command` can emit."""

QUANTIZED_KV = ("q8_0", "q4_0")
"""The quantized cache types llama-server is given (``-ctk``/``-ctv``); both need flash attention."""

NGRAM_DRAFT_DEFAULT = False
"""Whether ``backend.draft = "auto"`` turns on n-gram drafting
(``--spec-type ngram-simple``: draft tokens looked up in the context, no second
model).  Off: on two CPU cores with the coder model, three quiet runs of
``bench/speculative.py --prompts 8`` gave decode-rate ratios of 0.91, 1.01 and
1.08 and wall-time ratios of 1.00, 0.99 and 1.07 (bench/results/
speculative-3runs.log) -- no gain to stand on, though 57% of the drafted
tokens were accepted.  On a GPU, where a wider verify batch is nearly free,
``backend.draft = "ngram"`` is worth measuring."""


def draft_for(setting: str) -> str:
    if setting == "auto":
        return "ngram" if NGRAM_DRAFT_DEFAULT else "off"
    return setting


def llama_command(
    binary: str,
    model: str,
    context: int,
    gpu_layers: int,
    backend: BackendSettings,
    alias: str,
    tools: bool,
    *,
    cpu_moe_layers: int = 0,
    flash_attn: bool = False,
    kv_type: str = "f16",
    draft: str = "off",
) -> list[str]:
    """``{port}`` is filled in by the supervisor.  Flash attention is switched on
    explicitly where the plan's arithmetic assumes it (``-fa auto`` could fall
    back to a compute buffer that grows with context x heads); a quantized V
    cache requires it."""
    argv = [binary, "-m", model, "-c", str(context), "-ngl", str(gpu_layers)]
    if cpu_moe_layers:
        argv += ["--n-cpu-moe", str(cpu_moe_layers)]
    if flash_attn:
        argv += ["-fa", "on"]
    if kv_type != "f16":
        argv += ["-ctk", kv_type, "-ctv", kv_type]
    if tools:
        argv.append("--jinja")
    argv += ["-np", str(backend.parallel), "--cache-ram", str(backend.cache_ram_mib)]
    if backend.threads is not None:
        argv += ["-t", str(backend.threads)]
    if draft == "ngram":
        argv += ["--spec-type", "ngram-simple"]
    return argv + ["--host", "127.0.0.1", "--port", "{port}", "--alias", alias]
