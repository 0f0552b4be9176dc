"""Nothing blocks the editor: while fixes run all the way through
verification, hover and codeAction are answered at once.

A real `ornith-lsp serve` over stdio, under bench/loop_probe.py (which times
every callback of the server's event loop); the model is the
ScriptedPolicyServer TEST DOUBLE, every conversation replaying one fixing
script, so each fix reads, edits, runs its test in its shadow, and is
verified by the guard (pristine worktree, copied tree, a fresh pytest) and
re-checked before it is offered.  Hover, codeAction and a no-op request are
timed meanwhile.

Two assertions, one loose and one strict: request p99 under 200 ms (the
target is 20 ms, measured by bench/lsp_latency.py --queue; CI machines run
other tests beside this one, and that contention is not the server's doing),
and no event-loop callback that spends more than 50 ms of the loop's own CPU
-- blocking work on the loop, which no amount of contention explains.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from agent_repos import git, make_repo
from lsp_wire import Wire
from policy_double import ScriptedPolicyServer
from test_interruption import FIXING, worktrees

PROBE = Path(__file__).resolve().parents[1] / "bench" / "loop_probe.py"
N = 4
P99_LIMIT_MS = 200.0
LOOP_CPU_LIMIT_MS = 50.0


def calc_repo(n: int) -> dict[str, str]:
    """N failing tests over one bug in calc.py, each its own task."""
    tests = "".join(f"\n\ndef test_add_{k}():\n    assert add({k}, 1) == {k + 1}\n" for k in range(n))
    return {"calc.py": "def add(a, b):\n    return a - b\n", "test_calc.py": "from calc import add\n" + tests}


def command(wire: Wire, name: str, *args) -> dict:
    reply = wire.request("workspace/executeCommand", {"command": name, "arguments": list(args)}, timeout=120)
    assert "result" in reply, reply
    return reply["result"]


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, -(-99 * len(ordered) // 100) - 1)]


def test_hover_and_code_action_stay_fast_while_fixes_are_verified(tmp_path):
    repo = make_repo(tmp_path / "repo", calc_repo(N))
    probe = tmp_path / "probe.json"
    with ScriptedPolicyServer(FIXING, delay_s=0.1, per_conversation=True) as policy:
        proc = subprocess.Popen([sys.executable, str(PROBE), str(probe), "serve"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=dict(os.environ))
        try:
            wire = Wire(proc)
            wire.initialize(repo.as_uri(), {"backend": {"kind": "remote", "endpoint": policy.url, "model": "scripted"},
                                            "agent": {"test_timeout_s": 60, "concurrency": 2, "queue_limit": N}})
            assert wire.wait_backend("ready")["state"] == "ready"
            assert command(wire, "ornith.runTests")["failed"] == N
            uri = (repo / "test_calc.py").as_uri()
            diags = [m["params"]["diagnostics"] for m in wire.notifications
                     if m["method"] == "textDocument/publishDiagnostics" and m["params"]["uri"] == uri][-1]
            assert len(diags) == N
            requests = {
                "codeAction": ("textDocument/codeAction", {
                    "textDocument": {"uri": uri}, "range": diags[0]["range"], "context": {"diagnostics": diags[:1]}}),
                "hover": ("textDocument/hover", {"textDocument": {"uri": uri}, "position": diags[0]["range"]["start"]}),
                "noop": ("ornith/noSuchMethod", None),  # answered by pygls alone: the loop, not a handler
            }
            started = command(wire, "ornith.fixTests")["started"]
            assert len(started) == N
            samples: dict[str, list[float]] = {k: [] for k in requests}
            t0 = time.perf_counter()
            while True:
                queue = command(wire, "ornith.queue")
                if queue["running"] == 0 and queue["queued"] == 0:
                    break
                assert time.perf_counter() - t0 < 240, f"the fixes did not finish: {queue}"
                for kind, (method, params) in requests.items():
                    sent = time.perf_counter()
                    wire.request(method, params)
                    samples[kind].append((time.perf_counter() - sent) * 1000)
                    time.sleep(0.01)
            t1 = time.perf_counter()
            tasks = command(wire, "ornith.tasks")
            offered = wire.request(*requests["codeAction"])["result"]
            wire.request("shutdown")
            wire.send({"jsonrpc": "2.0", "method": "exit"})
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert sorted(t["status"] for t in tasks) == ["fixed"] * N, tasks  # every fix went through verification
    assert any(a["title"].startswith("Ornith: apply verified fix") for a in offered), offered
    assert worktrees(repo) == [str(repo)] and git(repo, "worktree", "list").count("\n") == 1

    assert min(len(v) for v in samples.values()) >= 10, samples
    worst = {k: round(p99(v), 1) for k, v in samples.items()}
    assert max(worst.values()) < P99_LIMIT_MS, f"p99 (ms) while {N} fixes ran: {worst}"
    slow = [c for c in json.loads(probe.read_text())["slow"] if t0 <= c["at_s"] <= t1]
    blocking = [c for c in slow if c["cpu_ms"] > LOOP_CPU_LIMIT_MS]
    assert not blocking, json.dumps(blocking, indent=1)[:3000]
