"""Throughput of N headless agent tasks in flight against one llama-server
with N parallel slots (``backend.parallel = N``), relative to N = 1.

The same batch of HumanEvalFix tasks (``--tasks``, default 4) is run for
every N, at most N at a time, each as ``ornith-lsp fix`` in its own process
against the shared server, with temperature 0 and a fixed turn budget, so
every N does about the same work.  Figures: tasks per minute and tokens
(prompt + completion, and completion alone) per second of wall time, each
divided by the N = 1 figure of the same run; medians over ``--runs``.

Each slot gets the model's full 8192-token context (``-c`` = 8192 x N):
llama-server splits ``-c`` between its slots, and the planner caps ``-c`` at
the model's trained context, which at N = 4 would leave 2048 tokens a slot,
less than one agent prompt.

    python bench/concurrency.py [--runs 3] [--tasks 4] [--turns 6] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from common import embedded_backend, headline, humanevalfix_project, humanevalfix_rows, make_repo, median, ratio, write
from fixrate import run_agent

SLOT_CONTEXT = 8192


async def batch(n: int, rows: list[dict], budgets: dict) -> dict:
    async with embedded_backend(parallel=n, context_per_slot=SLOT_CONTEXT) as backend:
        async with backend.client() as llm:  # warm-up on every slot (weights paged in), not timed
            await asyncio.gather(*(llm.complete([{"role": "user", "content": f"Say {i}."}], max_tokens=8)
                                   for i in range(n)))
        with tempfile.TemporaryDirectory(prefix="ornith-concurrency-") as tmp:
            repos = [make_repo(Path(tmp) / f"t{i}", humanevalfix_project(row)) for i, row in enumerate(rows)]
            gate = asyncio.Semaphore(n)

            async def one(repo: Path) -> dict:
                async with gate:
                    return await run_agent(repo, backend.endpoint, backend.plan.served_name, SLOT_CONTEXT, budgets,
                                           None, extra_env={"ORNITH_AGENT__TEMPERATURE": "0"})

            t0 = time.monotonic()
            records = await asyncio.gather(*(one(r) for r in repos))
            wall = time.monotonic() - t0
    prompt = sum(r.get("token_detail", {}).get("prompt", 0) for r in records)
    completion = sum(r.get("token_detail", {}).get("completion", 0) for r in records)
    return {
        "n": n, "wall_s": round(wall, 2), "tasks": len(records), "turns": sum(r["turns"] for r in records),
        "statuses": [r["status"] for r in records], "prompt_tokens": prompt, "completion_tokens": completion,
        "tasks_per_min": round(len(records) / wall * 60, 3),
        "tokens_per_s": round((prompt + completion) / wall, 2),
        "completion_tokens_per_s": round(completion / wall, 2),
    }


async def main(ns: list[int], runs: int, tasks: int, budgets: dict) -> dict:
    rows = humanevalfix_rows()[:tasks]
    per_run: list[dict[int, dict]] = []
    for r in range(runs):
        order = ns if r % 2 == 0 else list(reversed(ns))  # drift in machine load hits every N alike
        got = {}
        for n in order:
            got[n] = await batch(n, rows, budgets)
            b = got[n]
            print(f"  run {r + 1} N={n}: {b['wall_s']} s, {b['tasks_per_min']} tasks/min, "
                  f"{b['tokens_per_s']} tok/s, turns {b['turns']}, {b['statuses']}", flush=True)
        per_run.append(got)
    keys = ("tasks_per_min", "tokens_per_s", "completion_tokens_per_s")
    relative = {n: {k: median([ratio(run[n][k], run[ns[0]][k]) for run in per_run]) for k in keys} for n in ns}
    absolute = {n: {k: median([run[n][k] for run in per_run]) for k in (*keys, "wall_s", "turns")} for n in ns}
    return {
        "slots": ns, "runs": runs, "tasks_per_batch": tasks, "task_ids": [r["task_id"] for r in rows],
        "budgets": budgets, "context_per_slot": SLOT_CONTEXT, "temperature": 0,
        "relative_to_n1": {str(n): v for n, v in relative.items()},
        "medians": {str(n): v for n, v in absolute.items()},
        "headline": [headline(f"agent throughput with {n} slots / 1 slot (tokens/s; tasks/min)",
                              f"{relative[n]['tokens_per_s']}x; {relative[n]['tasks_per_min']}x") for n in ns[1:]],
        "per_run": [{str(n): b for n, b in run.items()} for run in per_run],
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--tasks", type=int, default=4, help="tasks in each batch (the same for every N)")
    p.add_argument("--turns", type=int, default=6)
    p.add_argument("--max-output-tokens", type=int, default=256)
    p.add_argument("--slots", default="1,2,4")
    p.add_argument("--quick", action="store_true", help="N = 1, 2; 2 tasks of 2 turns; one run")
    a = p.parse_args()
    ns = [int(x) for x in a.slots.split(",")]
    if a.quick:
        ns, a.runs, a.tasks, a.turns, a.max_output_tokens = [1, 2], 1, 2, 2, 64
    budgets = {"turns": a.turns, "output_tokens": a.max_output_tokens, "wall_s": 1800}
    res = asyncio.run(main(ns, a.runs, a.tasks, budgets))
    path = write("concurrency", res, a.quick)
    print(f"{'N':>3}{'tasks/min':>12}{'tok/s':>10}{'gen tok/s':>11}{'x tok/s':>9}{'x tasks':>9}")
    for n in ns:
        m, r = res["medians"][str(n)], res["relative_to_n1"][str(n)]
        print(f"{n:>3}{m['tasks_per_min']:>12}{m['tokens_per_s']:>10}{m['completion_tokens_per_s']:>11}"
              f"{r['tokens_per_s']:>9}{r['tasks_per_min']:>9}")
    print(f"-> {path}")
