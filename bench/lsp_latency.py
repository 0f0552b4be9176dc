"""Editor-facing latency of the language server, idle versus while an agent
task keeps the model busy.

A real LSP client (pygls's ``LanguageClient``) starts ``ornith-lsp serve``
over stdio with the embedded backend, runs the tests of a small generated
repo (``ornith.runTests``), then times three requests round trip:
``textDocument/codeAction`` and ``textDocument/hover`` on the failing test's
diagnostic (the hover shows the fix's status and plan), and
``workspace/executeCommand ornith.backendStatus`` (which also probes the
backend's ``/health``).  Idle: nothing else running.  Busy: a fix
started with ``ornith.fix`` is running (restarted whenever it ends) and
llama-server's ``/slots`` says the slot is processing before and after the
request.  Figures: p50 and p99 of each, and busy / idle.

``--queue N``: the editor fires many fixes at once instead.  A repository
with N failing tests, ``ornith.fixTests`` queues a fix for each (the queue
runs ``agent.concurrency`` at a time, 2 here), and hover and codeAction are
timed while the queue drains.  Every fix goes the whole way: plan, read,
edit, the agent's own test run in its shadow, then verification (the
guard's pristine worktree, a copied tree, grading in a fresh pytest), the
re-check against the workspace, and the verified fix offered -- so a
codeAction on a fixed test computes its WorkspaceEdit.  The model is the
ScriptedPolicyServer TEST DOUBLE (tests/policy_double.py, each conversation
replaying the same script, answering after 0.2 s): fifty real fixes with the
embedded model would take hours here, and what is measured is the server's
event loop, not the model.  A no-op request (a method the server does not
have, answered by pygls alone) is timed beside them: what slows it too is
the loop or the machine, not the handlers.  The server runs under
bench/loop_probe.py, which records every loop callback over 5 ms and splits
its time into the loop's own work (blocking), waiting for a core (other
processes: the fixes' test runs) and the rest (the GIL, the disk).
Figures: p50/p99 idle and while the queue runs, the queue's drain time,
tasks finished and verified, leftover worktrees, the slow callbacks.

    python bench/lsp_latency.py [--samples 300] [--quick]
    python bench/lsp_latency.py --queue 50 [--quick]      # --quick: at most 6 fixes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from lsprotocol import types
from pygls.lsp.client import LanguageClient

from common import SMALL_REPO, headline, make_repo, percentile, ratio, write

KINDS = ("codeAction", "hover", "backendStatus")


class Editor:
    """The client side: starts the server, remembers diagnostics and fixDone."""

    def __init__(self) -> None:
        self.client = LanguageClient("ornith-bench", "1")
        self.diagnostics: dict[str, list[Any]] = {}
        self.fix_done = asyncio.Event()

        @self.client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def _diagnostics(params: types.PublishDiagnosticsParams) -> None:
            self.diagnostics[params.uri] = list(params.diagnostics)

        @self.client.feature("ornith/fixDone")
        def _fix_done(params: Any) -> None:
            self.fix_done.set()

        for method in ("ornith/plan", "ornith/step", "ornith/tool", types.WINDOW_LOG_MESSAGE, types.WINDOW_SHOW_MESSAGE):
            self.client.feature(method)(lambda params: None)

    async def start(self, repo: Path, options: dict, probe: Path | None = None) -> None:
        if probe is None:
            await self.client.start_io(sys.executable, "-m", "ornith_lsp", "serve")
        else:
            await self.client.start_io(sys.executable, str(Path(__file__).with_name("loop_probe.py")), str(probe), "serve")
        server = self.client._server
        assert server is not None and server.stderr is not None
        self._drain = asyncio.create_task(self._read_all(server.stderr))
        await self.client.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities(), process_id=os.getpid(), root_uri=repo.as_uri(),
            initialization_options={"ornith": options}))
        self.client.initialized(types.InitializedParams())
        # raw JSON results: lsprotocol's client-side converter would read a CodeAction
        # that carries a command as a bare Command, which no editor does
        typed = self.client.protocol.get_result_type
        self.client.protocol.get_result_type = lambda m: None if m == types.TEXT_DOCUMENT_CODE_ACTION else typed(m)

    @staticmethod
    async def _read_all(stream: asyncio.StreamReader) -> None:
        """stderr is a pipe: keep it drained so the server can never block on it."""
        while await stream.read(65536):
            pass

    async def request(self, method: str, params: Any) -> Any:
        return await self.client.protocol.send_request_async(method, params)

    async def command(self, name: str, *args: Any) -> Any:
        return await self.request(types.WORKSPACE_EXECUTE_COMMAND,
                                  types.ExecuteCommandParams(command=name, arguments=list(args)))

    async def stop(self) -> None:
        server = self.client._server
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.request(types.SHUTDOWN, None), 60)
            self.client.protocol.notify(types.EXIT, None)
        if server is not None:
            try:
                await asyncio.wait_for(server.wait(), 30)
            except TimeoutError:
                server.kill()  # the process this benchmark started, by its handle
                await server.wait()
        self.client._stop_event.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.stop(), 10)


async def slot_busy(http: httpx.AsyncClient, root: str) -> bool:
    try:
        slots = (await http.get(f"{root}/slots", timeout=5)).json()
    except (httpx.HTTPError, ValueError):
        return False
    return any(s.get("is_processing") for s in slots if isinstance(s, dict))


def stats(samples: list[float]) -> dict:
    return {"n": len(samples), "p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99)}


async def main(samples: int, busy_limit_s: float, quick: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="ornith-lsp-latency-") as tmp:
        repo = make_repo(Path(tmp) / "repo", SMALL_REPO)
        options = {"backend": {"kind": "embedded"}, "log_dir": str(Path(tmp) / "logs"),
                   "client": {"read_timeout_s": 900},
                   "agent": {"max_turns": 60, "max_wall_s": 3600, "test_timeout_s": 120}}
        editor = Editor()
        llama_pid = None
        try:
            await editor.start(repo, options)
            deadline = time.monotonic() + 300
            while (status := await editor.command("ornith.backendStatus"))["state"] != "ready":
                if time.monotonic() > deadline:
                    raise SystemExit(f"the backend never became ready: {status}")
                await asyncio.sleep(0.2)
            llama_pid, root = status.get("pid"), status["endpoint"].removesuffix("/v1")
            summary = await editor.command("ornith.runTests")
            test_uri = (repo / "tests" / "test_cart.py").as_uri()
            diags = editor.diagnostics.get(test_uri) or []
            assert summary["failed"] == 1 and diags, (summary, editor.diagnostics)
            action_params = types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri=test_uri), range=diags[0].range,
                context=types.CodeActionContext(diagnostics=diags))
            hover_params = types.HoverParams(text_document=types.TextDocumentIdentifier(uri=test_uri),
                                             position=diags[0].range.start)
            actions = await editor.request(types.TEXT_DOCUMENT_CODE_ACTION, action_params)
            assert await editor.request(types.TEXT_DOCUMENT_HOVER, hover_params), "no hover on the failing test"
            fix_args = actions[0]["command"]["arguments"]

            async def timed(kind: str) -> float:
                t0 = time.perf_counter()
                if kind == "codeAction":
                    await editor.request(types.TEXT_DOCUMENT_CODE_ACTION, action_params)
                elif kind == "hover":
                    await editor.request(types.TEXT_DOCUMENT_HOVER, hover_params)
                else:
                    await editor.command("ornith.backendStatus")
                return (time.perf_counter() - t0) * 1000

            idle: dict[str, list[float]] = {k: [] for k in KINDS}
            busy: dict[str, list[float]] = {k: [] for k in KINDS}
            fix_running_model_idle: dict[str, list[float]] = {k: [] for k in KINDS}
            fixes_started = 0
            async with httpx.AsyncClient(trust_env=False) as http:
                for _ in range(3):  # warm-up, not counted
                    for kind in KINDS:
                        await timed(kind)
                for _ in range(samples):
                    for kind in KINDS:
                        idle[kind].append(await timed(kind))
                        await asyncio.sleep(0.01)
                editor.fix_done.clear()
                await editor.command("ornith.fix", *fix_args)
                fixes_started += 1
                end = time.monotonic() + busy_limit_s
                while min(len(v) for v in busy.values()) < samples and time.monotonic() < end:
                    if editor.fix_done.is_set():
                        editor.fix_done.clear()
                        await editor.command("ornith.fix", *fix_args)
                        fixes_started += 1
                    for kind in KINDS:
                        before = await slot_busy(http, root)
                        ms = await timed(kind)
                        after = await slot_busy(http, root)
                        (busy if before and after else fix_running_model_idle)[kind].append(ms)
                        await asyncio.sleep(0.01)
            await editor.command("ornith.cancel", fix_args[0]["id"])
        finally:
            await editor.stop()
            if llama_pid:  # the server reaps its backend; make sure, by the pid it reported
                for _ in range(50):
                    try:
                        os.kill(llama_pid, 0)
                    except ProcessLookupError:
                        break
                    await asyncio.sleep(0.2)
                else:
                    os.kill(llama_pid, signal.SIGKILL)

    result: dict[str, Any] = {
        "samples_per_kind": samples, "fixes_started": fixes_started,
        "idle": {k: stats(v) for k, v in idle.items()},
        "busy": {k: stats(v) for k, v in busy.items()},
        "fix_running_model_idle": {k: stats(v) for k, v in fix_running_model_idle.items()},
        "raw_ms": {"idle": idle, "busy": busy, "fix_running_model_idle": fix_running_model_idle},
    }
    result["ratio_busy_over_idle"] = {
        k: {"p50": ratio(result["busy"][k]["p50_ms"], result["idle"][k]["p50_ms"]),
            "p99": ratio(result["busy"][k]["p99_ms"], result["idle"][k]["p99_ms"])} for k in KINDS}
    result["headline"] = [
        headline(f"{k} p50 idle / busy (ms)", f"{_ms(result['idle'][k]['p50_ms'])} / {_ms(result['busy'][k]['p50_ms'])}")
        for k in KINDS] + [
        headline(f"{k} p99 busy / idle", result["ratio_busy_over_idle"][k]["p99"], "x") for k in KINDS]
    return result


def queue_repo(n: int) -> dict[str, str]:
    """N failing tests over one bug, each its own task."""
    tests = "".join(f"\n\ndef test_add_{k}():\n    assert add({k}, 1) == {k + 1}\n" for k in range(n))
    return {"calc.py": "def add(a, b):\n    return a - b\n",
            "test_calc.py": "from calc import add\n" + tests}


# One conversation, replayed by every fix: read, edit, the step's test run, finish (verification).
FIXING = [
    {"goal": "fix add", "strategy": "read, fix the operator, verify",
     "steps": [{"intent": "read calc.py", "tools": ["read_file"], "check": {"kind": "context_read", "description": ""}},
               {"intent": "fix add", "tools": ["edit", "run_tests"],
                "check": {"kind": "target_tests_pass", "description": ""}},
               {"intent": "finish", "tools": ["finish"], "check": {"kind": "target_tests_pass", "description": ""}}],
     "replan_when": [], "budget": {"turns": 12, "tokens": 20000}},
    {"thought": "look", "tool": "read_file", "path": "calc.py"},
    {"tool": "step_done"},
    {"tool": "edit", "path": "calc.py", "search": "return a - b", "replace": "return a + b"},
    {"tool": "step_done"},
    {"tool": "finish", "summary": "fixed the operator"},
]
QUEUE_KINDS = ("codeAction", "hover", "noop")


def probe_summary(path: Path, t0: float, t1: float) -> dict:
    """The probe's slow loop callbacks while the queue ran, summed by where they were."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"error": f"no probe record at {path}"}
    slow = [c for c in record["slow"] if t0 <= c["at_s"] <= t1]
    total = lambda key: round(sum(c.get(key, 0.0) for c in slow), 1)  # noqa: E731
    by_where: dict[str, dict] = {}
    for c in slow:
        key = c["where"][0]["stack"] if c["where"] else c["callback"]
        entry = by_where.setdefault(key, {"n": 0, "wall_ms": 0.0, "cpu_ms": 0.0, "max_ms": 0.0})
        entry["n"] += 1
        entry["wall_ms"] = round(entry["wall_ms"] + c["wall_ms"], 1)
        entry["cpu_ms"] = round(entry["cpu_ms"] + c["cpu_ms"], 1)
        entry["max_ms"] = max(entry["max_ms"], c["wall_ms"])
    top = sorted(by_where.items(), key=lambda kv: -kv[1]["wall_ms"])[:8]
    return {"threshold_ms": record["threshold_ms"], "slow_callbacks": len(slow),
            "wall_ms": total("wall_ms"), "cpu_ms": total("cpu_ms"), "runq_ms": total("runq_ms"),
            "other_ms": total("other_ms"), "gc_ms": total("gc_ms"), "max_ms": max((c["wall_ms"] for c in slow), default=0.0),
            "over_20ms": sum(1 for c in slow if c["wall_ms"] > 20),
            "over_20ms_cpu_bound": sum(1 for c in slow if c["wall_ms"] > 20 and c["cpu_ms"] > c["wall_ms"] / 2),
            "top": [{"where": k, **v} for k, v in top]}


async def queue_main(n: int, samples: int) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from policy_double import ScriptedPolicyServer

    with tempfile.TemporaryDirectory(prefix="ornith-lsp-queue-") as tmp, \
            ScriptedPolicyServer(FIXING, delay_s=0.2, per_conversation=True) as policy:
        repo = make_repo(Path(tmp) / "repo", queue_repo(n))
        probe = Path(tmp) / "probe.json"
        options = {"backend": {"kind": "remote", "endpoint": policy.url, "model": "scripted"},
                   "agent": {"max_turns": 12, "test_timeout_s": 60, "concurrency": 2, "queue_limit": max(n, 1)}}
        editor = Editor()
        try:
            await editor.start(repo, options, probe=probe)
            while (await editor.command("ornith.backendStatus"))["state"] != "ready":
                await asyncio.sleep(0.1)
            summary = await editor.command("ornith.runTests")
            test_uri = (repo / "test_calc.py").as_uri()
            diags = editor.diagnostics.get(test_uri) or []
            assert summary["failed"] == n and len(diags) == n, summary
            action_params = types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri=test_uri), range=diags[0].range,
                context=types.CodeActionContext(diagnostics=diags[:1]))
            hover_params = types.HoverParams(text_document=types.TextDocumentIdentifier(uri=test_uri),
                                             position=diags[0].range.start)

            async def timed(kind: str) -> float:
                t0 = time.perf_counter()
                if kind == "codeAction":
                    await editor.request(types.TEXT_DOCUMENT_CODE_ACTION, action_params)
                elif kind == "hover":
                    await editor.request(types.TEXT_DOCUMENT_HOVER, hover_params)
                else:  # no handler: pygls answers MethodNotFound straight from the loop
                    with contextlib.suppress(Exception):
                        await editor.request("ornith/noSuchMethod", None)
                return (time.perf_counter() - t0) * 1000

            idle: dict[str, list[float]] = {k: [] for k in QUEUE_KINDS}
            busy: dict[str, list[float]] = {k: [] for k in QUEUE_KINDS}
            for _ in range(samples):
                for kind in QUEUE_KINDS:
                    idle[kind].append(await timed(kind))
                    await asyncio.sleep(0.01)
            t0, wall0 = time.monotonic(), time.perf_counter()
            started = await editor.command("ornith.fixTests")
            queued_at_start = await editor.command("ornith.queue")
            peak_queued = queued_at_start["queued"]
            while True:
                q = await editor.command("ornith.queue")
                peak_queued = max(peak_queued, q["queued"])
                if q["running"] == 0 and q["queued"] == 0:
                    break
                for kind in QUEUE_KINDS:
                    busy[kind].append(await timed(kind))
                    await asyncio.sleep(0.01)
            drain_s = time.monotonic() - t0
            wall1 = time.perf_counter()
            tasks = await editor.command("ornith.tasks")
            offered = await editor.request(types.TEXT_DOCUMENT_CODE_ACTION, action_params)
        finally:
            await editor.stop()
        worktrees = subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True, text=True).stdout
        loop = probe_summary(probe, wall0, wall1)
    finished = sum(1 for t in tasks if t["status"] not in ("running", "queued"))
    result: dict[str, Any] = {
        "mode": "queue", "tasks": n, "concurrency": 2, "samples_idle_per_kind": samples,
        "started": len(started["started"]), "peak_queued": peak_queued, "finished": finished,
        "fixed": sum(1 for t in tasks if t["status"] == "fixed"),
        "apply_offered": any("apply verified fix" in (a.get("title") or "") for a in offered or []),
        "drain_s": round(drain_s, 1), "tasks_per_min": round(finished / drain_s * 60, 1) if drain_s else None,
        "worktrees_left": worktrees.count("\n") - 1,
        "idle": {k: stats(v) for k, v in idle.items()}, "queue_running": {k: stats(v) for k, v in busy.items()},
        "loop_probe": loop,
        "raw_ms": {"idle": idle, "queue_running": busy},
    }
    result["headline"] = [
        headline(f"{k} p99 while {n} fixes queue (ms)", round(result["queue_running"][k]["p99_ms"], 1), "ms") for k in QUEUE_KINDS
    ] + [headline(f"{n}-fix queue drained in (s)", result["drain_s"], "s"),
         headline("loop callbacks over 20 ms while the queue ran", loop.get("over_20ms"))]
    return result


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}"


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=300, help="per request kind, idle and busy")
    p.add_argument("--busy-limit-s", type=float, default=900, help="stop sampling the busy phase after this")
    p.add_argument("--quick", action="store_true", help="20 samples each, at most 60 s busy")
    p.add_argument("--queue", type=int, metavar="N", help="time requests while N queued fixes run (scripted model)")
    a = p.parse_args()
    if a.queue:
        n = min(a.queue, 6) if a.quick else a.queue
        result = asyncio.run(queue_main(n, 20 if a.quick else 100))
        path = write("lsp_queue_latency", result, a.quick)
        print(f"{n} fixes, concurrency 2: drained in {result['drain_s']} s, {result['finished']} finished "
              f"({result['fixed']} verified), peak {result['peak_queued']} queued, "
              f"{result['worktrees_left']} worktrees left")
        print(f"{'request':<12}{'phase':<14}{'n':>5}{'p50 ms':>10}{'p99 ms':>10}")
        for k in QUEUE_KINDS:
            for phase in ("idle", "queue_running"):
                st = result[phase][k]
                print(f"{k:<12}{phase:<14}{st['n']:>5}{_ms(st['p50_ms']):>10}{_ms(st['p99_ms']):>10}")
        lp = result["loop_probe"]
        if "error" not in lp:
            print(f"loop callbacks over {lp['threshold_ms']:g} ms while the queue ran: {lp['slow_callbacks']} "
                  f"(max {lp['max_ms']} ms, {lp['over_20ms']} over 20 ms, {lp['over_20ms_cpu_bound']} of them "
                  f"on the loop's own CPU); their time: {lp['cpu_ms']} ms loop CPU, {lp['runq_ms']} ms waiting "
                  f"for a core, {lp['other_ms']} ms other; {lp['gc_ms']} ms of it garbage collection")
            for t in lp["top"][:5]:
                print(f"  {t['n']:>4} x, {t['wall_ms']:>8} ms (cpu {t['cpu_ms']}), max {t['max_ms']}: {t['where'][:150]}")
        print(f"-> {path}")
        raise SystemExit(0)
    samples, limit = (20, 60) if a.quick else (a.samples, a.busy_limit_s)
    result = asyncio.run(main(samples, limit, a.quick))
    path = write("lsp_latency", result, a.quick)
    print(f"{'request':<16}{'phase':<8}{'n':>5}{'p50 ms':>10}{'p99 ms':>10}")
    for k in KINDS:
        for phase in ("idle", "busy"):
            s = result[phase][k]
            print(f"{k:<16}{phase:<8}{s['n']:>5}{_ms(s['p50_ms']):>10}{_ms(s['p99_ms']):>10}")
        r = result["ratio_busy_over_idle"][k]
        print(f"{'':<16}busy/idle  p50 {r['p50']}  p99 {r['p99']}")
    print(f"-> {path}")
