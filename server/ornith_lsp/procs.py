"""The one way this project starts a process.

Every child gets its own process group (so a test runner that forks, or a
backend with helpers, dies as a whole) and, on Linux, a parent-death signal
(so an editor that kills the language server with SIGKILL leaves no orphan
behind).  Output goes to a file the user can read, never to /dev/null.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

_PR_SET_PDEATHSIG = 1
try:
    _libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
except OSError:  # pragma: no cover - exotic libc
    _libc = None


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: ask the kernel for SIGKILL when
    the parent thread dies.  Only an async-signal-safe libc call happens here."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


async def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> asyncio.subprocess.Process:
    """Start ``argv`` in a new session with stdout+stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(argv)}\n".encode())
        log.flush()
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal the whole process group led by ``pid``; a vanished group is fine."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def terminate(proc: asyncio.subprocess.Process, grace_s: float = 5.0) -> int | None:
    """SIGTERM the group, then SIGKILL it if it has not exited within ``grace_s``."""
    if proc.returncode is None:
        kill_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace_s)
        except asyncio.TimeoutError:
            pass
    kill_group(proc.pid, signal.SIGKILL)
    if proc.returncode is None:
        await proc.wait()
    return proc.returncode


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the caller retries if it loses a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def tail(path: Path, lines: int = 20) -> str:
    """The end of a log, for error messages that should show the real cause."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class RunResult(NamedTuple):
    """How a bounded run ended.  ``returncode`` is the leader's exit status (a
    negative signal number after a timeout kill); ``pid`` is also the process
    group id, so a caller can prove nothing of the run is left."""

    returncode: int | None
    output: str
    timed_out: bool
    pid: int


async def run(
    argv: Sequence[str],
    cwd: Path | None,
    timeout_s: float,
    *,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    max_output: int = 200_000,
) -> RunResult:
    """Run a tool to completion (test runner, linter) and return its output.

    Whatever happens -- normal exit, timeout, or the caller being cancelled --
    the whole process group is killed afterwards: a test suite that forked a
    daemon must not outlive the run.  Output goes through a file rather than a
    pipe so that a leftover child holding the descriptor cannot make us wait
    for an EOF that never comes.  Without ``log_path`` the file is temporary;
    ``output`` keeps the last ``max_output`` characters.
    """
    own_log = log_path is None
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="ornith-run-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    start = log_path.stat().st_size if log_path.exists() else 0
    timed_out = False
    try:
        proc = await spawn(argv, log_path=log_path, cwd=cwd, env=env)
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except asyncio.TimeoutError:
            timed_out = True
        finally:
            await terminate(proc, grace_s=2.0)
        with open(log_path, "rb") as fh:
            fh.seek(start)
            output = fh.read().decode("utf-8", "replace")
    finally:
        if own_log:
            log_path.unlink(missing_ok=True)
    if len(output) > max_output:
        output = "[... output truncated ...]\n" + output[-max_output:]
    return RunResult(proc.returncode, output, timed_out, proc.pid)


class CaptureResult(NamedTuple):
    """How a short synchronous run ended; ``stdout`` and ``stderr`` kept apart
    because a caller parses the one and reports the other."""

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool


def capture(argv: Sequence[str], timeout_s: float) -> CaptureResult:
    """Run a short probe (``nvidia-smi``) to completion from synchronous code.

    Same guarantees as :func:`run`: its own process group, killed whole
    afterwards, a parent-death signal, and output through files rather than
    pipes.  A missing binary raises :class:`FileNotFoundError`, as exec does.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 -- one prctl call, async-signal-safe
        )
        timed_out = False
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            kill_group(proc.pid)
            proc.wait()
        out.seek(0)
        err.seek(0)
        return CaptureResult(
            proc.returncode, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"), timed_out
        )
