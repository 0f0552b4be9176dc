"""Faults in a loop, against real processes, and what they leave behind.

Each run makes a fresh repository with a failing test, starts a real
``ornith-lsp fix`` (or ``serve``) and injects one fault while the agent
works: SIGTERM, SIGINT or SIGHUP during the agent's own test run, SIGINT
while it waits for the model, SIGKILL (then the next start must sweep), the
model server killed mid-answer, ``--apply`` into a read-only directory, the
repository changed under the agent (a commit, a deleted file, a checkout),
the editor closing the server's stdin mid-fix.  The model is the
ScriptedPolicyServer TEST DOUBLE (tests/policy_double.py), run as its own
process so it can be killed.  After each run it counts:

- tasks lost: a task the run found that is missing from its report (a run
  killed by SIGKILL reports nothing by definition; its task must show up in
  the run that follows);
- files corrupted: a file of the repository whose bytes are neither what
  they were before nor what the fault or an applied verified fix made them,
  or a staging file (``*.ornith``) left;
- processes left: any process carrying this run's tag in its environment;
- worktrees left: worktrees still registered, shadow directories still there.

    python bench/chaos.py [--runs 40] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

from agent_repos import CALC, git, make_repo  # noqa: E402
from common import headline, write  # noqa: E402
from lsp_wire import Wire  # noqa: E402
from test_agent_scripted import FINISH, GOOD_EDIT, PLAN, READ, STEP_DONE  # noqa: E402
from test_interruption import HANGING  # noqa: E402

FIXING = [PLAN, READ, STEP_DONE, GOOD_EDIT, STEP_DONE, FINISH]
FIXED_CALC = CALC["calc.py"].replace("return a - b", "return a + b")
POLICY = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from policy_double import ScriptedPolicyServer
with ScriptedPolicyServer(json.loads(sys.argv[2]), delay_s=float(sys.argv[3])) as p:
    print(p.url, flush=True)
    seen = 0
    while True:  # the number of requests that arrived, for the chaos script to time its faults
        if len(p.requests) != seen:
            seen = len(p.requests)
            open(sys.argv[4], "w").write(str(seen))
        time.sleep(0.02)
"""


class Policy:
    """The scripted model in a process of its own, so a fault can kill it."""

    def __init__(self, env: dict, answers: list, delay_s: float = 0.0) -> None:
        fd, name = tempfile.mkstemp(prefix="ornith-chaos-requests-")
        os.close(fd)
        self.counter = Path(name)
        self.proc = subprocess.Popen([sys.executable, "-c", POLICY, str(TESTS), json.dumps(answers), str(delay_s), name],
                                     stdout=subprocess.PIPE, text=True, env=env)
        self.url = self.proc.stdout.readline().strip()

    def requests(self) -> int:
        try:
            return int(self.counter.read_text() or 0)
        except (OSError, ValueError):
            return 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.counter.unlink(missing_ok=True)


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def tagged(tag: str) -> list[int]:
    """Processes whose environment carries the run's tag (zombies do not count)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if f"ORNITH_CHAOS={tag}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


class Run:
    """One fault injected into one fresh repository."""

    def __init__(self, base: Path, files: dict[str, str]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="run-", dir=base))
        self.repo = make_repo(self.dir / "repo", files)
        self.tmp = self.dir / "tmp"
        self.tmp.mkdir()
        self.pidfile = self.dir / "hang.pid"
        self.tag = uuid.uuid4().hex
        self.env = {**os.environ, "TMPDIR": str(self.tmp), "HANG_PIDFILE": str(self.pidfile),
                    "ORNITH_CHAOS": self.tag, "ORNITH_AGENT__TEST_TIMEOUT_S": "120"}
        self.allowed: dict[str, set[bytes | None]] = {
            str(p.relative_to(self.repo)): {p.read_bytes()} for p in self.repo.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(self.repo).parts}

    def allow(self, rel: str, data: bytes | None) -> None:
        self.allowed.setdefault(rel, set()).add(data)

    def fix(self, url: str, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "ornith_lsp", "fix", str(self.repo), "--backend", "remote",
                                 "--endpoint", url, "--model", "scripted", "--format", "json", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)

    def hung(self, timeout: float = 120) -> bool:
        return wait_for(lambda: self.pidfile.exists() and bool(self.pidfile.read_text()), timeout)

    def measure(self, expected_tasks: int, reports: list[dict | None]) -> dict:
        time.sleep(0.5)  # a reaped group's last exits
        reported = sum(len(r["tasks"]) for r in reports if r is not None)
        lost = max(0, expected_tasks - reported)
        corrupted = [str(p) for p in self.repo.rglob("*.ornith")]
        for rel, allowed in self.allowed.items():
            path = self.repo / rel
            now = path.read_bytes() if path.is_file() else None
            if now not in allowed:
                corrupted.append(rel)
        procs = tagged(self.tag)
        for pid in procs:  # counted, then cleaned so the next run starts clean
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        worktrees = git(self.repo, "worktree", "list", "--porcelain").count("\nworktree ")
        dirs = [p.name for p in self.tmp.iterdir() if p.name.startswith(("ornith-shadow-", "ornith-base-"))]
        outcome = [f"{t['status']}: {t['reason'][:160]}" for r in reports if r is not None for t in r["tasks"]]
        return {"outcome": outcome, "tasks_lost": lost, "files_corrupted": len(corrupted), "corrupted": corrupted,
                "processes_left": len(procs), "worktrees_left": worktrees + len(dirs)}


def report_of(out: str) -> dict | None:
    try:
        return json.loads(out)
    except ValueError:
        return None


# -- the faults ------------------------------------------------------------------------
def signal_mid_task(base: Path, sig: int) -> dict:
    run = Run(base, HANGING)
    policy = Policy(run.env, FIXING)
    try:
        proc = run.fix(policy.url, "--apply")
        ok = run.hung()
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        policy.kill()
    report = report_of(out)
    return {"ok": ok and proc.returncode == 128 + sig and report is not None
            and report["tasks"][0]["status"] == "interrupted", **run.measure(1, [report])}


def sigint_waiting_for_model(base: Path) -> dict:
    run = Run(base, CALC)
    policy = Policy(run.env, FIXING, delay_s=60)
    try:
        proc = run.fix(policy.url)
        ok = wait_for(lambda: policy.requests() >= 1, 120)  # the agent asked for its plan and waits
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        policy.kill()
    report = report_of(out)
    return {"ok": ok and proc.returncode == 130 and report is not None, **run.measure(1, [report])}


def sigkill_then_next_start(base: Path) -> dict:
    run = Run(base, HANGING)
    policy = Policy(run.env, FIXING * 2)
    try:
        proc = run.fix(policy.url)
        ok = run.hung()
        proc.kill()
        proc.wait()
        # a crash leaves the shadow; the next start must sweep it (the test no longer hangs)
        (run.repo / "test_calc.py").write_text(CALC["test_calc.py"])
        git(run.repo, "commit", "-qam", "plain tests")
        run.allowed["test_calc.py"] = {CALC["test_calc.py"].encode()}
        out, _ = run.fix(policy.url).communicate(timeout=240)
    finally:
        policy.kill()
    report = report_of(out)
    swept = report is not None and any("removed a leftover" in n for n in report["notes"])
    return {"ok": ok and swept, **run.measure(1, [report])}


def model_killed_mid_answer(base: Path) -> dict:
    run = Run(base, CALC)
    policy = Policy(run.env, FIXING, delay_s=30)
    try:
        proc = run.fix(policy.url)
        wait_for(lambda: policy.requests() >= 1, 120)
        time.sleep(0.5)
        policy.kill()  # mid-answer: the request is open, the server dies
        out, err = proc.communicate(timeout=300)
    finally:
        policy.kill()
    report = report_of(out)
    return {"ok": proc.returncode in (1, 2) and "Traceback" not in err, **run.measure(1, [report])}


def apply_read_only(base: Path) -> dict:
    files = {"pkg/__init__.py": "", "pkg/calc.py": CALC["calc.py"],
             "test_calc.py": CALC["test_calc.py"].replace("from calc", "from pkg.calc")}
    run = Run(base, files)
    answers = [PLAN, {**READ, "path": "pkg/calc.py"}, STEP_DONE, {**GOOD_EDIT, "path": "pkg/calc.py"}, STEP_DONE, FINISH]
    policy = Policy(run.env, answers)
    target = run.repo / "pkg"
    subprocess.run(["mount", "--bind", str(target), str(target)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(target)], check=True)
        out, _ = (proc := run.fix(policy.url, "--apply")).communicate(timeout=240)
    finally:
        subprocess.run(["umount", str(target)], check=True)
        policy.kill()
    report = report_of(out)
    return {"ok": proc.returncode == 2 and report is not None, **run.measure(1, [report])}


def repo_changes(base: Path, how: str) -> dict:
    run = Run(base, CALC)
    policy = Policy(run.env, FIXING, delay_s=1.0)
    try:
        proc = run.fix(policy.url, "--apply")
        wait_for(lambda: policy.requests() >= 2, 120)  # the agent works in its shadow
        if how == "commit":
            (run.repo / "calc.py").write_text(CALC["calc.py"] + "\n\ndef sub(a, b):\n    return a - b\n")
            git(run.repo, "commit", "-qam", "sub")
            rebased = CALC["calc.py"] + "\n\ndef sub(a, b):\n    return a - b\n"
            run.allow("calc.py", rebased.encode())
            run.allow("calc.py", rebased.replace("return a - b\n\n\ndef mul", "return a + b\n\n\ndef mul").encode())
        elif how == "delete":
            (run.repo / "calc.py").unlink()
            run.allow("calc.py", None)
        else:
            git(run.repo, "checkout", "-qb", "other")
            (run.repo / "test_calc.py").write_text(CALC["test_calc.py"].replace("== 5", "== 6"))
            git(run.repo, "commit", "-qam", "other expectation")
            run.allow("test_calc.py", CALC["test_calc.py"].replace("== 5", "== 6").encode())
        run.allow("calc.py", FIXED_CALC.encode())  # a fix verified (or re-verified) may be applied
        out, _ = proc.communicate(timeout=300)
    finally:
        policy.kill()
    report = report_of(out)
    return {"ok": proc.returncode in (0, 1, 2) and report is not None, **run.measure(1, [report])}


def lsp_stdin_closed(base: Path) -> dict:
    run = Run(base, HANGING)
    policy = Policy(run.env, FIXING)
    proc = subprocess.Popen([sys.executable, "-m", "ornith_lsp", "serve"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=run.env)
    try:
        wire = Wire(proc)
        wire.initialize(run.repo.as_uri(), {"backend": {"kind": "remote", "endpoint": policy.url, "model": "scripted"}})
        wait_for(lambda: wire.backend_status()["state"] == "ready", 60)
        task = {"source": "test", "title": "fix", "message": "m", "test_id": "test_calc.py::test_add",
                "location": {"path": "calc.py", "line": 2}}
        wire.request("workspace/executeCommand", {"command": "ornith.fix", "arguments": [task]})
        ok = run.hung()
        proc.stdin.close()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        policy.kill()
    return {"ok": ok, **run.measure(0, [])}


FAULTS: dict[str, Callable[[Path], dict]] = {
    "SIGTERM mid-task": lambda b: signal_mid_task(b, signal.SIGTERM),
    "SIGINT mid-task": lambda b: signal_mid_task(b, signal.SIGINT),
    "SIGHUP mid-task": lambda b: signal_mid_task(b, signal.SIGHUP),
    "SIGINT waiting for the model": sigint_waiting_for_model,
    "SIGKILL, then the next start": sigkill_then_next_start,
    "model server killed mid-answer": model_killed_mid_answer,
    "--apply into a read-only directory": apply_read_only,
    "a commit under the agent": lambda b: repo_changes(b, "commit"),
    "a file deleted under the agent": lambda b: repo_changes(b, "delete"),
    "a branch checked out under the agent": lambda b: repo_changes(b, "checkout"),
    "the editor closes the server's stdin": lsp_stdin_closed,
}


def main(runs: int) -> dict:
    names = list(FAULTS)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ornith-chaos-") as base:
        for i in range(runs):
            name = names[i % len(names)]
            t0 = time.monotonic()
            try:
                row = FAULTS[name](Path(base))
            except Exception as exc:  # a fault the script could not inject is reported, not hidden
                row = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "tasks_lost": 0, "files_corrupted": 0,
                       "processes_left": 0, "worktrees_left": 0}
            row.update(fault=name, seconds=round(time.monotonic() - t0, 1))
            rows.append(row)
            print(f"{i + 1:>3} {name:<40} {'ok ' if row['ok'] else 'BAD'} lost {row['tasks_lost']} "
                  f"corrupted {row['files_corrupted']} procs {row['processes_left']} "
                  f"worktrees {row['worktrees_left']} ({row['seconds']} s){' ' + row.get('error', '') if 'error' in row else ''}",
                  flush=True)
    total = {k: sum(r[k] for r in rows) for k in ("tasks_lost", "files_corrupted", "processes_left", "worktrees_left")}
    return {"runs": runs, "faults_injected": runs, "behaved_as_specified": sum(1 for r in rows if r["ok"]),
            **total, "per_run": rows,
            "headline": [headline(f"chaos: lost/corrupted/processes/worktrees over {runs} faults",
                                  f"{total['tasks_lost']}/{total['files_corrupted']}/{total['processes_left']}/{total['worktrees_left']}")]}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=44, help="faults injected, cycling through the kinds")
    p.add_argument("--quick", action="store_true", help="each kind once")
    a = p.parse_args()
    if os.geteuid() != 0:
        FAULTS.pop("--apply into a read-only directory")  # a read-only bind mount needs root
    result = main(len(FAULTS) if a.quick else a.runs)
    path = write("chaos", result, a.quick)
    print(f"runs {result['runs']}, faults injected {result['faults_injected']}, as specified "
          f"{result['behaved_as_specified']}; tasks lost {result['tasks_lost']}, files corrupted "
          f"{result['files_corrupted']}, processes left {result['processes_left']}, worktrees left {result['worktrees_left']}")
    print(f"-> {path}")
