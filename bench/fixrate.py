"""Fix rate on HumanEvalFix: the headless agent (``ornith-lsp fix``) versus a
one-shot prompt to the same model.

Each task becomes a tiny pytest git project: ``solution.py`` (prompt + buggy
solution) and ``test_solution.py`` (imports it, calls ``check``); the
canonical solution never enters the workspace.

Agent: ``python -m ornith_lsp fix PROJECT --format json`` against the model
server as a remote endpoint, with its whole scaffold, tools and guard; a
task counts as fixed when the report says ``fixed`` (verified by the guard).
Veto events are the ``finish`` turns the guard blocked, split into those
blocked by a rule (monitors, boundary) and those whose only finding was that
the target test still failed in grading.

One-shot: one request to the same server, same sampling and the same kind
of constrained decoding (the JSON schema ``{"code": str}``): the failing
test's source and its failure, and ``solution.py``; the answer replaces
``solution.py`` and the test is run.  No tools, no retries, no scaffold.
Its passing answers also go through the same guard, to count what it would
have vetoed.

Default: the embedded backend.  ``--endpoint URL --model NAME`` runs against
any OpenAI-compatible server (``--api-key-env NAME`` for a key).

    python bench/fixrate.py [--limit N] [--stride K] [--turns 12] [--endpoint URL --model NAME] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (HUMANEVALFIX, embedded_backend, failing_tasks, git, headline, humanevalfix_project,
                    humanevalfix_rows, make_repo, median, write)
from ornith_lsp.agent.edits import code_blocks
from ornith_lsp.guard.check import acheck_diff
from ornith_lsp.guard.verdict import GuardError
from ornith_lsp.llm.client import ChatClient, LLMError
from ornith_lsp.tasks.pytest_report import run_tests

TARGET = "test_solution.py::test_check"
CODE_SCHEMA = {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}
ONE_SHOT_SYSTEM = "You fix bugs in Python code. Answer with one JSON object: {\"code\": \"<the complete fixed file>\"}."
ONE_SHOT_TEXT_SYSTEM = "You are an expert Python programmer who fixes bugs."
ONE_SHOT_USER = """This test fails:

test_solution.py:
```python
{test}
```

Failure:
{failure}

solution.py:
```python
{solution}
```

Fix the bug in solution.py (never the test). {ask}"""
ASK_JSON = 'Answer with the complete corrected solution.py as {"code": "..."}.'
ASK_TEXT = "Answer with the complete corrected solution.py in one ```python block."
READ_TIMEOUT_S = 900


def _monitors(outcome: str) -> list[str]:
    return re.findall(r"^- \[([^\]]+)\]", outcome, re.M)


def agent_summary(record: dict[str, Any]) -> dict[str, Any]:
    vetoes = [_monitors(s["outcome"]) for s in record["steps"]
              if s.get("tool") == "finish" and s["outcome"].startswith("The guard blocked")]
    vetoes += [["candidate"] for c in record.get("candidates", []) if c["outcome"].startswith("vetoed")]
    return {
        "status": record["status"], "reason": record["reason"][:300], "turns": len(record["steps"]),
        "tokens": record["tokens"]["prompt"] + record["tokens"]["completion"], "token_detail": record["tokens"],
        "reused_fraction_after_first_turn": record["cache"]["reused_fraction_after_first_turn"],
        "agent_wall_s": record["timings"]["wall_s"],
        "decode_tok_s": record["timings"].get("decode_tok_s"),
        "strategy": record.get("strategy"), "strategy_chosen_by": record.get("strategy_chosen_by"),
        "strategies_run": record.get("strategies_run"), "tool_call_mode": record.get("tool_call_mode"),
        "edit_format": record.get("edit_format"), "focus": record.get("focus"),
        "candidates": [c["outcome"][:120] for c in record.get("candidates", [])],
        "vetoes_by_rule": sum(1 for m in vetoes if set(m) - {"grading"}),
        "vetoes_grading_only": sum(1 for m in vetoes if m and not set(m) - {"grading"}),
        "veto_monitors": sorted({x for m in vetoes for x in m}),
    }


async def run_agent(repo: Path, endpoint: str, model: str, context: int, budgets: dict[str, Any],
                    api_key_env: str | None, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """``ornith-lsp fix`` on ``repo`` in a subprocess, as a CI job runs it."""
    env = {**os.environ, **(extra_env or {}), "ORNITH_AGENT__MAX_TURNS": str(budgets["turns"]),
           "ORNITH_AGENT__MAX_OUTPUT_TOKENS": str(budgets["output_tokens"]),
           "ORNITH_AGENT__MAX_WALL_S": str(budgets["wall_s"]), "ORNITH_AGENT__TEST_TIMEOUT_S": "60",
           "ORNITH_CLIENT__READ_TIMEOUT_S": str(READ_TIMEOUT_S)}
    argv = [sys.executable, "-m", "ornith_lsp", "fix", str(repo), "--format", "json", "--max-tasks", "1",
            "--backend", "remote", "--endpoint", endpoint, "--model", model, "--context-length", str(context),
            "--root", str(repo)]
    if api_key_env:
        argv += ["--api-key-env", api_key_env]
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(*argv, env=env, cwd=str(repo), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    wall = time.monotonic() - t0
    try:
        report = json.loads(out)
        record = report["tasks"][0]
    except (ValueError, KeyError, IndexError):
        tail = (err.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        return {"status": "error", "reason": f"ornith-lsp fix exited {proc.returncode}: {tail}"[:300],
                "wall_s": round(wall, 2), "tokens": 0, "turns": 0, "vetoes_by_rule": 0, "vetoes_grading_only": 0}
    return {**agent_summary(record), "wall_s": round(wall, 2)}


async def run_one_shot(repo: Path, llm: ChatClient, task, budgets: dict[str, Any], mode: str = "json") -> dict[str, Any]:
    """One request, no tools, no retries: ``json`` answers under the schema
    ``{"code": str}``, ``text`` answers with a fenced code block."""
    prompt = ONE_SHOT_USER.format(test=(repo / "test_solution.py").read_text(),
                                  failure=f"{task.message}\n{task.traceback or ''}".strip()[-2000:],
                                  solution=(repo / "solution.py").read_text(),
                                  ask=ASK_JSON if mode == "json" else ASK_TEXT)
    system = ONE_SHOT_SYSTEM if mode == "json" else ONE_SHOT_TEXT_SYSTEM
    t0 = time.monotonic()
    try:
        done = await llm.complete([{"role": "system", "content": system}, {"role": "user", "content": prompt}],
                                  json_schema=CODE_SCHEMA if mode == "json" else None,
                                  max_tokens=budgets["one_shot_tokens"], temperature=budgets["one_shot_temperature"])
    except LLMError as exc:
        return {"status": "error", "reason": str(exc)[:300], "wall_s": round(time.monotonic() - t0, 2), "tokens": 0}
    tokens = done.usage.prompt_tokens + done.usage.completion_tokens
    try:
        if mode == "json":
            code = json.loads(done.text)["code"]
        else:
            blocks = [b for b in code_blocks(done.text) if b.strip()]
            code = max(blocks, key=len) if blocks else None
        if not isinstance(code, str):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        return {"status": "unparsable", "reason": f"no code in the answer (finish: {done.finish_reason})",
                "wall_s": round(time.monotonic() - t0, 2), "tokens": tokens}
    original = (repo / "solution.py").read_text()
    (repo / "solution.py").write_text(code)
    try:
        run = await run_tests(repo, node_ids=[TARGET], timeout_s=60)
        diff = git(repo, "diff", "--no-color", "--full-index", "--src-prefix=a/", "--dst-prefix=b/")
    finally:
        (repo / "solution.py").write_text(original)
    passed = run.report_found and not run.failures and any(r.outcome == "passed" for r in run.results)
    result = {"status": "fixed" if passed else "unfixed", "wall_s": round(time.monotonic() - t0, 2), "tokens": tokens,
              "reason": "test passed" if passed else ((run.failures[0].message if run.failures else run.output[-200:]) or "")[:300]}
    if passed and diff.strip():
        try:
            verdict = await acheck_diff(repo, diff, {"kind": "test", "tests": [TARGET]}, timeout_s=60)
            result["guard_allowed"] = verdict.allowed
            result["guard_monitors"] = sorted({f.monitor for f in verdict.findings})
        except GuardError as exc:
            result["guard_allowed"] = None
            result["guard_error"] = str(exc)[:300]
    return result


def _one_shot_summary(one: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "fixed": sum(o["status"] == "fixed" for o in one),
        "fixed_and_guard_allowed": sum(o["status"] == "fixed" and o.get("guard_allowed") is True for o in one),
        "passed_but_vetoed_by_guard": sum(o["status"] == "fixed" and o.get("guard_allowed") is False for o in one),
        "unparsable": sum(o["status"] == "unparsable" for o in one),
        "median_tokens_per_task": median([o["tokens"] for o in one]),
        "median_wall_s_per_task": median([o["wall_s"] for o in one]),
        "total_wall_s": round(sum(o["wall_s"] for o in one), 1),
    }


def aggregate(records: list[dict[str, Any]]) -> dict[str, Any]:
    agent = [r["agent"] for r in records]
    total = len(records)
    shots = {mode: _one_shot_summary([r[key] for r in records if key in r])
             for mode, key in (("json", "one_shot"), ("text", "one_shot_text")) if any(key in r for r in records)}
    best = max((v["fixed"] for v in shots.values()), default=0)
    fixed = sum(a["status"] == "fixed" for a in agent)
    strategies = [a.get("strategy") for a in agent if a.get("strategy")]
    return {
        "total": total,
        "agent": {
            "fixed": fixed,
            "status_counts": {s: sum(a["status"] == s for a in agent) for s in sorted({a["status"] for a in agent})},
            "strategy_counts": {s: strategies.count(s) for s in sorted(set(strategies))},
            "tasks_with_a_veto_by_rule": sum(a.get("vetoes_by_rule", 0) > 0 for a in agent),
            "veto_events_by_rule": sum(a.get("vetoes_by_rule", 0) for a in agent),
            "veto_events_grading_only": sum(a.get("vetoes_grading_only", 0) for a in agent),
            "median_tokens_per_task": median([a["tokens"] for a in agent]),
            "median_wall_s_per_task": median([a["wall_s"] for a in agent]),
            "median_wall_s_per_fixed_task": median([a["wall_s"] for a in agent if a["status"] == "fixed"]),
            "median_turns_per_task": median([a["turns"] for a in agent]),
            "median_decode_tok_s": median([a["decode_tok_s"] for a in agent if a.get("decode_tok_s")]),
            "total_wall_s": round(sum(a["wall_s"] for a in agent), 1),
        },
        "one_shot": shots.get("json", _one_shot_summary([])),
        "one_shot_text": shots.get("text", _one_shot_summary([])),
        "ratio_agent_to_best_one_shot": round(fixed / best, 3) if best else None,
    }


def result_of(records: list[dict[str, Any]], meta: dict[str, Any], complete: bool) -> dict[str, Any]:
    """The published record: measured tasks aggregated, skipped ones listed."""
    skipped = [r for r in records if "skipped" in r]
    records = [r for r in records if "agent" in r]
    agg = aggregate(records)
    a, o, t, n = agg["agent"], agg["one_shot"], agg["one_shot_text"], agg["total"]
    sample = f", every {meta['stride']}th task" if meta.get("stride", 1) > 1 else ""
    return {**meta, "complete": complete, **agg, "skipped": skipped, "headline": [
        headline(f"HumanEvalFix fixed, agent ({meta['model']}{sample})", f"{a['fixed']}/{n}"),
        headline(f"HumanEvalFix fixed, one-shot, JSON under a schema ({meta['model']}{sample})", f"{o['fixed']}/{n}"),
        headline(f"HumanEvalFix fixed, one-shot, fenced code block ({meta['model']}{sample})", f"{t['fixed']}/{n}"),
        headline("agent / best one-shot", f"{agg['ratio_agent_to_best_one_shot']}"),
        headline("guard vetoes of agent fixes (rule findings; tasks)", f"{a['veto_events_by_rule']} ({a['tasks_with_a_veto_by_rule']})"),
        headline("median wall per task, agent (all / fixed)", f"{a['median_wall_s_per_task']} s / {a['median_wall_s_per_fixed_task']} s"),
        headline("median tokens / wall per task, one-shot (JSON)", f"{o['median_tokens_per_task']} / {o['median_wall_s_per_task']} s"),
    ], "tasks": records}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    rows = humanevalfix_rows()[args.offset:: args.stride][: args.limit]
    budgets = {"turns": args.turns, "output_tokens": args.max_output_tokens, "wall_s": args.max_wall_s,
               "one_shot_tokens": args.one_shot_tokens, "one_shot_temperature": 0.0,
               "strategy": args.strategy, "edit_format": args.edit_format, "candidates": args.candidates}
    async with contextlib.AsyncExitStack() as stack:
        if args.endpoint:
            endpoint, model, flavor, context = args.endpoint, args.model, "openai", args.context_length
            label, model_class = model, args.model_class
        else:
            backend = await stack.enter_async_context(embedded_backend(embedded_model=args.embedded_model))
            endpoint, model, flavor = backend.endpoint, backend.plan.served_name, "llamacpp"
            context, label = backend.plan.context_length, f"{backend.plan.model_size} (embedded)"
            # the agent reaches the embedded server as an endpoint; it is still the small embedded model
            model_class = args.model_class if args.model_class != "auto" else "small"
        api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
        llm = await stack.enter_async_context(ChatClient(endpoint, model, api_key=api_key, flavor=flavor,
                                                         read_timeout=READ_TIMEOUT_S))
        meta = {"model": label, "endpoint": "embedded" if not args.endpoint else endpoint, "budgets": budgets,
                "model_class": model_class, "data": str(HUMANEVALFIX), "stride": args.stride,
                "offset": args.offset, "limit": args.limit}
        agent_env = {"ORNITH_AGENT__STRATEGY": args.strategy, "ORNITH_AGENT__EDIT_FORMAT": args.edit_format,
                     "ORNITH_AGENT__CANDIDATES": str(args.candidates), "ORNITH_AGENT__MODEL_CLASS": model_class}
        records: list[dict[str, Any]] = []
        for n, row in enumerate(rows, 1):
            with tempfile.TemporaryDirectory(prefix="ornith-fixrate-") as tmp:
                repo = make_repo(Path(tmp) / "task", humanevalfix_project(row))
                tasks, passed = await failing_tasks(repo, timeout_s=60)
                if not tasks:
                    why = "the buggy solution passed its test here" if passed else "its test run gave no result here"
                    records.append({"task_id": row["task_id"], "skipped": why})
                    print(f"[{n}/{len(rows)}] {row['task_id']:<12} skipped: {why}", flush=True)
                    continue
                record: dict[str, Any] = {"task_id": row["task_id"], "bug_type": row.get("bug_type")}
                if not args.no_one_shot:
                    record["one_shot"] = await run_one_shot(repo, llm, tasks[0], budgets, "json")
                    record["one_shot_text"] = await run_one_shot(repo, llm, tasks[0], budgets, "text")
                record["agent"] = agent = await run_agent(repo, endpoint, model, context, budgets, args.api_key_env,
                                                          agent_env)
            records.append(record)
            shots = " ".join(f"{k.replace('one_shot', '1shot')} {record[k]['status']:<10}"
                             for k in ("one_shot", "one_shot_text") if k in record)
            print(f"[{n}/{len(rows)}] {row['task_id']:<12} agent {agent['status']:<8} {agent.get('strategy') or '':<18} "
                  f"{agent['wall_s']:>6.1f} s | {shots}", flush=True)
            if not args.quick:  # a long run keeps what it has measured so far
                write(args.name, result_of(records, meta, complete=False), False)
    return result_of(records, meta, complete=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=None, help="the first N tasks (default: all 164)")
    p.add_argument("--stride", type=int, default=1,
                   help="every K-th task, so a shorter run still spans the whole suite's bug types")
    p.add_argument("--offset", type=int, default=0, help="start at this task (with --stride: another sample)")
    p.add_argument("--turns", type=int, default=12, help="agent turn budget per task")
    p.add_argument("--strategy", default="auto", help="agent.strategy (auto, model-plan, sample-and-verify, ...)")
    p.add_argument("--edit-format", default="auto", help="agent.edit_format (auto, symbol, file, search-replace)")
    p.add_argument("--candidates", type=int, default=5, help="agent.candidates: fixes sampled and verified")
    p.add_argument("--model-class", default="auto", help="agent.model_class (auto: small for the embedded model)")
    p.add_argument("--embedded-model", default="coder-1.5b", help="coder-1.5b (default) or tiny")
    p.add_argument("--no-one-shot", action="store_true", help="measure only the agent")
    p.add_argument("--name", default="fixrate", help="results file name under bench/results/")
    p.add_argument("--max-output-tokens", type=int, default=512, help="agent, per model call")
    p.add_argument("--max-wall-s", type=float, default=600, help="agent, per task")
    p.add_argument("--one-shot-tokens", type=int, default=1024)
    p.add_argument("--endpoint", help="an OpenAI-compatible server (default: the embedded backend)")
    p.add_argument("--model", help="the model name to send (with --endpoint)")
    p.add_argument("--api-key-env", help="NAME of the environment variable holding the endpoint's key")
    p.add_argument("--context-length", type=int, default=8192, help="with --endpoint")
    p.add_argument("--quick", action="store_true", help="2 tasks, 2 turns, 2 candidates, tiny budgets, the tiny model")
    a = p.parse_args()
    if a.endpoint and not a.model:
        p.error("--endpoint needs --model")
    if a.quick:
        a.limit, a.turns, a.max_output_tokens, a.one_shot_tokens, a.max_wall_s = 2, 2, 64, 128, 300
        a.candidates, a.embedded_model = 2, a.embedded_model if "--embedded-model" in sys.argv else "tiny"
    res = asyncio.run(main(a))
    path = write(a.name, res, a.quick)
    ag, js, tx = res["agent"], res["one_shot"], res["one_shot_text"]
    print(f"{'':<16}{'fixed':>10}{'tok/task':>10}{'s/task':>8}")
    print(f"{'agent':<16}{ag['fixed']:>6}/{res['total']:<3}{ag['median_tokens_per_task']!s:>10}{ag['median_wall_s_per_task']!s:>8}")
    print(f"{'one-shot json':<16}{js['fixed']:>6}/{res['total']:<3}{js['median_tokens_per_task']!s:>10}{js['median_wall_s_per_task']!s:>8}")
    print(f"{'one-shot text':<16}{tx['fixed']:>6}/{res['total']:<3}{tx['median_tokens_per_task']!s:>10}{tx['median_wall_s_per_task']!s:>8}")
    print(f"agent / best one-shot: {res['ratio_agent_to_best_one_shot']}; strategies: {ag['strategy_counts']}")
    print(f"guard: {ag['veto_events_by_rule']} agent candidate(s) vetoed by a rule in {ag['tasks_with_a_veto_by_rule']} task(s); "
          f"one-shot passes it would veto: {js['passed_but_vetoed_by_guard']} (json), {tx['passed_but_vetoed_by_guard']} (text)")
    print(f"-> {path}")
