"""llama.cpp's compute buffer against context length, with and without flash
attention: the shape of the GPU headroom the planner assumes.

The planner keeps, per GPU, llama.cpp's --fit margin, a fixed compute buffer
bounded by the f32 logits of a 512-token micro-batch, and an attention mask of
1 KiB per context token under flash attention (``-fa on``, which GPU plans
pass).  This starts the shipped llama-server on the embedded GGUF (CPU) at
two context sizes, each with ``-fa on`` and ``-fa off``, reads the
``compute buffer size`` it logs at ``-lv 4``, and reports the fixed part and
the bytes per context token -- the figures the planner's docstrings quote.
CUDA figures need a GPU and are not measured here.

    python bench/compute_buffer.py [--contexts 8192 16384] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from pathlib import Path

from common import headline, write
from ornith_lsp import procs
from ornith_lsp.backends import embedded
from ornith_lsp.backends.gguf import read_header
from ornith_lsp.backends.placement import MASK_BYTES, UBATCH

BUFFER = re.compile(r"(\w+) compute buffer size = +([0-9.]+) MiB")


async def compute_buffer_mib(binary: Path, model: Path, context: int, flash: str, log: Path) -> float:
    """Start llama-server, wait until it has sized its buffers, stop it."""
    argv = [str(binary), "-m", str(model), "-c", str(context), "-fa", flash, "-np", "1", "-t", "1",
            "-ub", str(UBATCH), "-lv", "4", "--host", "127.0.0.1", "--port", str(procs.free_port())]
    proc = await procs.spawn(argv, log_path=log)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.returncode is None:
            found = BUFFER.findall(log.read_text(errors="replace").split(f"-c {context} -fa {flash}")[-1])
            if found:
                return sum(float(mib) for _, mib in found)
            await asyncio.sleep(0.2)
        raise SystemExit(f"llama-server logged no compute buffer size; see {log}")
    finally:
        await procs.terminate(proc, grace_s=2.0)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--contexts", type=int, nargs=2, default=[8192, 16384])
    ap.add_argument("--quick", action="store_true", help="small contexts, for CI")
    args = ap.parse_args()
    low, high = (2048, 4096) if args.quick else args.contexts
    binary, _ = embedded.find_llama_server()
    model = embedded.find_embedded_model()
    info = read_header(model)
    runs: dict[str, dict[int, float]] = {"on": {}, "off": {}}
    with tempfile.TemporaryDirectory(prefix="ornith-compute-buffer-") as tmp:
        log = Path(tmp) / "llama-server.log"
        for flash, sizes in runs.items():
            for context in (low, high):
                sizes[context] = await compute_buffer_mib(binary, model, context, flash, log)
    per_token = {f: (r[high] - r[low]) * 2**20 / (high - low) for f, r in runs.items()}
    fixed_on = runs["on"][low] - per_token["on"] * low / 2**20
    logits_bound = (info.vocab_size or 0) * UBATCH * 4 / 2**20
    data = {
        "model": model.name,
        "vocab_size": info.vocab_size,
        "ubatch": UBATCH,
        "compute_buffer_mib": {f: {str(c): v for c, v in r.items()} for f, r in runs.items()},
        "bytes_per_context_token": {f: round(v, 1) for f, v in per_token.items()},
        "fixed_mib_flash_attn": round(fixed_on, 2),
        "planner_mask_bytes_per_token": UBATCH * MASK_BYTES,
        "planner_fixed_bound_mib": round(logits_bound, 2),
        "headlines": [
            headline(f"compute buffer per context token, -fa on ({model.name}, CPU)", round(per_token["on"], 1), "B"),
            headline(f"compute buffer per context token, -fa off ({model.name}, CPU)", round(per_token["off"], 1), "B"),
            headline("fixed compute buffer, -fa on / planner's logits bound", round(fixed_on / logits_bound, 3)),
        ],
    }
    path = write("compute_buffer", data, args.quick)
    for flash, r in runs.items():
        print(f"-fa {flash:3}: " + ", ".join(f"-c {c}: {v:.2f} MiB" for c, v in r.items())
              + f"; {per_token[flash]:.0f} B per context token")
    print(f"fixed part with -fa on: {fixed_on:.2f} MiB; planner's bound: {logits_bound:.2f} MiB; "
          f"planner's mask: {UBATCH * MASK_BYTES} B per token  ->  {path}")


if __name__ == "__main__":
    asyncio.run(main())
