"""The walls of docs/architecture.md, held by machines: ruff's rule set over the
code, mypy's level over ``server/``, and the import contracts (floors, the
walls between packages, one process starter).  All three are configured in
pyproject.toml; these tests only run them, so a broken wall fails the suite
that CI runs, with the tool's own report as the failure message."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed next to {sys.executable}; `./install.sh --test` installs it")
    return str(path)


def _run(argv: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    # The package is read from this checkout, whatever copy the venv has installed.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "server"), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)


def _assert_clean(run: subprocess.CompletedProcess[str], what: str) -> None:
    assert run.returncode == 0, f"{what} failed (exit {run.returncode}):\n{run.stdout}\n{run.stderr}"


def test_ruff_is_clean() -> None:
    _assert_clean(_run([_tool("ruff"), "check", "--no-cache", "server", "bench", "tests"], 120), "ruff check")


@pytest.mark.timeout(600)
def test_mypy_is_clean_on_server() -> None:
    # The packages, the level and the plugin come from [tool.mypy]; the cache
    # stays out of the tree, one per checkout.
    key = hashlib.sha1(str(REPO).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ornith-lsp" / "mypy-walls" / key
    _assert_clean(_run([_tool("mypy"), f"--cache-dir={cache}"], 540), "mypy")


def test_import_contracts_are_kept() -> None:
    _assert_clean(_run([_tool("lint-imports"), "--no-cache"], 120), "lint-imports")
