"""A long editor session: many fixes through one language server, and what it
costs in memory and leftovers.

A real ``ornith-lsp serve`` over stdio (raw JSON-RPC, tests/lsp_wire.py)
fixes the same bug again and again: each task is a real fix -- shadow
worktree, pytest in the shadow, the guard's pristine run -- with the model
played by the ScriptedPolicyServer TEST DOUBLE (tests/policy_double.py), one
fix at a time so its script stays in order.  The server's resident memory
(VmRSS) is read after a warm-up and at the end; the growth per task is the
figure.  Also counted at the end: open file descriptors, child processes
(still alive after a settling wait),
worktrees still registered, refs under refs/ornith/.

    python bench/soak.py [--tasks 200] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

from common import headline, make_repo, write  # noqa: E402
from lsp_wire import Wire  # noqa: E402
from policy_double import ScriptedPolicyServer  # noqa: E402
from test_agent_scripted import CALC, FINISH, GOOD_EDIT, PLAN, READ, STEP_DONE  # noqa: E402

FIXING = [PLAN, READ, STEP_DONE, GOOD_EDIT, STEP_DONE, FINISH]
WARM_UP = 10


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def settled_children(pid: int, wait_s: float = 10.0) -> list[int]:
    """Children still alive once the server has had time to finish its
    housekeeping: after ``ornith/fixDone`` it prunes checkpoint refs with a
    short-lived ``git``, which is work, not a leak.  A leaked process outlives
    the wait."""
    deadline = time.monotonic() + wait_s
    kids = children(pid)
    while kids and time.monotonic() < deadline:
        time.sleep(0.2)
        kids = children(pid)
    return kids


def task(n: int) -> dict:
    return {"source": "test", "title": f"fix test_add (round {n})", "message": f"assert -1 == 5 (round {n})",
            "test_id": "test_calc.py::test_add", "location": {"path": "calc.py", "line": 2}}


def run(tasks: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="ornith-soak-") as tmp, ScriptedPolicyServer(FIXING * tasks) as policy:
        repo = make_repo(Path(tmp) / "repo", CALC)
        env = {**os.environ, "TMPDIR": tmp}
        proc = subprocess.Popen([sys.executable, "-m", "ornith_lsp", "serve"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        wire = Wire(proc)
        statuses: dict[str, int] = {}
        samples: list[tuple[int, int]] = []
        t0 = time.monotonic()
        try:
            wire.initialize(repo.as_uri(), {"backend": {"kind": "remote", "endpoint": policy.url, "model": "scripted"},
                                            "agent": {"test_timeout_s": 60, "concurrency": 1}})
            while wire.backend_status()["state"] != "ready":
                time.sleep(0.1)
            for n in range(tasks):
                wire.notifications.clear()
                started = wire.request("workspace/executeCommand", {"command": "ornith.fix", "arguments": [task(n)]})
                assert started["result"]["status"] in ("started", "queued"), started
                while True:
                    done = [m for m in wire.notifications if m["method"] == "ornith/fixDone"]
                    if done:
                        break
                    wire.notifications.append(wire.recv(120))
                status = done[0]["params"]["status"]
                statuses[status] = statuses.get(status, 0) + 1
                if n + 1 == WARM_UP or n + 1 == tasks or (n + 1) % 25 == 0:
                    samples.append((n + 1, rss_kib(proc.pid)))
            elapsed = time.monotonic() - t0
            fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
            kids = settled_children(proc.pid)
            wire.request("shutdown")
            wire.send({"jsonrpc": "2.0", "method": "exit"})
            code = proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()  # the server this script started, by its handle
                proc.wait()
        worktrees = subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True, text=True).stdout
        refs = subprocess.run(["git", "for-each-ref", "refs/ornith/"], cwd=repo, capture_output=True, text=True).stdout
        shadows = [p.name for p in Path(tmp).iterdir() if p.name.startswith(("ornith-shadow-", "ornith-base-"))]
    warm = next(kib for n, kib in samples if n >= min(WARM_UP, tasks))
    end = samples[-1][1]
    per_task = (end - warm) / max(1, tasks - min(WARM_UP, tasks))
    return {
        "tasks": tasks, "statuses": statuses, "wall_s": round(elapsed, 1),
        "rss_kib": [{"after_tasks": n, "rss_kib": kib} for n, kib in samples],
        "rss_growth_kib": end - warm, "rss_growth_kib_per_task": round(per_task, 2),
        "open_fds_at_end": fds, "child_processes_at_end": len(kids), "exit_code": code,
        "worktrees_left": worktrees.count("\n") - 1, "shadow_dirs_left": len(shadows),
        "refs_under_refs_ornith": refs.count("\n"),
        "headline": [headline(f"server RSS growth over {tasks} fixes (after {WARM_UP} warm-up)", end - warm, "KiB"),
                     headline("worktrees / processes left", f"{worktrees.count(chr(10)) - 1} / {len(kids)}")],
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--quick", action="store_true", help="15 tasks")
    a = p.parse_args()
    result = run(15 if a.quick else a.tasks)
    path = write("soak", result, a.quick)
    print(f"{result['tasks']} fixes in {result['wall_s']} s: {result['statuses']}")
    print("RSS (KiB): " + ", ".join(f"{s['after_tasks']}: {s['rss_kib']}" for s in result["rss_kib"]))
    print(f"growth after warm-up: {result['rss_growth_kib']} KiB ({result['rss_growth_kib_per_task']} KiB/task); "
          f"fds {result['open_fds_at_end']}, children {result['child_processes_at_end']}, "
          f"worktrees left {result['worktrees_left']}, shadow dirs left {result['shadow_dirs_left']}, "
          f"refs/ornith {result['refs_under_refs_ornith']}")
    print(f"-> {path}")
