"""The trust boundary for JavaScript/TypeScript, Go and Rust projects.

Each ecosystem names its tests by convention, and those conventions are the
boundary: ``*.test.*``/``*.spec.*`` files, ``__tests__/`` and ``test/``
folders, jest/vitest/mocha configuration, snapshots (``__snapshots__``,
``*.snap``); ``_test.go`` files and ``testdata/``; Rust's ``tests/`` and
``benches/``.  Shared manifests are protected by section, as
``pyproject.toml`` is: ``package.json``'s test script and runner keys,
``Cargo.toml``'s ``[lints]``, ``[[test]]`` and ``[[bench]]``.  Rust's inline
``#[cfg(test)]`` modules live inside source files, so they are protected item
by item (``inline_tests``), not file by file.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib

JS_SUFFIXES = (".js", ".mjs", ".cjs", ".jsx", ".ts", ".mts", ".cts", ".tsx")
TEST_CODE_SUFFIXES = (*JS_SUFFIXES, ".go", ".rs")
_JS_TEST_NAME = re.compile(r"\.(test|spec)\.[cm]?[jt]sx?$")
JS_TEST_DIRS = ("__tests__", "test", "tests", "spec", "e2e", "cypress")
JS_TEST_DATA_DIRS = ("__snapshots__", "__mocks__", "__fixtures__", "fixtures")
CONFIG_GLOBS = {
    "jest.config.*": "test configuration (jest)",
    "jest.setup.*": "test set-up (jest)",
    "vitest.config.*": "test configuration (vitest)",
    "vitest.workspace.*": "test configuration (vitest)",
    "vitest.setup.*": "test set-up (vitest)",
    "vite.config.*": "build and test configuration (vite, read by vitest)",
    ".mocharc*": "test configuration (mocha)",
    "karma.conf.*": "test configuration (karma)",
    "playwright.config.*": "test configuration (playwright)",
    "cypress.config.*": "test configuration (cypress)",
    ".nycrc*": "coverage configuration (nyc)",
    ".c8rc*": "coverage configuration (c8)",
    ".eslintrc*": "linter configuration (eslint)",
    "eslint.config.*": "linter configuration (eslint)",
    ".eslintignore": "linter configuration (eslint)",
    "tsconfig*.json": "type-checker configuration (tsc)",
    ".golangci.*": "linter configuration (golangci-lint)",
    "clippy.toml": "linter configuration (clippy)",
    ".clippy.toml": "linter configuration (clippy)",
}
CARGO_CONFIG = (".cargo/config.toml", ".cargo/config")
SECTIONED_FILES = ("package.json", "Cargo.toml")
PACKAGE_JSON_KEYS = ("jest", "vitest", "mocha", "ava", "c8", "nyc", "eslintConfig", "tap")
PACKAGE_JSON_SCRIPTS = ("test", "pretest", "posttest")
CARGO_SECTIONS = ("lints", "test", "bench", "profile.test", "workspace.lints", "badges")


def protection(path: str, parts: list[str], name: str) -> tuple[str, str] | None:
    """(kind, reason) for a path another ecosystem's conventions protect, or None."""
    dirs = parts[:-1]
    if name.endswith((".snap", ".snap.new")) or "__snapshots__" in dirs:
        return "test-data", "test snapshot (the expected output)"
    if name.endswith(JS_SUFFIXES):
        if _JS_TEST_NAME.search(name):
            return "test-file", "test file (*.test.* / *.spec.*)"
        for d in dirs:
            if d in JS_TEST_DIRS:
                return "test-file", f"test code under the test folder '{d}/'"
            if d in JS_TEST_DATA_DIRS:
                return "test-data", f"test mocks or fixtures under '{d}/'"
    if name.endswith("_test.go"):
        return "test-file", "Go test file (*_test.go)"
    if "testdata" in dirs:
        return "test-data", "Go test data (testdata/)"
    rust_dir = next((d for d in dirs if d in ("tests", "benches")), None)
    if name.endswith(".rs") and rust_dir:
        return "test-file", f"Rust {'integration test' if rust_dir == 'tests' else 'benchmark'} ({rust_dir}/)"
    for glob, reason in CONFIG_GLOBS.items():
        if fnmatch.fnmatchcase(name, glob):
            return "test-config", reason
    if "/".join(parts[-2:]) in CARGO_CONFIG:
        return "test-config", "cargo configuration (.cargo/config.toml can cap lints or change test flags)"
    return None


def item_level(path: str) -> bool:
    """A source file whose tests are items inside it (Rust's ``#[cfg(test)]``):
    naming it as a target protects its test items, not the whole file."""
    return path.endswith(".rs") and not {"tests", "benches"} & set(path.split("/")[:-1])


def sections(name: str, text: str) -> tuple[dict[str, object], str | None]:
    """Protected sections of ``package.json`` and ``Cargo.toml``, and a parse error if any."""
    if name == "package.json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            return {}, f"JSON error: {exc}"
        if not isinstance(data, dict):
            return {}, None
        out: dict[str, object] = {k: data[k] for k in PACKAGE_JSON_KEYS if k in data}
        scripts = s if isinstance(s := data.get("scripts"), dict) else {}
        out.update({f"scripts.{k}": v for k, v in scripts.items()
                    if k in PACKAGE_JSON_SCRIPTS or k.startswith(("test:", "lint"))})
        return out, None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return {}, f"TOML error: {exc}"
    out = {}
    for key in CARGO_SECTIONS:
        node: object = data
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            out[key] = node
    return out, None
