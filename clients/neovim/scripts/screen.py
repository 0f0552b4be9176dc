"""TEST-ONLY helper: capture, as text, what Neovim shows during an Ornith fix.

    .venv/bin/python clients/neovim/scripts/screen.py [OUT]   # default: clients/neovim/screenshot.txt

How the text is made: an outer, headless Neovim runs the ordinary Neovim TUI
in a ``:terminal`` of COLUMNS x ROWS cells; the inner Neovim uses
tests/nvim/init.lua (this plugin, ``setup()``, a statusline with
``require("ornith").statusline()``) and is driven over its ``--listen`` socket
exactly as the tests drive it.  The captured rows are the outer terminal
buffer's last ROWS lines: the cells the TUI drew, signs, virtual text and
statusline included (colours are lost).

The model is the ScriptedPolicyServer TEST DOUBLE from tests/policy_double.py
(fixed answers over real HTTP) in a throwaway repository (tests/agent_repos.py
CALC), so the capture is the same on every run; the server, pytest and the
guard are real.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import pynvim

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests"))

from agent_repos import CALC, make_repo  # noqa: E402
from policy_double import ScriptedPolicyServer  # noqa: E402
from test_agent_scripted import FINISH, GOOD_EDIT, PLAN, READ, STEP_DONE  # noqa: E402
from test_neovim_client import INIT, PLUGIN, SERVER_CMD, find_nvim  # noqa: E402

COLUMNS, ROWS = 100, 40


def poll(nvim: pynvim.Nvim, expr: str, what: str, timeout: float = 60.0):
    """A TUI at a hit-enter prompt answers only "fast" requests (nvim_get_mode),
    so each round first presses Enter if the prompt is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if nvim.api.get_mode().get("blocking"):
            nvim.input("<CR>")
            continue
        value = nvim.exec_lua(f"return {expr}")
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"waiting for {what}")


def settle(inner: pynvim.Nvim) -> None:
    """Dismiss a hit-enter prompt and let the TUI and the terminal catch up."""
    time.sleep(0.3)
    if inner.api.get_mode().get("blocking"):
        inner.input("<CR>")
    time.sleep(0.5)


def frame(outer: pynvim.Nvim, term: int, title: str) -> str:
    lines = outer.api.buf_get_lines(term, 0, -1, False)
    rows = [line.rstrip() for line in (lines + [""] * ROWS)[:max(len(lines), ROWS)][-ROWS:]]
    bar = "+" + "-" * COLUMNS + "+"
    return "\n".join([f"-- {title} --", bar, *(f"|{row:<{COLUMNS}}|" for row in rows), bar, ""])


def capture(out: Path) -> None:
    nvim = find_nvim()
    with tempfile.TemporaryDirectory(prefix="ornith-screen-") as tmp, \
            ScriptedPolicyServer([PLAN, READ, STEP_DONE, GOOD_EDIT, STEP_DONE, FINISH]) as policy:
        repo = make_repo(Path(tmp) / "demo", CALC)
        sock = str(Path(tmp) / "inner.sock")
        settings = {"backend": {"kind": "remote", "endpoint": policy.url, "model": "scripted"}}
        env = {"OLSP_NVIM_SETUP": json.dumps({"rtp": str(PLUGIN), "cmd": SERVER_CMD, "settings": settings}),
               "XDG_STATE_HOME": str(Path(tmp) / "state")}
        outer = pynvim.attach("child", argv=[nvim, "--embed", "--headless", "--clean", "-i", "NONE"])
        outer_pid = outer.call("getpid")
        inner = None
        try:
            outer.command(f"set columns={COLUMNS} lines={ROWS} laststatus=0 cmdheight=0 noruler noshowmode")
            outer.exec_lua("""
                local nvim, init, sock, cwd, env = ...
                vim.fn.jobstart({ nvim, '--clean', '-i', 'NONE', '-u', init, '--listen', sock },
                                { term = true, cwd = cwd, env = env })""", nvim, str(INIT), sock, str(repo), env)
            term = outer.api.get_current_buf()
            deadline = time.monotonic() + 30
            while not Path(sock).exists():
                if time.monotonic() > deadline:
                    raise TimeoutError("the inner Neovim did not start")
                time.sleep(0.05)
            inner = pynvim.attach("socket", path=sock)
            inner.exec_lua("vim.diagnostic.config({ virtual_text = true })")
            # A hit-enter prompt would hold back every request but nvim_get_mode;
            # 'messagesopt' (Neovim 0.11) shows long messages without one.
            inner.command("set number signcolumn=yes messagesopt=wait:200,history:500")
            inner.command("edit calc.py")
            poll(inner, "#vim.lsp.get_clients({ name = 'ornith', bufnr = 0 }) > 0", "attach")
            inner.command("edit test_calc.py")
            poll(inner, "require('ornith.progress').last ~= nil", "the backend")
            inner.command("OrnithRunTests")
            poll(inner, "#vim.diagnostic.get(0) > 0", "test diagnostics")
            inner.command("call cursor(5, 1) | OrnithFix")
            poll(inner, "require('ornith').statusline():find('step 2/3') ~= nil", "the fix's second step", timeout=30)
            time.sleep(0.4)
            during = frame(outer, term, "1. :OrnithRunTests, then :OrnithFix on the failing test (fix running)")
            poll(inner, "_G.fix_done[1]", "ornith/fixDone", timeout=90)
            inner.command("call cursor(5, 1) | OrnithFix")
            poll(inner, "vim.api.nvim_buf_get_lines(vim.fn.bufnr('calc.py'), 1, 2, false)[1] == '    return a + b'",
                 "the applied fix")
            inner.command("OrnithPlan")
            poll(inner, "vim.fn.bufnr('ornith://plan') ~= -1", "the plan")
            inner.command("OrnithDiff")
            poll(inner, "vim.fn.bufnr('ornith://diff') ~= -1", "the diff")
            inner.command("wincmd t | buffer calc.py | resize 8 | wincmd j | resize 17")
            settle(inner)
            after = frame(outer, term, "2. :OrnithFix again (applies the verified fix), :OrnithPlan, :OrnithDiff")
            out.write_text(during + "\n" + after)
        finally:
            if inner is not None:
                with contextlib.suppress(Exception):
                    inner.command("qa!")
            with contextlib.suppress(Exception):
                outer.command("qa!")
            time.sleep(0.5)
            with contextlib.suppress(ProcessLookupError):
                os.kill(outer_pid, signal.SIGKILL)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "screenshot.txt"
    capture(target)
    print(target)
