"""The one way this project starts a process.

Every child gets its own process group (so a test runner that forks, or a
backend with helpers, dies as a whole) and, on Linux, a parent-death signal
(so an editor that kills the language server with SIGKILL leaves no orphan
behind).  Output goes to a file the user can read, never to /dev/null.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
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


# Test runs and linters yield the CPU to the process that answers the editor:
# on a busy machine a hover must not wait behind a test suite.
TOOL_NICENESS = 5


def _tool_child() -> None:
    _die_with_parent()
    os.nice(TOOL_NICENESS)


# A ``preexec_fn`` makes Python fork() the whole server -- copying the page
# tables of a process of a few hundred MB, on the event loop -- where without
# one it can vfork(): ~15 ms against ~0.3 ms per start, and a test run starts
# a few per fix.  So a tool gets its death signal from ``setpriv`` (util-linux)
# instead, exec'd in the child; its niceness is set from here once it runs.
_PDEATHSIG_PREFIX = ["setpriv", "--pdeathsig", "KILL", "--"]
_wrapper: list[str] | None | bool = False  # False: not probed yet


def _probe_wrapper() -> list[str] | None:
    """The ``setpriv`` prefix when this machine's setpriv knows --pdeathsig
    (util-linux 2.33+), else None: tools then start through ``preexec_fn``."""
    if shutil.which("setpriv") is None:
        return None
    try:
        ok = subprocess.run([*_PDEATHSIG_PREFIX, "true"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return _PDEATHSIG_PREFIX if ok else None


async def _tool_prefix() -> list[str] | None:
    global _wrapper
    if _wrapper is False:
        _wrapper = await asyncio.to_thread(_probe_wrapper)
    return _wrapper  # type: ignore[return-value]


def _executable(argv0: str, cwd: Path | None, env: Mapping[str, str] | None) -> str:
    """``argv0`` as exec would find it, or the error exec would raise: behind
    ``setpriv`` a missing tool would otherwise be an exit status, not an
    OSError its caller knows to report as "not installed"."""
    if os.sep in argv0:
        found = str(Path(cwd or ".") / argv0)
        if not os.path.exists(found):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv0)
        if os.path.isdir(found) or not os.access(found, os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), argv0)
        return os.path.abspath(found)
    path = os.pathsep.join(os.get_exec_path(dict(env) if env is not None else None))
    which = shutil.which(argv0, path=path)
    if which is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv0)
    return os.path.abspath(which)


def _lower_priority(pid: int) -> None:
    """What ``os.nice(TOOL_NICENESS)`` in the child would have done."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + TOOL_NICENESS))


async def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    nice: bool = False,
) -> asyncio.subprocess.Process:
    """Start ``argv`` in a new session with stdout+stderr appended to ``log_path``
    (with ``nice``, at a lower CPU priority: a tool, not the model server)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    prefix = await _tool_prefix() if nice else None
    with open(log_path, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(argv)}\n".encode())
        log.flush()
        proc = await asyncio.create_subprocess_exec(
            *([*prefix, _executable(argv[0], cwd, env), *argv[1:]] if prefix else argv),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            preexec_fn=None if prefix else _tool_child if nice else _die_with_parent,
        )
    _GROUPS.add(proc.pid)
    if prefix:
        _lower_priority(proc.pid)
    return proc


# Process groups started here and not yet reaped: what a last-resort exit
# (a second signal, a server told to die at once) must kill synchronously.
_GROUPS: set[int] = set()


def live_groups() -> set[int]:
    """Groups started by :func:`spawn` that are not known to be reaped."""
    return set(_GROUPS)


def kill_all_groups() -> list[int]:
    """SIGKILL every group this process started; safe in a signal handler."""
    killed = sorted(_GROUPS)
    for pid in killed:
        kill_group(pid)
    _GROUPS.clear()
    return killed


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal the whole process group led by ``pid``; a vanished group is fine."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        _GROUPS.discard(pid)


async def terminate(proc: asyncio.subprocess.Process, grace_s: float = 5.0) -> int | None:
    """SIGTERM the group, then SIGKILL it if it has not exited within ``grace_s``."""
    if proc.returncode is None:
        kill_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace_s)
        except TimeoutError:
            pass
    kill_group(proc.pid, signal.SIGKILL)
    if proc.returncode is None:
        await proc.wait()
    _GROUPS.discard(proc.pid)
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


def _read_from(path: Path, start: int) -> str:
    """The log from ``start`` on: read in a thread by :func:`run`, since a test
    runner's output can run to megabytes and the event loop serves an editor."""
    with open(path, "rb") as fh:
        fh.seek(start)
        return fh.read().decode("utf-8", "replace")


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
        proc = await spawn(argv, log_path=log_path, cwd=cwd, env=env, nice=True)
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            timed_out = True
        finally:
            await terminate(proc, grace_s=2.0)
        output = await asyncio.to_thread(_read_from, log_path, start)
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
            preexec_fn=_die_with_parent,  # one prctl call, async-signal-safe
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
# -- who owns what -------------------------------------------------------------------------
def start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None when
    there is no such process.  A pid plus its start time names one process for
    good: a recycled pid has a different start time."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == b"Z":  # a zombie has finished its work
        return None
    return int(fields[19])


def owner_alive(pid: int, started: int | None) -> bool:
    """Whether the process that wrote a marker still runs.  Without /proc
    (not Linux) only the pid can be checked."""
    if not Path("/proc/self/stat").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    now = start_time(pid)
    return now is not None and (started is None or now == started)


# -- interruption ------------------------------------------------------------------------
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def exit_code(signum: int) -> int:
    """The shell's convention: 128 + the signal number (130 SIGINT, 143 SIGTERM, 129 SIGHUP)."""
    return 128 + signum


class Interruption:
    """Turns SIGINT/SIGTERM/SIGHUP into a cancellation of one asyncio task, so
    an interrupted run unwinds through its ``finally`` blocks -- test runs
    reaped, shadow worktrees removed, the backend stopped -- and can still say
    what it did.  A second signal only says that clean-up is under way; a
    third gives up on it: every process group started here is killed, the
    hard-exit hooks run (e.g. removing shadow worktrees synchronously), and
    the process exits at once.
    """

    def __init__(self, on_hard_exit: Callable[[], object] | None = None, stream=None) -> None:
        self.signum: int | None = None
        self.at: float | None = None
        self.count = 0
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_hard_exit = on_hard_exit
        self._stream = stream if stream is not None else sys.stderr
        self._deferred = False

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    @property
    def reason(self) -> str:
        return f"interrupted by {self.name}" if self.signum else ""

    def install(self, task: asyncio.Task | None = None) -> Interruption:
        self._loop = asyncio.get_running_loop()
        self._task = task or asyncio.current_task()
        for sig in INTERRUPT_SIGNALS:
            self._loop.add_signal_handler(sig, self._on_signal, sig)
        return self

    def uninstall(self) -> None:
        if self._loop is None:
            return
        for sig in INTERRUPT_SIGNALS:
            with contextlib.suppress(Exception):
                self._loop.remove_signal_handler(sig)
        self._loop = None

    @contextlib.contextmanager
    def deferred(self):
        """A section that must not be cut in half (writing the user's files):
        a signal inside it is recorded, and acted on by the caller after it."""
        self._deferred = True
        try:
            yield
        finally:
            self._deferred = False

    def _say(self, text: str) -> None:
        with contextlib.suppress(Exception):
            self._stream.write(f"ornith-lsp: {text}\n")
            self._stream.flush()

    def _on_signal(self, signum: int) -> None:
        self.count += 1
        if self.count == 1:
            self.signum, self.at = signum, time.monotonic()
            if self._deferred:
                self._say(f"{signal.Signals(signum).name} received: finishing the files being written first")
                return
            self._say(f"{signal.Signals(signum).name} received: stopping the running task and cleaning up")
            if self._task is not None and not self._task.done():
                self._task.cancel(self.reason)
        elif self.count == 2:
            self._say("still cleaning up; signal once more to quit at once (leftovers are swept at the next start)")
        else:
            self.hard_exit(signum)

    def hard_exit(self, signum: int) -> None:
        kill_all_groups()
        if self._on_hard_exit is not None:
            with contextlib.suppress(Exception):
                self._on_hard_exit()
        os._exit(exit_code(self.signum or signum))

    async def __aenter__(self) -> Interruption:
        return self.install()

    async def __aexit__(self, *exc: object) -> None:
        self.uninstall()

