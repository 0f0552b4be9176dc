"""Pattern 28 in configuration: silencing a linter or type checker from its config.

The boundary already protects these sections, but a user may unprotect them
(to let the agent raise a line length, say), and the monitor must still tell a
suppression from a tightening.  So the parsed old and new configuration are
compared key by key: a key that ignores, excludes or disables gaining items, a
``select`` losing items, or a strictness switch turned off, is a finding.
"""

from __future__ import annotations

import configparser
import json
import re
import tomllib
from collections.abc import Iterator

from ornith_lsp.guard.monitors.core import FileChange, Hit, RepoContext

LINT_TOOLS = ("ruff", "mypy", "pyright", "basedpyright", "pylint", "flake8", "pycodestyle", "pep8", "coverage", "bandit", "pyre")
INI_FILES = {".flake8", "tox.ini", "setup.cfg", "mypy.ini", ".mypy.ini", ".pylintrc", "pylintrc", ".coveragerc"}
TOML_FILES = {"pyproject.toml", "ruff.toml", ".ruff.toml"}
JSON_FILES = {"pyrightconfig.json"}
SUPPRESSIVE_KEY = re.compile(r"ignore|exclude|disable|skip|per[-_]file|allow|exempt|omit|suppress|noqa|baseline", re.I)
STRICT_KEY = re.compile(r"^(select|extend[-_]select|enable|strict\w*|check[-_]\w+|disallow[-_]\w+|warn[-_]\w+|no[-_]implicit[-_]\w+|fail[-_]under|preview|explicit[-_]preview[-_]rules)$", re.I)
WEAK_VALUES = {"off", "none", "basic", "false", "skip", "silent", "warning", "information"}


def config_files(change: FileChange) -> bool:
    name = change.path.rsplit("/", 1)[-1]
    return name in INI_FILES | TOML_FILES | JSON_FILES or name == ".pre-commit-config.yaml"


def suppression_config(change: FileChange, ctx: RepoContext) -> Iterator[Hit]:
    name = change.path.rsplit("/", 1)[-1]
    if name == ".pre-commit-config.yaml":
        yield from _yaml_lines(change)
        return
    old = _flatten_config(name, change.old_text)
    new = _flatten_config(name, change.new_text)
    if old is None or new is None:
        return
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        leaf = key.rsplit(".", 1)[-1]
        reason = None
        if SUPPRESSIVE_KEY.search(key):
            gained = _items(after) - _items(before)
            if gained and _truthy(after):
                reason = f"adds {', '.join(sorted(gained)[:6])} to {key}"
        elif STRICT_KEY.match(leaf):
            lost = _items(before) - _items(after)
            if before is not None and (after is None or after is False or str(after).lower() in WEAK_VALUES):
                reason = f"turns off {key} (was {before!r})"
            elif lost and not isinstance(before, bool):
                reason = f"removes {', '.join(sorted(lost)[:6])} from {key}"
        elif (leaf.lower() in ("typecheckingmode", "type-checking-mode", "follow_imports", "follow-imports") or leaf.startswith("report")) and str(after).lower() in WEAK_VALUES:
            reason = f"sets {key} = {after!r}"
        if reason:
            yield Hit("suppression-config", _line_of(change, leaf), f"{change.path}: {reason}, silencing diagnostics instead of fixing them")


def _flatten_config(name: str, text: str | None) -> dict[str, object] | None:
    if text is None:
        return {}
    try:
        if name in TOML_FILES:
            data = tomllib.loads(text)
            if name == "pyproject.toml":
                tool = data.get("tool", {}) if isinstance(data.get("tool"), dict) else {}
                data = {f"tool.{k}": v for k, v in tool.items() if k.startswith(LINT_TOOLS)}
            return _flatten(data)
        if name in JSON_FILES:
            return _flatten(json.loads(text))
        parser = configparser.RawConfigParser(strict=False, interpolation=None)
        parser.read_string(text)
        return {
            f"{s}.{k}": v for s in parser.sections()
            if s.split(":")[0].split("-")[0].split(".")[0] in LINT_TOOLS or s.startswith(("tool:", "MESSAGES", "MASTER"))
            for k, v in parser.items(s)
        }
    except (tomllib.TOMLDecodeError, configparser.Error, ValueError):
        return None


def _flatten(data: object, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict):
                out.update(_flatten(v, key))
                if not v:
                    out[key] = {}
            else:
                out[key] = v
    return out


def _items(value: object) -> set[str]:
    if value is None or value is False:
        return set()
    if value is True:
        return {"true"}
    if isinstance(value, (list, tuple)):
        return {str(v).strip() for v in value if str(v).strip()}
    if isinstance(value, str):
        if value.strip().lower() in ("true", "yes", "on", "1"):
            return {"true"}
        if value.strip().lower() in ("false", "no", "off", "0", ""):
            return set()
        return {p.strip() for p in re.split(r"[,\n]+", value) if p.strip() and not p.strip().startswith("#")}
    return {str(value)}


def _truthy(value: object) -> bool:
    return bool(_items(value))


def _line_of(change: FileChange, needle: str) -> int | None:
    lines = (change.new_text or "").splitlines()
    for i in sorted(change.added_lines):
        if 0 < i <= len(lines) and needle.lower() in lines[i - 1].lower():
            return i
    return min(change.added_lines) if change.added_lines else None


def _yaml_lines(change: FileChange) -> Iterator[Hit]:
    lines = (change.new_text or "").splitlines()
    for i in sorted(change.added_lines):
        if 0 < i <= len(lines) and re.search(r"--(extend-)?ignore|--exclude|--disable|\bexclude:|--per-file-ignores|skip:", lines[i - 1]):
            yield Hit("suppression-config", i, f"{change.path}: `{lines[i - 1].strip()[:100]}` silences a hook's diagnostics")
