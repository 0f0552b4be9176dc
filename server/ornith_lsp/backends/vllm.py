"""vLLM: its command line, and its version floors, checked before it is started.

The release names the versions it needs; an older vLLM loads the weights
for minutes and then fails on the architecture, so the check is done first
and the refusal carries the exact pip command.  Versions are read with
``importlib.metadata``: importing vLLM would take seconds and touch CUDA.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import metadata

INSTALL_VLLM = 'pip install "ornith-lsp[vllm]"'

TOOL_CALL_PARSER = "qwen3_coder"
VLLM_GPU_MEMORY_UTILIZATION = 0.9
"""vLLM's default share of each card; it refuses to start if less is free, so
the plan lowers it (and says so) on a card that is partly in use."""

FLOORS: dict[str, tuple[str, str | None]] = {
    "vllm": ("0.19.1", "35B"),
    "transformers": ("5.8.1", None),
}
"""package: (least version, the model size it is stated for, None = every size)."""


def installed_versions(packages: tuple[str, ...] = tuple(FLOORS)) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def check_floors(versions: Mapping[str, str | None], model_size: str | None = None) -> list[str]:
    """One sentence per unmet floor, each with the command that fixes it.

    ``versions`` maps a package to its installed version (None: not installed).
    A floor stated for one size applies to it, and to an unknown size, where
    the stricter choice is the safe one.
    """
    if not versions.get("vllm"):
        return [f"vLLM is not installed; install it with: {INSTALL_VLLM}"]
    problems = []
    for package, (floor, size) in FLOORS.items():
        if size is not None and model_size is not None and model_size != size:
            continue
        have = versions.get(package)
        which = f" for the {size}" if size else ""
        if not have:
            problems.append(f"{package} is not installed; vLLM needs {package} >= {floor}{which}: {INSTALL_VLLM}")
        elif _older(have, floor):
            problems.append(
                f"{package} {have} is older than {floor}, which the release requires{which}; "
                f'upgrade with: pip install -U "{package}>={floor}"'
            )
    return problems


def _older(version: str, floor: str) -> bool:
    """Release numbers compared as tuples; a pre-release of the floor itself
    (``0.19.1rc1``, ``0.19.1.dev3``) is older than it, a local build (``+cu126``) is not."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    if match is None:
        return True
    have = _numbers(match.group())
    want = _numbers(floor)
    if have != want:
        return have < want
    return bool(re.match(r"[.-]?(a|b|rc|c|alpha|beta|pre|preview|dev)", version[match.end():], re.I))


def _numbers(text: str) -> tuple[int, ...]:
    parts = [int(p) for p in text.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def vllm_command(
    binary: str, model: str, served_name: str, context: int, tp: int, utilization: float, nodes: int
) -> list[str]:
    """``vllm serve`` with tool calls on; ``{port}`` is filled in by the supervisor."""
    argv = [binary, "serve", model, "--served-model-name", served_name, "--max-model-len", str(context)]
    argv += ["--enable-auto-tool-choice", "--tool-call-parser", TOOL_CALL_PARSER]
    argv += ["--tensor-parallel-size", str(tp)]
    if nodes > 1:
        argv += ["--pipeline-parallel-size", str(nodes), "--distributed-executor-backend", "ray"]
    if utilization < VLLM_GPU_MEMORY_UTILIZATION:
        argv += ["--gpu-memory-utilization", f"{utilization:.2f}"]
    return argv + ["--host", "127.0.0.1", "--port", "{port}"]
