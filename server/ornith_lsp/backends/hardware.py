"""What the machine has: GPUs (from nvidia-smi), RAM and CPU cores.

Only :func:`_run_nvidia_smi` (through :mod:`ornith_lsp.procs`) and the two
small file reads touch the system;
parsing is pure so every odd nvidia-smi output can be tested from a string.
A GPU whose memory cannot be read is not a crash: it is left out and the
reason goes to ``Hardware.problems`` for ``doctor`` to show.  Nor is output
that cannot be parsed at all: :func:`probe` then ignores every GPU and says
why, because RAM and cores are still worth a plan and a report.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from .. import procs

NVIDIA_SMI = [
    "nvidia-smi",
    "--query-gpu=index,name,memory.total,memory.free",
    "--format=csv,noheader,nounits",
]
NVIDIA_SMI_TIMEOUT_S = 10.0
MEMINFO = Path("/proc/meminfo")
CPU_BANDWIDTH_GBS = 50.0
"""Assumed: dual-channel DDR5 delivers roughly 50-80 GB/s; the low end is used."""

DEFAULT_GPU_BANDWIDTH_GBS = 400.0
GPU_BANDWIDTH_GBS: tuple[tuple[str, float], ...] = (
    ("H200", 4800),
    ("H100", 3350),
    ("A100", 2039),
    ("RTX 6000 Ada", 960),
    ("L40S", 864),
    ("A6000", 768),
    ("5090", 1792),
    ("4090", 1008),
    ("4080", 717),
    ("4070", 504),
    ("4060", 272),
    ("3090", 936),
    ("3080", 760),
    ("3060", 360),
    ("A10", 600),
    ("T4", 320),
)
"""Published memory bandwidth by name fragment; the first match wins, so
longer names (A100) come before their prefixes (A10)."""


class HardwareError(ValueError):
    """The hardware description cannot be read; the message names the culprit."""


class Gpu(BaseModel):
    index: int
    name: str
    total_mib: int
    free_mib: int


class Hardware(BaseModel):
    gpus: list[Gpu]
    ram_mib: int
    cpu_cores: int
    source: str
    problems: list[str] = []


def parse_nvidia_smi(text: str) -> tuple[list[Gpu], list[str]]:
    """Parse ``index, name, memory.total, memory.free`` lines (MiB).

    A line that is not that shape is a bug in whatever produced it, so it
    raises.  A GPU reporting ``[N/A]`` or 0 MiB free (MIG slices, some vGPUs,
    a card another process has filled) is real hardware we cannot plan for:
    it is skipped and explained in the returned problems.
    """
    gpus: list[Gpu] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4 or not parts[0].isdigit():
            raise _malformed(number, line)
        index, name, total, free = int(parts[0]), ",".join(parts[1:-2]), parts[-2], parts[-1]
        if _unavailable(total) or _unavailable(free):
            problems.append(
                f"GPU {index} ({name}) reports memory.total={total}, memory.free={free} "
                f"(nvidia-smi line {number}); it is not used because its free memory is unknown"
            )
            continue
        if not (total.isdigit() and free.isdigit()):
            raise _malformed(number, line)
        if int(free) == 0:
            problems.append(
                f"GPU {index} ({name}) has 0 MiB free of {total} MiB; another process holds "
                "all of its memory, so it is not used"
            )
            continue
        gpus.append(Gpu(index=index, name=name, total_mib=int(total), free_mib=int(free)))
    return gpus, problems


def _unavailable(field: str) -> bool:
    return field.startswith("[") and field.endswith("]")


def _malformed(number: int, line: str) -> HardwareError:
    return HardwareError(
        f"nvidia-smi line {number} is not 'index, name, memory.total, memory.free': {line!r}"
    )


def parse_meminfo(text: str) -> int:
    """MemTotal in MiB; 0 when absent (not Linux), which plans treat as no RAM to spare."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def gpu_bandwidth_gbs(name: str) -> tuple[float, bool]:
    """Bandwidth for a card name and whether it was known rather than defaulted."""
    for fragment, gbs in GPU_BANDWIDTH_GBS:
        if fragment.lower() in name.lower():
            return gbs, True
    return DEFAULT_GPU_BANDWIDTH_GBS, False


def _run_nvidia_smi() -> tuple[str, str, list[str]]:
    """The only process started here, through :mod:`ornith_lsp.procs`: (csv text, source, problems)."""
    try:
        done = procs.capture(NVIDIA_SMI, timeout_s=NVIDIA_SMI_TIMEOUT_S)
    except FileNotFoundError:
        return "", "nvidia-smi not found: no NVIDIA GPU assumed", []
    if done.timed_out:
        return "", "nvidia-smi", [f"nvidia-smi did not answer within {NVIDIA_SMI_TIMEOUT_S:g} s; GPUs ignored"]
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        detail = said[0] if said else "no output"
        return "", "nvidia-smi", [f"nvidia-smi exited with {done.returncode}: {detail}; GPUs ignored"]
    return done.stdout, "nvidia-smi", []


def probe(hardware_file: Path | None = None) -> Hardware:
    """Describe this machine.  ``hardware_file`` holds nvidia-smi's CSV instead
    of running it, for machines without the driver and for reproducing a
    user's report."""
    if hardware_file is not None:
        source, problems = f"file {hardware_file}", []
        try:
            text = Path(hardware_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            text = ""
            problems.append(f"{hardware_file}: cannot read ({exc}); GPUs ignored")
    else:
        text, source, problems = _run_nvidia_smi()
    try:
        gpus, gpu_problems = parse_nvidia_smi(text)
    except HardwareError as exc:
        gpus, gpu_problems = [], [f"{exc}; every GPU is ignored, since the rest of that output cannot be trusted"]
    try:
        ram_mib = parse_meminfo(MEMINFO.read_text(encoding="utf-8"))
    except OSError:
        ram_mib = 0
    if ram_mib == 0:
        problems.append(f"{MEMINFO} has no MemTotal; RAM is taken as 0 MiB")
    return Hardware(
        gpus=gpus,
        ram_mib=ram_mib,
        cpu_cores=os.cpu_count() or 1,
        source=source,
        problems=problems + gpu_problems,
    )
