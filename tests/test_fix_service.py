"""The one fix service: what every front end gets from it alike.

The model and the judge are played by the ScriptedPolicyServer TEST DOUBLE
(tests/policy_double.py); the language server, the shadow worktree, pytest
and the guard are real."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ornith_lsp import settings as settings_mod
from ornith_lsp.agent.events import EVENTS, DoneEvent, PlanEvent, StepEvent, ToolEvent, wire
from ornith_lsp.agent.service import FixService

from agent_repos import CALC, make_repo, snapshot
from lsp_wire import Wire
from policy_double import ScriptedPolicyServer
from test_agent_scripted import FINISH, GOOD_EDIT, PLAN, READ, STEP_DONE

FIXING = [PLAN, READ, STEP_DONE, GOOD_EDIT, STEP_DONE, FINISH]
VETO = {"veto": True, "reason": "the change special-cases the value the test asserts"}
TASK = {"source": "test", "title": "fix test_add", "message": "assert -1 == 5",
        "test_id": "test_calc.py::test_add", "location": {"path": "calc.py", "line": 2}}


def service(tmp_path: Path, **guard) -> FixService:
    settings = settings_mod.load(None, cli={"guard": guard} if guard else {}, environ={})
    return FixService(tmp_path, settings)


def test_the_judge_is_built_once_from_the_settings(tmp_path):
    assert service(tmp_path).judge() is None, "guard.judge is off by default"
    on = service(tmp_path, judge="on", judge_endpoint="http://127.0.0.1:9/v1")
    first = on.judge()
    assert first is not None and on.judge() is first, "one judge per guard settings"
    on.settings = on.settings.model_copy(update={"guard": on.settings.guard.model_copy(update={"judge": "off"})})
    assert on.judge() is None, "the judge follows a settings change"
    # no endpoint of its own and no backend yet: nothing to ask
    assert service(tmp_path, judge="on").judge() is None


def test_events_are_one_typed_union_with_camel_case_on_the_wire():
    done = DoneEvent(task_id="t1", title="fix it", status="cancelled", reason="cancelled")
    payload = wire(done)
    assert payload == {"taskId": "t1", "kind": "done", "title": "fix it", "status": "cancelled",
                       "reason": "cancelled", "verified": False}
    assert EVENTS.validate_python(payload) == done
    step = EVENTS.validate_python({"kind": "step", "taskId": "t1", "index": 1, "of": 3, "intent": "read"})
    assert isinstance(step, StepEvent)
    tool = EVENTS.validate_python({"kind": "tool", "taskId": "t1", "callId": "c", "tool": "read_file",
                                   "toolKind": "read", "state": "started"})
    assert isinstance(tool, ToolEvent)
    assert isinstance(EVENTS.validate_python({"kind": "plan", "taskId": "t", "scaffold": PLAN}), PlanEvent)


def _serve(tmp_path: Path, policy_url: str, judge_url: str) -> tuple[Path, subprocess.Popen, Wire]:
    repo = make_repo(tmp_path / "repo", CALC)
    proc = subprocess.Popen([sys.executable, "-m", "ornith_lsp", "serve"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ})
    wire_ = Wire(proc)
    wire_.initialize(repo.as_uri(), {
        "backend": {"kind": "remote", "endpoint": policy_url, "model": "scripted"},
        "agent": {"test_timeout_s": 60, "max_turns": 10},
        "guard": {"judge": "on", "judge_endpoint": judge_url, "judge_model": "judge"}})
    wire_.wait_backend()
    return repo, proc, wire_


def test_the_editor_asks_the_judge_and_its_veto_holds(tmp_path):
    """``guard.judge = "on"`` in an editor: the service builds the judge, the
    judge's veto stops an otherwise passing fix, and every notification has
    the same typed shape."""
    with ScriptedPolicyServer(FIXING) as policy, ScriptedPolicyServer([VETO]) as judge:
        repo, proc, wire_ = _serve(tmp_path, policy.url, judge.url)
        before = snapshot(repo)
        try:
            started = wire_.request("workspace/executeCommand", {"command": "ornith.fix", "arguments": [TASK]})
            assert started["result"]["status"] in ("started", "queued"), started
            deadline = time.monotonic() + 240
            while not any(m.get("method") == "ornith/fixDone" for m in wire_.notifications):
                assert time.monotonic() < deadline, "no ornith/fixDone"
                wire_.notifications.append(wire_.recv(120))
            by_method: dict[str, list[dict]] = {}
            for m in wire_.notifications:
                by_method.setdefault(m.get("method", ""), []).append(m.get("params"))
            done = by_method["ornith/fixDone"][0]
            assert done["verified"] is False and done["status"] == "vetoed", done
            assert len(judge.requests) == 1, "the judge was asked once, by the editor's fix"
            for method in ("ornith/plan", "ornith/step", "ornith/tool", "ornith/fixDone"):
                for params in by_method[method]:
                    EVENTS.validate_python(params)  # every payload is one of the typed events
            tools = by_method["ornith/tool"]
            assert {t["state"] for t in tools} >= {"started", "completed"}
            assert {t["toolKind"] for t in tools} >= {"read", "edit"}
            assert snapshot(repo) == before
        finally:
            wire_.request("shutdown")
            wire_.send({"jsonrpc": "2.0", "method": "exit"})
            proc.wait(30)
