"""Decode tokens/s and time to first token through ornith-lsp's client (A)
versus a bare streaming request to the same llama-server (B).

Pairs run interleaved A B A B so machine noise hits both sides alike; the
figure is the ratio of medians from one run.  Both sides turn llama-server's
prompt cache off: with it on, B would reuse the prefill A just paid for.

    python bench/overhead.py [--pairs 7] [--max-tokens 128] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx

from common import embedded_backend, median, write
from ornith_lsp.llm.client import ChatClient

PROMPTS = [
    "Write a Python function that reverses a string.",
    "Explain what a hash map is in two sentences.",
    "Write a Python class for a stack with push and pop.",
    "List five prime numbers and say why they are prime.",
]


def _rates(t0: float, stamps: list[float]) -> tuple[float | None, float | None]:
    """Same arithmetic for both sides: TTFT to the first content chunk, decode
    rate over the chunks after it (one chunk = one token for llama-server)."""
    if not stamps:
        return None, None
    ttft = stamps[0] - t0
    span = stamps[-1] - stamps[0]
    return ttft, (len(stamps) - 1) / span if span > 0 else None


async def through_client(client: ChatClient, prompt: str, max_tokens: int):
    stamps: list[float] = []
    t0 = time.perf_counter()
    async for item in client.stream([{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0,
                                    extra={"cache_prompt": False}):
        if isinstance(item, str) and item:
            stamps.append(time.perf_counter())
    return _rates(t0, stamps)


async def bare(http: httpx.AsyncClient, url: str, prompt: str, max_tokens: int):
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0,
            "stream": True, "cache_prompt": False}
    stamps: list[float] = []
    t0 = time.perf_counter()
    async with http.stream("POST", url, json=body) as resp:
        async for line in resp.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                choices = json.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    stamps.append(time.perf_counter())
    return _rates(t0, stamps)


async def main(pairs: int, max_tokens: int, quick: bool) -> dict:
    async with embedded_backend() as backend:
        client = backend.client()
        url = backend.endpoint + "/chat/completions"
        rows = {"A_client": [], "B_bare": []}
        async with httpx.AsyncClient(timeout=120, trust_env=False) as http:
            await bare(http, url, PROMPTS[0], 8)  # warm-ups (connections, prompt cache), not counted
            await through_client(client, PROMPTS[0], 8)
            for i in range(pairs):
                prompt = PROMPTS[i % len(PROMPTS)]
                rows["A_client"].append(await through_client(client, prompt, max_tokens))
                rows["B_bare"].append(await bare(http, url, prompt, max_tokens))
        await client.aclose()
    med = {side: {"ttft_s": median([r[0] for r in runs]), "tokens_per_second": median([r[1] for r in runs])}
           for side, runs in rows.items()}
    a, b = med["A_client"], med["B_bare"]
    return {
        "pairs": pairs, "max_tokens": max_tokens, "model": backend.plan.model_size,
        "medians": med,
        "ratio_tokens_per_second_A_over_B": round(a["tokens_per_second"] / b["tokens_per_second"], 3),
        "ratio_ttft_A_over_B": round(a["ttft_s"] / b["ttft_s"], 3),
        "runs": {k: [list(r) for r in v] for k, v in rows.items()},
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=7)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--quick", action="store_true", help="2 pairs of 16 tokens: proves the script runs")
    args = p.parse_args()
    pairs, max_tokens = (2, 16) if args.quick else (max(5, args.pairs), args.max_tokens)
    result = asyncio.run(main(pairs, max_tokens, args.quick))
    path = write("overhead", result, args.quick)
    m = result["medians"]
    print(f"{'side':<10}{'ttft_s':>10}{'tok/s':>10}")
    for side, v in m.items():
        print(f"{side:<10}{v['ttft_s']:>10.4f}{v['tokens_per_second']:>10.1f}")
    print(f"ratio A/B: tokens/s {result['ratio_tokens_per_second_A_over_B']}, ttft {result['ratio_ttft_A_over_B']}  -> {path}")
