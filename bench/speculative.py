"""Speculative decoding for edit turns on the CPU: is it faster here?

A rewrite answer mostly copies code the prompt already holds, which is what
llama-server's n-gram drafting (``--spec-type ngram-simple``: draft tokens
looked up in the context itself, no second model) is for.  Two servers with
the default embedded model run side by side, plain (A) and with n-gram
drafting (B); the same rewrite prompts (HumanEvalFix buggy functions, asked
for as the strategies ask) go to each in turn, A B A B, at temperature 0, so
machine noise hits both alike.  The figure is the ratio of median decode
rates and of median wall times, from one run; greedy drafting must not change
the answer, and the script counts answers that differ.

    python bench/speculative.py [--prompts 8] [--max-tokens 384] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

import httpx

from common import embedded_backend, headline, humanevalfix_rows, median, ratio, write

NGRAM = ("--spec-type", "ngram-simple")


def prompts(n: int) -> list[list[dict[str, str]]]:
    """Rewrite prompts shaped like the agent's: the failing check, the buggy
    function, and the request for its corrected definition in a code block."""
    out = []
    for row in humanevalfix_rows()[:: max(1, 164 // n)][:n]:
        code = row["declaration"] + row["buggy_solution"]
        user = (f"The test test_solution.py::test_check fails.\n\nThe code under test, solution.py, "
                f"`{row['entry_point']}`:\n```python\n{code.rstrip()}\n```\n\nFix the bug in the code under test; "
                f"never change the tests.\nWrite the complete corrected definition of `{row['entry_point']}` in one "
                "```python block (keep its name and signature; change only what the bug needs).")
        out.append([{"role": "system", "content": "You are an expert Python programmer who fixes bugs."},
                    {"role": "user", "content": user}])
    return out


async def one(http: httpx.AsyncClient, url: str, messages, max_tokens: int) -> dict:
    t0 = time.perf_counter()
    body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0, "cache_prompt": False}
    r = (await http.post(url, json=body)).json()
    t = r.get("timings") or {}
    return {"wall_s": time.perf_counter() - t0, "decode_tok_s": t.get("predicted_per_second"),
            "tokens": t.get("predicted_n"), "drafted": t.get("draft_n"), "accepted": t.get("draft_n_accepted"),
            "text": r["choices"][0]["message"]["content"]}


async def main(n: int, max_tokens: int, quick: bool) -> dict:
    asks = prompts(n)
    async with contextlib.AsyncExitStack() as stack:
        plain = await stack.enter_async_context(embedded_backend(embedded_model="coder-1.5b"))
        ngram = await stack.enter_async_context(embedded_backend(embedded_model="coder-1.5b", extra_args=NGRAM))
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=900, trust_env=False))
        urls = {"A_plain": plain.endpoint + "/chat/completions", "B_ngram": ngram.endpoint + "/chat/completions"}
        for url in urls.values():  # warm-up, not counted
            await one(http, url, asks[0], 8)
        rows: dict[str, list[dict]] = {k: [] for k in urls}
        for messages in asks:
            for side, url in urls.items():
                rows[side].append(await one(http, url, messages, max_tokens))
    med = {side: {"decode_tok_s": median([r["decode_tok_s"] for r in runs if r["decode_tok_s"]]),
                  "wall_s": median([r["wall_s"] for r in runs])} for side, runs in rows.items()}
    drafted = sum(r["drafted"] or 0 for r in rows["B_ngram"])
    accepted = sum(r["accepted"] or 0 for r in rows["B_ngram"])
    differ = sum(a["text"] != b["text"] for a, b in zip(rows["A_plain"], rows["B_ngram"]))
    speed = ratio(med["B_ngram"]["decode_tok_s"], med["A_plain"]["decode_tok_s"])
    wall = ratio(med["A_plain"]["wall_s"], med["B_ngram"]["wall_s"])
    return {"prompts": len(asks), "max_tokens": max_tokens, "flags": list(NGRAM), "medians": med,
            "draft_tokens": drafted, "draft_accepted": accepted,
            "acceptance": round(accepted / drafted, 3) if drafted else None, "answers_that_differ": differ,
            "runs": {k: [{x: r[x] for x in r if x != "text"} for r in v] for k, v in rows.items()},
            "headline": [
                headline("n-gram drafting / plain decode rate, rewrite answers (Qwen2.5-Coder-1.5B, 2 CPU cores)", speed, "x"),
                headline("plain / n-gram drafting wall time per answer", wall, "x"),
                headline("draft tokens accepted", f"{accepted}/{drafted}"),
            ]}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=384)
    p.add_argument("--quick", action="store_true", help="2 prompts, 48 tokens")
    a = p.parse_args()
    if a.quick:
        a.prompts, a.max_tokens = 2, 48
    res = asyncio.run(main(a.prompts, a.max_tokens, a.quick))
    print(f"decode tok/s plain {res['medians']['A_plain']['decode_tok_s']}, n-gram {res['medians']['B_ngram']['decode_tok_s']}; "
          f"accepted {res['draft_accepted']}/{res['draft_tokens']}; answers that differ: {res['answers_that_differ']}")
    print(f"-> {write('speculative', res, a.quick)}")
