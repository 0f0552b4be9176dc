"""Does an added suppression comment hide anything?  Ask the linter.

The comment monitors block every suppression a change adds (pattern 27), but
a coded ``# noqa: E501`` on a line ruff does not report, or a
``# type: ignore[assignment]`` on a line mypy accepts, hides nothing: it is
noise, not a cheat, and vetoing the fix around it throws away honest work.
So for each such finding the linter runs on the changed file twice, in a copy
of the tree with the change applied (the project's own linter configuration
decides which rules are on): once as changed, once with the added
suppression comments taken out.  Findings on that line, of the suppressed
codes, that appear only without the comment are what it hides.

- hides something: the finding stays, with what it hides as evidence;
- hides nothing: the finding goes, and a note says so;
- the linter is not installed, fails or times out: the finding stays (the
  old rule) and a note says why it could not be checked.

``# noqa`` is ruff's (and flake8's) and ``# type: ignore`` mypy's; other
kinds (pyright, pylint, nosec) keep the old rule.
"""

from __future__ import annotations

import configparser
import json
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ornith_lsp import procs
from ornith_lsp.guard.monitors.comments import LINE_SUPPRESSIONS, added_suppressions, comments
from ornith_lsp.guard.monitors.core import FileChange
from ornith_lsp.guard.verdict import Finding
from ornith_lsp.tasks.linters import find_tool, parse_mypy_output, parse_ruff_json
from ornith_lsp.offloop import off_loop, temporary_directory

TOOL_OF = {"noqa": "ruff", "type: ignore": "mypy"}
DEFAULT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Spot:
    path: str
    line: int
    kind: str
    codes: tuple[str, ...]


async def recheck(
    findings: list[Finding],
    changes: Iterable[FileChange],
    materialise: Callable[[Path], None],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> tuple[list[Finding], list[str]]:
    """(findings to keep, notes): suppression findings the linter clears are dropped."""
    by_path = {c.path: c for c in changes}
    spots: dict[Finding, Spot] = {}
    for f in findings:
        if f.monitor != "suppression-comment" or f.path not in by_path or f.line is None:
            continue
        for kind, codes, line, file_level in added_suppressions(by_path[f.path]):
            if line == f.line and not file_level:
                spots[f] = Spot(f.path, line, kind, tuple(c for c in codes.split(",") if c))
                break
    if not spots:
        return findings, []
    notes: list[str] = []
    for spot in dict.fromkeys(s for s in spots.values() if s.kind not in TOOL_OF):
        notes.append(f"the `# {spot.kind}` added at {spot.path}:{spot.line} is not checked against its tool "
                     "(the guard asks only ruff and mypy); it is blocked as before")
    cleared: set[Finding] = set()
    evidence: dict[Finding, str] = {}
    async with temporary_directory("ornith-lint-") as tmp:
        tree = Path(tmp) / "tree"
        await off_loop(materialise, tree)  # a copied tree: off the event loop
        for tool in sorted({TOOL_OF.get(s.kind, "") for s in spots.values()} - {""}):
            prefix = find_tool(tool)
            mine = {f: s for f, s in spots.items() if TOOL_OF.get(s.kind) == tool}
            shown = ", ".join(sorted({f"{s.path}:{s.line}" for s in mine.values()}))
            if prefix is None:
                notes.append(f"{tool} is not installed, so the suppression(s) added at {shown} could not be checked "
                             "against it; they are blocked as before")
                continue
            if tool == "ruff":
                known = await _ruff_codes(prefix, timeout_s)
                unknown = {f: s for f, s in mine.items()
                           if known is not None and any(not any(k.startswith(c) for k in known) for c in s.codes)}
                for f, s in unknown.items():
                    notes.append(f"ruff does not know the code(s) {','.join(s.codes)} of the `# noqa` added at "
                                 f"{s.path}:{s.line} (another linter's?), so it cannot tell what it hides; blocked as before")
                    del mine[f]
            for path in sorted({s.path for s in mine.values()}):
                here = {f: s for f, s in mine.items() if s.path == path}
                text = by_path[path].new_text or ""
                try:
                    with_comment = await _lint(tool, prefix, tree, path, text, Path(tmp), timeout_s)
                    without = await _lint(tool, prefix, tree, path, strip(text, here.values()), Path(tmp), timeout_s)
                except LintFailed as exc:
                    notes.append(f"{tool} could not check {path} ({exc}); its added suppression(s) are blocked as before")
                    continue
                finally:
                    _write(tree / path, text)
                for f, spot in here.items():
                    hidden = sorted((without - with_comment) & {d for d in without if _matches(d, spot)})
                    if hidden:
                        evidence[f] = "; without it " + tool + " reports " + "; ".join(f"{code} {msg[:80]!r}" for _, code, msg in hidden[:3])
                    else:
                        cleared.add(f)
                        what = f"# {spot.kind}" + (f"[{','.join(spot.codes)}]" if spot.codes and spot.kind != "noqa" else
                                                   f": {','.join(spot.codes)}" if spot.codes else "")
                        notes.append(f"the `{what}` added at {path}:{spot.line} suppresses nothing: {tool} reports "
                                     f"{'none of ' + ','.join(spot.codes) if spot.codes else 'nothing'} on that line without it; allowed")
    kept = []
    for f in findings:
        if f in cleared:
            continue
        if f in evidence:
            f = Finding(f.layer, f.monitor, f.path, f.line, f.evidence + evidence[f])
        kept.append(f)
    return kept, notes


def _matches(diag: tuple[int, str, str], spot: Spot) -> bool:
    line, code, _ = diag
    if line != spot.line:
        return False
    if not spot.codes:
        return True
    return any(code == c or (spot.kind == "noqa" and code.startswith(c)) for c in spot.codes)


def strip(text: str, spots: Iterable[Spot]) -> str:
    """``text`` with the suppression comments of ``spots`` removed; lines keep their numbers."""
    lines = text.splitlines(keepends=True)
    wanted = {s.line: s.kind for s in spots}
    for line, comment, _ in comments(text):
        kind = wanted.get(line)
        if kind is None or not (0 < line <= len(lines)):
            continue
        pattern = dict(LINE_SUPPRESSIONS)[kind]
        cleaned = pattern.sub("", comment).strip()
        original = lines[line - 1]
        replacement = "" if cleaned in ("", "#") else ("  " + cleaned if not cleaned.startswith("#") else "  " + cleaned)
        index = original.rfind(comment)
        if index < 0:
            continue
        body = original[:index].rstrip()
        ending = original[len(original.rstrip("\r\n")):]
        lines[line - 1] = (body + replacement if body else replacement.strip()) + ending
    return "".join(lines)


_RUFF_CODES: dict[tuple[str, ...], set[str] | None] = {}


async def _ruff_codes(prefix: list[str], timeout_s: float) -> set[str] | None:
    """Every rule code this ruff knows (``ruff rule --all``), once per process; None if it will not say."""
    key = tuple(prefix)
    if key not in _RUFF_CODES:
        run = await procs.run([*prefix, "rule", "--all", "--output-format=json"], None, timeout_s)
        try:
            codes = {r["code"] for r in json.loads(run.output) if isinstance(r, dict) and r.get("code")}
        except (ValueError, TypeError, KeyError):
            codes = None
        _RUFF_CODES[key] = codes if codes else None
    return _RUFF_CODES[key]


class LintFailed(Exception):
    pass


async def _lint(tool: str, prefix: list[str], tree: Path, path: str, text: str, tmp: Path,
                timeout_s: float) -> set[tuple[int, str, str]]:
    """(line, code, message) of every finding ``tool`` reports in ``path`` with ``text`` in it."""
    _write(tree / path, text)
    if tool == "ruff":
        argv = [*prefix, "check", "--output-format=json", "--no-fix", "--no-cache", "--force-exclude",
                *flake8_as_ruff(tree), path]
    else:
        argv = [*prefix, "--no-error-summary", "--no-pretty", "--show-error-codes", "--follow-imports=silent",
                f"--cache-dir={tmp / 'mypy-cache'}", path]
    run = await procs.run(argv, tree, timeout_s)
    if run.timed_out:
        raise LintFailed(f"no answer within {timeout_s:g} s")
    if run.returncode not in (0, 1):
        raise LintFailed(f"exit code {run.returncode}: {run.output.strip()[-200:]}")
    try:
        tasks = parse_ruff_json(run.output, tree) if tool == "ruff" else parse_mypy_output(run.output, tree)
    except ValueError as exc:
        raise LintFailed(str(exc)) from None
    return {(t.location.line, t.code or "", t.message) for t in tasks
            if t.location is not None and t.location.path == path}


RUFF_CONFIGS = ("ruff.toml", ".ruff.toml")
FLAKE8_CONFIGS = (".flake8", "setup.cfg", "tox.ini")
FLAKE8_DEFAULT_SELECT = ("E", "W", "F", "C90")


def flake8_as_ruff(tree: Path) -> list[str]:
    """A project that lints with flake8 (and has no ruff configuration) means flake8's
    rules when it writes ``# noqa``: ask ruff, which implements them, with flake8's
    selection and line length instead of ruff's own defaults."""
    if any((tree / name).is_file() for name in RUFF_CONFIGS):
        return []
    pyproject = tree / "pyproject.toml"
    if pyproject.is_file():
        try:
            if "ruff" in (tomllib.loads(pyproject.read_text(errors="replace")).get("tool") or {}):
                return []
        except (tomllib.TOMLDecodeError, AttributeError):
            pass
    for name in FLAKE8_CONFIGS:
        if not (tree / name).is_file():
            continue
        parser = configparser.RawConfigParser(strict=False, interpolation=None)
        try:
            parser.read_string((tree / name).read_text(errors="replace"))
        except configparser.Error:
            continue
        if not parser.has_section("flake8"):
            continue
        options = dict(parser.items("flake8"))

        def codes(key: str) -> list[str]:
            return [c.strip() for c in re.split(r"[,\s]+", options.get(key, "")) if re.fullmatch(r"[A-Z]+[0-9]*", c.strip())]  # noqa: B023 -- called within this iteration only

        argv = ["--isolated", "--select", ",".join(codes("select") or FLAKE8_DEFAULT_SELECT)]
        extra = codes("extend-select") + codes("extend_select")
        ignored = codes("ignore") + codes("extend-ignore") + codes("extend_ignore")
        if extra:
            argv += ["--extend-select", ",".join(extra)]
        if ignored:
            argv += ["--ignore", ",".join(ignored)]
        length = (options.get("max-line-length") or options.get("max_line_length") or "79").strip()
        if length.isdigit():
            argv += ["--line-length", length]
        return argv
    return []


def _write(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(text.encode("utf-8", "surrogateescape"))
