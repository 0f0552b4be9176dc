"""Shared fixtures.  The backend tests use the REAL llama-server and the REAL
embedded GGUF installed by ``./install.sh --test``; they fail (not skip) when
either is missing, because CI must prove the real path works."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from ornith_lsp.backends import embedded


# Plumbing tests run the tiny embedded model (it loads in a second and answers
# at ~150 tok/s here); tests about fixing bugs ask for the default coder model
# by name.  The environment wins over every other settings layer, so spawned
# ornith-lsp processes inherit the choice too.
os.environ["ORNITH_BACKEND__EMBEDDED_MODEL"] = "tiny"


@pytest.fixture(scope="session")
def llama_server() -> Path:
    path, _ = embedded.find_llama_server()
    return path


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    return embedded.find_embedded_model("tiny")


# Limits of the tests that run the REAL embedded model, nested so the inner
# one always fires first and says what ran out: the agent's wall budget <
# the subprocess' timeout < pytest's timeout.  Sized for a 2-core machine that
# is also running another llama-server (generation there measured at ~2
# tokens/s for SmolLM2-135M, a 1.5k-token prefill at ~27 tokens/s).
REAL_MODEL_WALL_S = 360
REAL_MODEL_PROCESS_S = 600
REAL_MODEL_TEST_S = 720


# Every process this test run starts inherits this tag, so the leak check below
# only ever looks at (and kills) our own llama-servers, never another run's.
RUN_TAG = f"OLSP_TEST_RUN={uuid.uuid4().hex}"
os.environ["OLSP_TEST_RUN"] = RUN_TAG.split("=", 1)[1]


def _ours(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return RUN_TAG.encode() in fh.read().split(b"\0")
    except OSError:
        return False


def llama_server_pids() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "llama-server"], capture_output=True, text=True).stdout
    return {int(p) for p in out.split() if _ours(int(p))}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture
def no_new_llama_servers():
    """Fails the test if it leaves a llama-server behind; kills leftovers so one
    failure does not poison the rest of the run."""
    before = llama_server_pids()
    yield
    left = {p for p in llama_server_pids() - before if alive(p)}
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"llama-server processes left behind: {sorted(left)}"
