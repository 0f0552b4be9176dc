"""jest, vitest, eslint and tsc, REAL, from the node_modules that
`./install.sh --test` puts outside the repository; each small project links
to it as its own ``node_modules``.  Plus go vet and cargo clippy.  These fail
(not skip) when a tool is missing: CI must prove the real path works."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from ornith_lsp.tasks import polyglot_linters, runners

from agent_repos import make_repo
from polyglot_repos import GO_CALC, RUST_CALC

E2E_HOME = Path(os.environ.get("OLSP_E2E_HOME") or Path.home() / ".cache" / "ornith-lsp-e2e")
JS_RUNNERS = E2E_HOME / "js-runners-1" / "node_modules"

CALC_CJS = "function add(a, b) {\n  return a - b;\n}\n\nfunction half(n) {\n  if (n === 0) throw new Error('zero');\n  return n / 2;\n}\n\nmodule.exports = { add, half };\n"
JEST = {
    ".gitignore": "node_modules\n",
    "package.json": json.dumps({"name": "calc", "scripts": {"test": "jest --coverage"}}),
    "calc.js": CALC_CJS,
    "__tests__/calc.test.js": "const { add, half } = require('../calc');\n\ndescribe('calc', () => {\n"
                              "  it('adds', () => {\n    expect(add(20, 22)).toBe(42);\n  });\n"
                              "  it('halves zero', () => {\n    expect(half(0)).toBe(0);\n  });\n"
                              "  it.skip('later', () => {});\n});\n",
}
VITEST = {
    ".gitignore": "node_modules\n",
    "package.json": json.dumps({"name": "calc", "type": "module", "scripts": {"test": "vitest"}}),
    "src/calc.ts": "export function add(a: number, b: number): number {\n  return a - b;\n}\n",
    "src/calc.test.ts": "import { describe, expect, it } from 'vitest';\nimport { add } from './calc';\n\n"
                        "describe('calc', () => {\n  it('adds', () => {\n    expect(add(20, 22)).toBe(42);\n  });\n"
                        "  it('adds zero', () => {\n    expect(add(0, 0)).toBe(0);\n  });\n});\n",
}


@pytest.fixture(scope="module")
def node_modules() -> Path:
    assert (JS_RUNNERS / ".bin" / "jest").exists(), f"{JS_RUNNERS} is missing: run ./install.sh --test"
    return JS_RUNNERS


def project(root: Path, files: dict[str, str], node_modules: Path) -> Path:
    make_repo(root, files)
    (root / "node_modules").symlink_to(node_modules)
    return root


def test_jest_failures_become_located_tasks(tmp_path, node_modules):
    repo = project(tmp_path / "jest", JEST, node_modules)
    run = asyncio.run(runners.run_project_tests(repo, "javascript", timeout_s=300))
    assert run.report_found, (run.note, run.output[-2000:])
    cases = {r.node_id: r for r in run.results}
    assert {k: v.outcome for k, v in cases.items()} == {
        "__tests__/calc.test.js::calc::adds": "failed", "__tests__/calc.test.js::calc::halves zero": "failed",
        "__tests__/calc.test.js::calc::later": "skipped"}
    adds = cases["__tests__/calc.test.js::calc::adds"]
    assert "Expected: 42" in adds.message and (adds.test_location.path, adds.test_location.line) == ("__tests__/calc.test.js", 5)
    zero = cases["__tests__/calc.test.js::calc::halves zero"]
    assert (zero.location.path, zero.location.line) == ("calc.js", 6)
    assert not (repo / "coverage").exists(), "--coverage from the script must not write into the tree"


def test_vitest_failures_become_located_tasks(tmp_path, node_modules):
    repo = project(tmp_path / "vitest", VITEST, node_modules)
    run = asyncio.run(runners.run_project_tests(repo, "javascript", timeout_s=300))
    assert run.report_found, (run.note, run.output[-2000:])
    cases = {r.node_id: r for r in run.results}
    assert {k: v.outcome for k, v in cases.items()} == {"src/calc.test.ts::calc::adds": "failed",
                                                         "src/calc.test.ts::calc::adds zero": "passed"}
    adds = cases["src/calc.test.ts::calc::adds"]
    assert "expected -2 to be 42" in adds.message
    assert (adds.test_location.path, adds.test_location.line) == ("src/calc.test.ts", 6)


def test_eslint_and_tsc_findings_are_tasks(tmp_path, node_modules):
    files = {**VITEST,
             "eslint.config.js": "import js from '@eslint/js';\nexport default [js.configs.recommended, "
                                 "{ files: ['**/*.js'], languageOptions: { sourceType: 'module' } }];\n",
             "src/util.js": "export function unused() {\n  const x = 1;\n  return 2;\n}\n",
             "tsconfig.json": json.dumps({"compilerOptions": {"strict": True, "noEmit": True, "module": "esnext",
                                                              "moduleResolution": "bundler", "skipLibCheck": True},
                                          "include": ["src"]}),
             "src/bad.ts": "export const n: number = 'one';\n"}
    repo = project(tmp_path / "lint", files, node_modules)
    eslint = asyncio.run(polyglot_linters.run("eslint", repo))
    assert eslint.error is None, eslint.output[-1000:]
    assert [(t.code, t.location.path, t.location.line) for t in eslint.tasks] == [("no-unused-vars", "src/util.js", 2)]
    tsc = asyncio.run(polyglot_linters.run("tsc", repo))
    assert tsc.error is None, tsc.output[-1000:]
    assert [(t.code, t.location.path, t.location.line) for t in tsc.tasks] == [("TS2322", "src/bad.ts", 1)]


def test_tools_missing_from_node_modules_are_a_note(tmp_path):
    repo = make_repo(tmp_path / "bare", VITEST)
    lint = asyncio.run(polyglot_linters.run("eslint", repo))
    assert not lint.installed and "eslint is not installed" in lint.error


def test_go_vet_findings_are_tasks(tmp_path):
    files = {**GO_CALC, "calc/fmt.go": "package calc\n\nimport \"fmt\"\n\nfunc Show(n int) string {\n"
                                       "\treturn fmt.Sprintf(\"%s\", n)\n}\n"}
    repo = make_repo(tmp_path / "go", files)
    vet = asyncio.run(polyglot_linters.run("govet", repo))
    assert vet.error is None, vet.output
    assert [(t.code, t.location.path, t.location.line) for t in vet.tasks] == [("printf", "calc/fmt.go", 6)]


def test_clippy_findings_are_tasks(tmp_path, monkeypatch):
    monkeypatch.setenv("CARGO_TARGET_DIR", str(tmp_path / "target"))
    lib = RUST_CALC["src/lib.rs"].replace("    a - b\n", "    let s = a - b;\n    return s;\n")
    repo = make_repo(tmp_path / "rs", {**RUST_CALC, "src/lib.rs": lib})
    clippy = asyncio.run(polyglot_linters.run("clippy", repo))
    assert clippy.error is None, clippy.output[-2000:]
    found = {(t.code, t.location.path, t.location.line) for t in clippy.tasks}
    assert ("clippy::needless_return", "src/lib.rs", 3) in found, found
    assert not (repo / "Cargo.lock").exists()


JEST_ONE = {**JEST, "__tests__/calc.test.js": JEST["__tests__/calc.test.js"].replace(
    "  it('halves zero', () => {\n    expect(half(0)).toBe(0);\n  });\n", "")}


@pytest.mark.parametrize("files, path, target", [
    (JEST_ONE, "calc.js", "__tests__/calc.test.js::calc::adds"),
    (VITEST, "src/calc.ts", "src/calc.test.ts::calc::adds"),
], ids=["jest", "vitest"])
def test_a_fix_end_to_end_finds_node_modules_from_the_shadow(tmp_path, node_modules, files, path, target):
    """The shadow and the grader's copy are trees without ``node_modules``; the
    runner and the packages the tests import (vitest's ESM ``import 'vitest'``)
    still resolve from the user's checkout, the fix is verified (the model is
    the ScriptedPolicyServer TEST DOUBLE) and no link is left behind."""
    from policy_double import ScriptedPolicyServer
    from polyglot_repos import fixing
    from test_headless import fix

    repo = project(tmp_path / "repo", files, node_modules)
    with ScriptedPolicyServer(fixing(path, "return a - b;", "return a + b;")) as policy:
        res = fix(repo, "--format", "json", endpoint=policy.url, timeout=600)
    assert res.returncode == 0, (res.stdout, res.stderr)
    task = json.loads(res.stdout)["tasks"][0]
    assert (task["target"], task["status"]) == (target, "fixed"), task
    assert "on pristine tests" in json.dumps(task["verification"])
    assert "node_modules" not in task["diff"]


def test_an_eslint_finding_is_fixed_and_a_suppression_is_blocked(tmp_path, node_modules):
    """`--diagnostics eslint`: the finding is a task, the fix is re-checked by
    eslint itself in the shadow, and silencing it instead is vetoed (the model
    is the ScriptedPolicyServer TEST DOUBLE)."""
    from policy_double import ScriptedPolicyServer
    from polyglot_repos import cheating, fixing
    from test_headless import fix

    files = {**VITEST, "src/calc.ts": VITEST["src/calc.ts"].replace("a - b", "a + b"),
             "eslint.config.js": "import js from '@eslint/js';\nexport default [js.configs.recommended, "
                                 "{ files: ['**/*.js'], languageOptions: { sourceType: 'module' } }];\n",
             "src/util.js": "export function two() {\n  const x = 1;\n  return 2;\n}\n"}
    repo = project(tmp_path / "repo", files, node_modules)
    with ScriptedPolicyServer(fixing("src/util.js", "  const x = 1;\n", "")) as policy:
        res = fix(repo, "--format", "json", "--diagnostics", "eslint", endpoint=policy.url, timeout=600)
    assert res.returncode == 0, (res.stdout, res.stderr)
    task = json.loads(res.stdout)["tasks"][0]
    assert (task["source"], task["target"], task["status"]) == ("diagnostic", "src/util.js:2", "fixed"), task
    assert "eslint no longer reports no-unused-vars" in task["verification"]["summary"]

    cheat = cheating("src/util.js", "  const x = 1;", "  // eslint-disable-next-line no-unused-vars\n  const x = 1;")
    with ScriptedPolicyServer(cheat) as policy:
        res = fix(repo, "--format", "json", "--diagnostics", "eslint", endpoint=policy.url, timeout=600)
    assert res.returncode == 1, (res.stdout, res.stderr)
    task = json.loads(res.stdout)["tasks"][0]
    assert task["status"] == "vetoed"
    assert "suppression-comment" in {f["monitor"] for f in task["verification"]["guard"]["findings"]}
