"""The physical reference: how fast could this machine decode, and how close
does llama-server get?

Decoding one token reads every weight of a dense model once (SmolLM2-135M
also ties its output projection to the token embeddings, so the whole file
is read) plus the KV cache so far, so memory bandwidth / bytes per token is
an upper bound on tokens/s.

Bandwidth: ``memoryview`` slice copies between two 256 MiB buffers (written
first, so every page is real), counted as bytes read + bytes written, the
median of several copies; once in one process and once in one process per
core started together (the machine's aggregate, the figure the bound uses).
Bytes per token: the GGUF file's size plus the KV cache at the mean context
of the decode runs.  Achieved: llama-server's ``timings.predicted_per_second``
for several prompts (128 tokens each, prompt cache off, EOS ignored), median.

    python bench/bandwidth.py [--mib 256] [--copies 7] [--prompts 7] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import time

from common import embedded_backend, headline, median, write
from ornith_lsp.backends.gguf import read_header

PROMPTS = [
    "Write a Python function that reverses a string.",
    "Explain what a hash map is.",
    "Describe the water cycle.",
    "Write a haiku about compilers.",
    "List some uses of binary search.",
    "What is a linked list?",
    "Explain recursion to a child.",
]


def copy_rates(mib: int, copies: int, barrier=None) -> list[float]:
    """Bytes moved per second (read + write) of each full-buffer copy."""
    size = mib * 2**20
    src = bytearray(b"\x5a") * size
    dst = bytearray(size)
    s, d = memoryview(src), memoryview(dst)
    d[:] = s  # commit the destination's pages, not timed
    if barrier is not None:
        barrier.wait()
    rates = []
    for _ in range(copies):
        t0 = time.perf_counter()
        d[:] = s
        rates.append(2 * size / (time.perf_counter() - t0))
    return rates


def _worker(mib: int, copies: int, barrier, out) -> None:
    out.put(copy_rates(mib, copies, barrier))


def aggregate_rate(mib: int, copies: int, procs: int) -> float:
    """All cores copying at once: the sum of the per-process medians."""
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(procs), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(mib, copies, barrier, out)) for _ in range(procs)]
    for w in workers:
        w.start()
    results = [out.get(timeout=600) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    return sum(median(r) for r in results)


async def decode_rates(prompts: int, max_tokens: int) -> tuple[list[float], list[int], str, str]:
    async with embedded_backend() as backend:
        async with backend.client() as llm:
            await llm.complete([{"role": "user", "content": "Hello."}], max_tokens=8)  # warm-up: weights paged in
            rates, contexts = [], []
            for i in range(prompts):
                done = await llm.complete([{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                                          max_tokens=max_tokens, temperature=0,
                                          extra={"cache_prompt": False, "ignore_eos": True})
                rates.append(done.timings["predicted_per_second"])
                contexts.append(done.usage.prompt_tokens + done.usage.completion_tokens // 2)
        return rates, contexts, backend.plan.model, backend.plan.model_size


def main(mib: int, copies: int, prompts: int, max_tokens: int) -> dict:
    procs = os.cpu_count() or 1
    single = median(copy_rates(mib, copies))
    allcores = aggregate_rate(mib, copies, procs)
    rates, contexts, model_path, model_name = asyncio.run(decode_rates(prompts, max_tokens))
    info = read_header(model_path)
    head_dim = info.key_length or info.embedding_length // info.head_count
    kv_per_token = 2 * info.block_count * info.head_count_kv * head_dim * 2  # K and V, f16
    mean_context = sum(contexts) / len(contexts)
    bytes_per_token = info.size_bytes + kv_per_token * mean_context
    bandwidth = max(single, allcores)
    which = "all cores" if allcores >= single else "one process"
    limit = bandwidth / bytes_per_token
    achieved = median(rates)
    return {
        "model": model_name, "gguf_bytes": info.size_bytes, "kv_bytes_per_context_token": kv_per_token,
        "mean_context_tokens": round(mean_context, 1), "bytes_read_per_token": round(bytes_per_token),
        "buffer_mib": mib, "copies": copies, "processes_for_aggregate": procs,
        "bandwidth_gb_s": {"one_process": round(single / 1e9, 2), "all_cores": round(allcores / 1e9, 2)},
        "bandwidth_note": "copy bandwidth, bytes read + bytes written; the bound uses the larger figure",
        "bandwidth_used": which,
        "decode_limit_tokens_per_s": round(limit, 1),
        "achieved_tokens_per_s": round(achieved, 1), "achieved_runs": [round(r, 2) for r in rates],
        "prompts": prompts, "max_tokens": max_tokens,
        "achieved_over_limit": round(achieved / limit, 3),
        "headline": [
            headline(f"memory bandwidth (copy, read + write, {which})", round(bandwidth / 1e9, 2), "GB/s"),
            headline(f"decode limit for {model_name} (bandwidth / {bytes_per_token / 1e6:.0f} MB a token)",
                     round(limit, 1), "tok/s"),
            headline("achieved decode (llama-server) / limit", f"{achieved:.1f} tok/s = {achieved / limit:.3f}"),
        ],
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mib", type=int, default=256)
    p.add_argument("--copies", type=int, default=7)
    p.add_argument("--prompts", type=int, default=7)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--quick", action="store_true", help="64 MiB buffers, 3 copies, 3 prompts of 32 tokens")
    a = p.parse_args()
    if a.quick:
        a.mib, a.copies, a.prompts, a.max_tokens = 64, 3, 3, 32
    res = main(a.mib, a.copies, a.prompts, a.max_tokens)
    path = write("bandwidth", res, a.quick)
    bw = res["bandwidth_gb_s"]
    print(f"bandwidth (copy, read+write): {bw['one_process']} GB/s one process, {bw['all_cores']} GB/s all cores")
    print(f"bytes per token: {res['bytes_read_per_token'] / 1e6:.1f} MB -> decode limit {res['decode_limit_tokens_per_s']} tok/s")
    print(f"achieved (median of {res['prompts']}): {res['achieved_tokens_per_s']} tok/s = {res['achieved_over_limit']} of the limit")
    print(f"-> {path}")
