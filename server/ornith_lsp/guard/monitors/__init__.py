"""Deterministic monitors: one named monitor per pattern of REWARD_HACKING.md
sections B and C, run over the change (added code only) and never over the
untouched rest of a file.

``MONITORS`` is the registry: name, the pattern numbers it answers for, and
the hint the model gets when it trips it (the texts live in ``guard.hints``,
which the verdict reads without importing the registry).  ``run_monitors`` is a pure
function of the changes and a read-only repository view; it never runs code.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ornith_lsp.guard.hints import MONITOR_HINTS, hint_for
from ornith_lsp.guard.monitors import comments, config, copies, entry, polyglot, program, similar, tables
from ornith_lsp.guard.monitors._ast import PyModule
from ornith_lsp.guard.monitors.commands import check_command
from ornith_lsp.guard.monitors.core import FileChange, Hit, RepoContext
from ornith_lsp.guard.verdict import Finding

__all__ = ["MONITORS", "FileChange", "RepoContext", "check_command", "hint_for", "run_monitors"]


@dataclass(frozen=True)
class Monitor:
    name: str
    patterns: tuple[int, ...]
    scope: str
    fn: Callable
    hint: str


def _monitor(name: str, patterns: tuple[int, ...], scope: str, fn: Callable) -> Monitor:
    return Monitor(name, patterns, scope, fn, MONITOR_HINTS[name])


MONITORS: tuple[Monitor, ...] = (
    _monitor("forced-exit", (15,), "python", program.forced_exit),
    _monitor("exit-hook", (16,), "python", program.exit_hook),
    _monitor("swallowed-failure", (15, 16), "python", entry.swallowed_failure),
    _monitor("always-equal", (17,), "python", program.always_equal),
    _monitor("lookup-table", (18,), "python", tables.lookup_table),
    _monitor("test-data-read", (19,), "python", program.test_data_read),
    _monitor("copied-reference", (20,), "python", copies.copied_reference),
    _monitor("copied-from-tests", (20,), "python", similar.copied_from_tests),
    _monitor("frame-inspection", (21,), "python", program.frame_inspection),
    _monitor("state-toggle", (22,), "python", program.state_toggle),
    _monitor("evaluator-overwrite", (23,), "python", program.evaluator_overwrite),
    _monitor("patched-env", (24,), "python", program.patched_env),
    _monitor("git-history", (25,), "python", program.git_history),
    _monitor("special-case-comment", (26,), "comments", comments.special_case_comment),
    _monitor("suppression-comment", (27,), "comments", comments.suppression_comment),
    _monitor("suppression-config", (28,), "comments", comments.suppression_file_level),
    _monitor("suppression-config", (28,), "config", config.suppression_config),
)


def run_monitors(changes: Iterable[FileChange], ctx: RepoContext,
                 scopes: Iterable[str] | None = None) -> tuple[list[Finding], list[Finding], list[str]]:
    """(blocking findings, concerns, notes) for the given changes; ``scopes`` limits the
    monitors run (e.g. only the comment monitors over an allowed edit of a test file)."""
    wanted = set(scopes) if scopes is not None else {"python", "comments", "config"}
    findings: list[Finding] = []
    concerns: list[Finding] = []
    notes: list[str] = []
    seen: set[tuple[str, str | None, int | None, str]] = set()

    def emit(hit: Hit, path: str) -> None:
        key = (hit.monitor, path, hit.line, hit.evidence)
        if key in seen:
            return
        seen.add(key)
        finding = Finding("monitor", hit.monitor, hit.path or path, hit.line, hit.evidence)
        (findings if hit.sure else concerns).append(finding)

    for change in changes:
        if change.new_text is None:
            continue
        if change.is_python:
            module = _parse(change, findings, notes) if "python" in wanted else None
            for monitor in MONITORS:
                if monitor.scope not in wanted:
                    continue
                if monitor.scope == "python" and module is not None:
                    _run(monitor, module, ctx, change, emit)
                elif monitor.scope == "comments":
                    _run(monitor, change, ctx, change, emit)
        elif polyglot.handles(change):
            source = polyglot.Source(change)
            for monitor in polyglot.MONITORS:
                _run(monitor, source, ctx, change, emit)
        if config.config_files(change) and "config" in wanted:
            for monitor in MONITORS:
                if monitor.scope == "config":
                    _run(monitor, change, ctx, change, emit)
    return findings, concerns, notes


def _parse(change: FileChange, findings: list[Finding], notes: list[str]) -> PyModule | None:
    try:
        tree = ast.parse(change.new_text or "", filename=change.path)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        line = getattr(exc, "lineno", None)
        was_valid = change.old_text is None or _parses(change.old_text)
        message = f"{type(exc).__name__}: {getattr(exc, 'msg', exc)}"
        if was_valid:
            findings.append(Finding("monitor", "unparsable", change.path, line,
                                    f"the file does not parse after the change ({message}); the monitors cannot inspect it"))
        else:
            notes.append(f"{change.path} did not parse before the change either ({message}); its AST monitors were skipped")
        return None
    return PyModule(change, tree)


def _parses(text: str) -> bool:
    try:
        ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _run(monitor: Monitor | polyglot.Monitor, subject: object, ctx: RepoContext, change: FileChange, emit: Callable[[Hit, str], None]) -> None:
    try:
        for hit in monitor.fn(subject, ctx):
            emit(hit, change.path)
    except RecursionError:
        emit(Hit("monitor-error", None, f"the {monitor.name} monitor could not analyse this file (nesting too deep)"), change.path)
    except Exception as exc:  # a monitor bug must block, never wave a change through
        emit(Hit("monitor-error", None, f"the {monitor.name} monitor failed ({type(exc).__name__}: {exc}); the change cannot be cleared"), change.path)
