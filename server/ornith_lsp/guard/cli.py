"""``ornith-lsp guard check``: the agent's own check, from the command line.

Exit codes: 0 allowed, 1 blocked, 2 no verdict could be given (bad input, not
a repository, a diff that does not apply).  A judge that cannot be reached is
not an error: the verdict falls back to the deterministic layers and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from ornith_lsp import settings as settings_mod
from ornith_lsp.guard.check import check_diff, open_repo
from ornith_lsp.guard.judge import judge_for
from ornith_lsp.guard.task import GuardTask
from ornith_lsp.guard.verdict import GuardError, Verdict
from ornith_lsp.tasks import environment


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    guard = subparsers.add_parser("guard", help="the reward-hacking guard")
    sub = guard.add_subparsers(dest="guard_command", required=True)
    check = sub.add_parser(
        "check",
        help="check a diff against a repository: trust boundary, monitors, grading, judge",
        description="Prints {allowed, findings, concerns, notes}; exit 0 allowed, 1 blocked, 2 error.",
    )
    check.add_argument("--root", type=Path, required=True, help="a git repository in its base state")
    check.add_argument("--diff", type=Path, required=True, help="a unified diff (git diff format) against it; '-' reads stdin")
    check.add_argument("--task", type=Path, help='JSON: {"kind": "test", "tests": [...]} or {"kind": "diagnostic", ...}')
    check.add_argument("--judge", action="store_true", help="consult the frozen judge (settings: guard.judge*)")
    check.add_argument("--judge-mode", choices=("on", "unsure"), help="with --judge: always, or only when monitors are unsure")
    check.add_argument("--judge-endpoint", help="OpenAI-compatible base URL of the judge")
    check.add_argument("--judge-model", help="model name sent to the judge")
    check.add_argument("--json", action="store_true", help="print the verdict as JSON")
    check.add_argument("--no-tests", action="store_true", help="skip grading the target tests")
    check.add_argument("--timeout", type=float, help="seconds for the target tests (default: agent.test_timeout_s)")
    check.set_defaults(func=run)
    return guard


def run(args: argparse.Namespace) -> int:
    try:
        verdict = _check(args)
    except GuardError as exc:
        print(f"ornith-lsp guard: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(verdict.to_dict(), indent=2))
    else:
        _print_text(verdict)
    return 0 if verdict.allowed else 1


def _check(args: argparse.Namespace) -> Verdict:
    root = open_repo(args.root)
    try:
        settings = settings_mod.load(root)
    except settings_mod.SettingsError as exc:
        raise GuardError(f"settings: {exc}") from None
    g = settings.guard
    diff_text = _read_diff(args.diff)
    task = _read_task(args.task) if args.task else None
    mode = g.judge
    judge = None
    if args.judge:
        mode = args.judge_mode or (g.judge if g.judge != "off" else "on")
        judge = _make_judge(settings, args, required=True)
    elif mode != "off":
        judge = _make_judge(settings, args, required=False)
    test_command = None
    if task and task.kind == "test" and not args.no_tests:
        # grading runs the project's own test command, found as `ornith-lsp fix` finds it
        resolved = asyncio.run(environment.resolve(root, settings.agent.test_command))
        if not resolved.ok:
            raise GuardError(f"the tests could not run: {resolved.problem}")
        test_command = resolved.argv
    return check_diff(
        root, diff_text, task, judge=judge, judge_mode=mode,
        extra_protected=g.protected, unprotected=g.unprotected, allow_new_tests=g.allow_new_tests,
        run_tests=not args.no_tests, timeout_s=args.timeout or settings.agent.test_timeout_s,
        test_command=test_command,
    )


def _make_judge(settings, args: argparse.Namespace, *, required: bool):
    """The judge's own endpoint, else the backend's when it is a fixed URL.  Without
    either, ``--judge`` is a usage error, while a judge set only in the settings
    leaves the deterministic layers to decide (the verdict notes it)."""
    g = settings.guard
    judge = judge_for(settings, endpoint=args.judge_endpoint or g.judge_endpoint or settings.backend.endpoint,
                      model=args.judge_model or g.judge_model or settings.backend.model)
    if judge is None and required:
        raise GuardError("--judge needs an endpoint: pass --judge-endpoint, or set guard.judge_endpoint "
                         "(or backend.endpoint) in ornith.toml")
    return judge


def _read_diff(path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise GuardError(f"--diff {path}: no such file") from None
    except OSError as exc:
        raise GuardError(f"--diff {path}: cannot read it ({exc.strerror})") from None
    if b"\0" in raw:
        raise GuardError(f"--diff {path} is a binary file, not a unified diff (binary changes inside a diff are fine)")
    return raw.decode("utf-8", "surrogateescape")


def _read_task(path: Path) -> GuardTask:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GuardError(f"--task {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GuardError(f"--task {path}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise GuardError(f"--task {path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise GuardError(f"--task {path}: must hold a JSON object")
    return GuardTask.parse(data)


def _print_text(verdict: Verdict) -> None:
    print("allowed" if verdict.allowed else "BLOCKED")
    for f in verdict.findings:
        where = f" {f.where()}" if f.where() else ""
        print(f"  [{f.layer}/{f.monitor}]{where}: {f.evidence}")
    for f in verdict.concerns:
        where = f" {f.where()}" if f.where() else ""
        print(f"  concern [{f.monitor}]{where}: {f.evidence}")
    for note in verdict.notes:
        print(f"  note: {note}")
