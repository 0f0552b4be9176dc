"""How much of each turn's prompt the backend serves from its KV cache: the
agent loop's append-only conversation (A) versus the same loop with the
prompt rebuilt every turn (B), the usual harness habit.

A is ``ornith_lsp.agent.session.fix`` as shipped, on a small generated repo
with the embedded model and a fixed turn budget.  B is the very same call
with one difference in what reaches the server: a status header (turn
counter, tokens used so far, the last observation's first line) is put at
the top of the system prompt each turn, so the prefix changes and
llama-server can reuse almost nothing.  Per turn: prompt tokens, tokens
served from the cache, prefill time (``Report.turns``).  A and B alternate
against one llama-server; each figure is the median over the runs.

    python bench/kvcache.py [--runs 3] [--turns 8] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from common import SMALL_REPO, embedded_backend, failing_tasks, headline, make_repo, median, ratio, write
from ornith_lsp import settings as settings_mod
from ornith_lsp.agent.session import fix
from ornith_lsp.llm.client import ChatClient, Completion

READ_TIMEOUT_S = 900  # a loaded 2-core machine can be slow; this measures tokens, not latency


class RebuiltPrompt(ChatClient):
    """The baseline: what many harnesses send, a fresh system prompt per turn
    carrying the changing state first.  The loop itself is untouched; only the
    messages on the wire differ."""

    def __init__(self, *args, turns: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.turns, self.turn, self.used = turns, 0, 0

    async def complete(self, messages: list[dict], **kwargs) -> Completion:
        self.turn += 1
        last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        header = (f"Turn {self.turn} of {self.turns}. Tokens used so far: {self.used}.\n"
                  f"Last observation: {last.splitlines()[0][:120] if last else 'none'}\n\n")
        sent = [{**messages[0], "content": header + messages[0]["content"]}, *messages[1:]]
        done = await super().complete(sent, **kwargs)
        self.used += done.usage.prompt_tokens + done.usage.completion_tokens
        return done


def summarise(report) -> dict:
    turns = [t.model_dump(include={"n", "stage", "prompt_tokens", "cached_tokens", "completion_tokens", "prefill_ms"})
             for t in report.turns]
    later = turns[1:]
    return {
        "status": report.status,
        "turns": turns,
        "reused_fraction_after_first_turn": report.cache()["reused_fraction_after_first_turn"],
        "prefill_ms_after_first_turn": round(sum(t["prefill_ms"] or 0 for t in later), 1),
        "median_prefill_ms_per_turn_after_first": median([t["prefill_ms"] for t in later]),
        "uncached_tokens_after_first_turn": sum(t["prompt_tokens"] - t["cached_tokens"] for t in later),
    }


async def one(variant: str, backend, settings, turns: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="ornith-kvcache-") as tmp:
        repo = make_repo(Path(tmp) / "repo", SMALL_REPO)
        tasks, baseline = await failing_tasks(repo)
        c = settings.client
        args = (backend.endpoint, backend.plan.served_name)
        kwargs = {"flavor": "llamacpp", "connect_timeout": c.connect_timeout_s, "read_timeout": READ_TIMEOUT_S,
                  "max_retries": c.max_retries}
        llm = RebuiltPrompt(*args, turns=turns, **kwargs) if variant == "rebuilt" else ChatClient(*args, **kwargs)
        async with llm:
            result = await fix(tasks[0], root=repo, llm=llm, settings=settings,
                               context_length=backend.plan.context_length, baseline=baseline)
    return summarise(result.report)


async def main(runs: int, turns: int, output_tokens: int, quick: bool) -> dict:
    settings = settings_mod.load(None, cli={"agent": {"max_turns": turns, "max_output_tokens": output_tokens,
                                                      "temperature": 0, "test_timeout_s": 120, "max_wall_s": 3600}},
                                 environ={})
    rows: dict[str, list[dict]] = {"append_only": [], "rebuilt": []}
    async with embedded_backend() as backend:
        for _ in range(runs):
            for variant in rows:
                rows[variant].append(await one(variant, backend, settings, turns))
                r = rows[variant][-1]
                print(f"  {variant:<12} turns {len(r['turns'])}  reused {r['reused_fraction_after_first_turn']}  "
                      f"prefill after turn 1 {r['prefill_ms_after_first_turn']} ms")
        model = backend.plan.model_size
    frac = {v: median([r["reused_fraction_after_first_turn"] for r in rs]) for v, rs in rows.items()}
    per_turn = {v: median([r["median_prefill_ms_per_turn_after_first"] for r in rs]) for v, rs in rows.items()}
    per_run_ratio = [ratio(b["median_prefill_ms_per_turn_after_first"], a["median_prefill_ms_per_turn_after_first"])
                     for a, b in zip(rows["append_only"], rows["rebuilt"])]
    prefill_ratio = median(per_run_ratio)
    return {
        "model": model, "runs": runs, "max_turns": turns, "max_output_tokens": output_tokens,
        "baseline": "same loop and task; a status header (turn counter, tokens used, last observation) "
                    "prepended to the system prompt each turn, so the prompt prefix changes",
        "reused_fraction_after_first_turn": frac,
        "median_prefill_ms_per_turn_after_first": per_turn,
        "prefill_ratio_rebuilt_over_append_only": prefill_ratio,
        "prefill_ratio_per_run": per_run_ratio,
        "headline": [
            headline("KV-cache reuse, turns >= 2, append-only prompt (ornith)", frac["append_only"]),
            headline("KV-cache reuse, turns >= 2, prompt rebuilt each turn", frac["rebuilt"]),
            headline("prefill time per turn, rebuilt / append-only", prefill_ratio, "x"),
        ],
        "per_run": rows,
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--turns", type=int, default=8)
    p.add_argument("--max-output-tokens", type=int, default=256)
    p.add_argument("--quick", action="store_true", help="1 run of 2 turns, 64 output tokens: proves the script runs")
    a = p.parse_args()
    runs, turns, out = (1, 2, 64) if a.quick else (a.runs, a.turns, a.max_output_tokens)
    result = asyncio.run(main(runs, turns, out, a.quick))
    path = write("kvcache", result, a.quick)
    print(f"{'prompt':<14}{'reused (turns>=2)':>20}{'prefill ms/turn':>18}")
    for v in ("append_only", "rebuilt"):
        print(f"{v:<14}{result['reused_fraction_after_first_turn'][v]!s:>20}"
              f"{result['median_prefill_ms_per_turn_after_first'][v]!s:>18}")
    print(f"prefill per turn, rebuilt / append-only: {result['prefill_ratio_rebuilt_over_append_only']}  -> {path}")
