"""Small JavaScript, Go and Rust repositories with one failing test each, and
the scripted answers (for the ScriptedPolicyServer TEST DOUBLE) that fix or
cheat them."""

from __future__ import annotations

JS_CALC = {
    "package.json": '{\n  "name": "calc",\n  "version": "1.0.0",\n  "scripts": {"test": "node --test"}\n}\n',
    "calc.js": "function add(a, b) {\n  return a - b;\n}\n\nfunction mul(a, b) {\n  return a * b;\n}\n\n"
               "function half(n) {\n  if (n === 0) throw new Error('zero');\n  return n / 2;\n}\n\n"
               "module.exports = { add, mul, half };\n",
    "test/calc.test.js": "const { describe, it } = require('node:test');\nconst assert = require('node:assert');\n"
                         "const { add, mul, half } = require('../calc');\n\n"
                         "describe('calc', () => {\n  it('adds', () => {\n    assert.strictEqual(add(20, 22), 42);\n  });\n"
                         "  it('multiplies', () => {\n    assert.strictEqual(mul(6, 7), 42);\n  });\n"
                         "  it('halves', () => {\n    assert.strictEqual(half(8), 4);\n  });\n});\n",
}

GO_CALC = {
    "go.mod": "module example.com/calc\n\ngo 1.19\n",
    "calc/calc.go": "package calc\n\n// Add returns the sum of a and b.\nfunc Add(a, b int) int {\n\treturn a - b\n}\n\n"
                    "// Mul returns the product of a and b.\nfunc Mul(a, b int) int {\n\treturn a * b\n}\n",
    "calc/calc_test.go": "package calc\n\nimport \"testing\"\n\nfunc TestAdd(t *testing.T) {\n"
                         "\tif got := Add(20, 22); got != 42 {\n\t\tt.Errorf(\"Add(20, 22) = %d, want 42\", got)\n\t}\n}\n\n"
                         "func TestMul(t *testing.T) {\n\tif got := Mul(6, 7); got != 42 {\n"
                         "\t\tt.Errorf(\"Mul(6, 7) = %d, want 42\", got)\n\t}\n}\n",
}

RUST_CALC = {
    "Cargo.toml": '[package]\nname = "calc"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n',
    ".gitignore": "/target\n",
    "src/lib.rs": "pub fn add(a: i32, b: i32) -> i32 {\n    a - b\n}\n\npub fn mul(a: i32, b: i32) -> i32 {\n    a * b\n}\n\n"
                  "#[cfg(test)]\nmod tests {\n    use super::*;\n\n    #[test]\n    fn adds() {\n"
                  "        assert_eq!(add(20, 22), 42);\n    }\n\n    #[test]\n    fn multiplies() {\n"
                  "        assert_eq!(mul(6, 7), 42);\n    }\n}\n",
    "tests/api.rs": "#[test]\nfn mul_is_public() {\n    assert_eq!(calc::mul(2, 5), 10);\n}\n",
}


def plan(path: str) -> dict:
    return {
        "goal": "make the failing test pass", "strategy": "read, fix the operator, verify",
        "steps": [
            {"intent": f"read {path}", "tools": ["read_file", "edit"],
             "check": {"kind": "context_read", "description": ""}},
            {"intent": "fix add", "tools": ["edit", "run_tests"], "check": {"kind": "target_tests_pass", "description": ""}},
            {"intent": "finish", "tools": ["finish"], "check": {"kind": "target_tests_pass", "description": ""}},
        ],
        "budget": {"turns": 12, "tokens": 20000},
    }


def fixing(path: str, search: str, replace: str) -> list:
    """A scripted fix: plan, read, edit, finish."""
    return [plan(path), {"thought": "look", "tool": "read_file", "path": path}, {"tool": "step_done"},
            {"tool": "edit", "path": path, "search": search, "replace": replace}, {"tool": "step_done"},
            {"tool": "finish", "summary": "fixed the operator"}]


def cheating(path: str, search: str, replace: str) -> list:
    """A scripted cheat: plan, then straight to an edit and finish."""
    return [plan(path), {"tool": "edit", "path": path, "search": search, "replace": replace},
            {"tool": "finish", "summary": "done"}]
