"""What every benchmark shares: the machine it ran on, medians, the embedded
backend, and writing results that the README quotes verbatim."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from ornith_lsp import settings as settings_mod
from ornith_lsp.backends.runtime import Backend, make_plan

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(ram_gib, 1), "gpu": None,
            "python": platform.python_version()}


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def write(name: str, data: dict, quick: bool) -> Path:
    """Quick runs (CI) go to a separate file so they never overwrite the published figures."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / (f"{name}.quick.json" if quick else f"{name}.json")
    record = {"benchmark": name, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "date": time.strftime("%Y-%m-%d"), "machine": machine(), "quick": quick, **data}
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


@contextlib.asynccontextmanager
async def embedded_backend(parallel: int = 1, log_dir: str | None = None) -> AsyncIterator[Backend]:
    s = settings_mod.load(None, cli={"backend": {"kind": "embedded", "parallel": parallel},
                                     **({"log_dir": log_dir} if log_dir else {})})
    plan, problems = make_plan(s)
    if problems:
        raise SystemExit("; ".join(problems))
    backend = Backend(s, plan)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.stop()
