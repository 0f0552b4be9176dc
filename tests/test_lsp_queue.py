"""Many fixes at once: a bounded queue, progress per task, cancel-all.  A real
`ornith-lsp serve` over stdio, the ScriptedPolicyServer TEST DOUBLE as the
model, real shadows and test runs (a test that hangs in a shadow keeps the
running fix busy for as long as the test needs)."""

from __future__ import annotations

import os
import subprocess
import sys

from agent_repos import git, make_repo
from conftest import alive, wait_until
from lsp_wire import Wire
from policy_double import ScriptedPolicyServer
from test_interruption import FIXING, HANGING, ornith_dirs, worktrees

N = 4


def task(n: int) -> dict:
    return {"source": "test", "title": f"fix test_add #{n}", "message": "assert -1 == 5",
            "test_id": "test_calc.py::test_add", "location": {"path": "calc.py", "line": 2 + n}}


def command(wire: Wire, name: str, *args) -> dict:
    reply = wire.request("workspace/executeCommand", {"command": name, "arguments": list(args)})
    assert "result" in reply, reply
    return reply["result"]


def test_a_bounded_queue_with_progress_and_cancel_all(tmp_path):
    repo = make_repo(tmp_path / "repo", HANGING)
    tmp, pidfile = tmp_path / "tmp", tmp_path / "hang.pid"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "HANG_PIDFILE": str(pidfile)}
    with ScriptedPolicyServer(FIXING * N) as policy:
        proc = subprocess.Popen([sys.executable, "-m", "ornith_lsp", "serve"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        try:
            wire = Wire(proc)
            wire.initialize(repo.as_uri(), {"backend": {"kind": "remote", "endpoint": policy.url, "model": "scripted"},
                                            "agent": {"test_timeout_s": 200, "concurrency": 1, "queue_limit": 2}})
            assert wire.wait_backend("ready")["state"] == "ready"
            answers = [command(wire, "ornith.fix", task(n)) for n in range(N)]
            assert [a["status"] for a in answers] == ["started", "queued", "queued", "refused"], answers
            assert "agent.queue_limit" in answers[3]["reason"]
            assert command(wire, "ornith.queue") == {"running": 1, "queued": 2, "concurrency": 1, "queueLimit": 2}
            assert wait_until(lambda: pidfile.exists() and pidfile.read_text(), timeout=120)
            hung = int(pidfile.read_text())
            statuses = {t["taskId"]: t["status"] for t in command(wire, "ornith.tasks")}
            assert sorted(statuses.values()) == ["queued", "queued", "running"], statuses
            # every task has its own progress, the queued ones say so
            begins = [m["params"]["value"] for m in wire.notifications
                      if m["method"] == "$/progress" and m["params"]["value"]["kind"] == "begin"
                      and m["params"]["value"]["title"].startswith("fix test_add")]
            assert len(begins) == 3 and sum(1 for b in begins if b.get("message") == "queued") == 3
            cancelled = command(wire, "ornith.cancelAll")["cancelled"]
            assert sorted(cancelled) == sorted(statuses)
            assert wait_until(lambda: not alive(hung), timeout=10)
            assert wait_until(lambda: worktrees(repo) == [str(repo)], timeout=10)

            def done() -> list[dict]:
                wire.request("workspace/executeCommand", {"command": "ornith.queue"})  # reads what came before
                return [m["params"] for m in wire.notifications if m["method"] == "ornith/fixDone"]

            assert wait_until(lambda: len(done()) == 3, timeout=10), done()
            done = done()
            assert sorted(d["status"] for d in done) == ["cancelled"] * 3, done
            assert command(wire, "ornith.queue")["running"] == 0
            assert len(policy.requests) <= len(FIXING)  # the queued fixes never reached the model
            wire.request("shutdown")
            wire.send({"jsonrpc": "2.0", "method": "exit"})
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert ornith_dirs(tmp) == [] and git(repo, "worktree", "list").count("\n") == 1
