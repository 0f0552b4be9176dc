"""The language server's protocol: every notification and command result a
client reads, as typed models, with their JSON Schema and TypeScript types.

The notifications are the fix service's events serialised; the command
results are defined here, because they are this front end's and no other's.
Clients in other languages cannot import a pydantic model, and copying the
shapes by hand into TypeScript and Lua is how they drifted before: so the
schema is exported to ``clients/schema/ornith-wire.schema.json`` and the VS
Code client's ``src/wire.ts`` is generated from it, both committed, and a
test fails when either is stale.  Regenerate both with::

    python -m ornith_lsp.lsp.wire --write

Every field is always sent (defaults included), so the schema marks every
field required: a client never has to guess whether a key may be missing.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from ornith_lsp.agent.service import DoneEvent, DoneStatus, PlanEvent, Scaffold, StepEvent, ToolEvent, wire
from ornith_lsp.tasks import Task

__all__ = [
    "COMMANDS",
    "NOTIFICATIONS",
    "ApplyResult",
    "BackendStatus",
    "CancelResult",
    "FileText",
    "FixStarted",
    "FixTestsResult",
    "QueueStatus",
    "RollbackResult",
    "RunTestsResult",
    "ShowResult",
    "TaskStatus",
    "TaskSummary",
    "schema_text",
    "typescript",
    "wire",
    "wire_schema",
]

SCHEMA_PATH = Path("clients/schema/ornith-wire.schema.json")
TYPESCRIPT_PATH = Path("clients/vscode/src/wire.ts")
REGENERATE = "python -m ornith_lsp.lsp.wire --write"

# what a fix is, seen from the editor: how it ended, or that it has not yet
TaskStatus = Literal["pending", "queued", "running", "unknown"] | DoneStatus


class _Result(BaseModel):
    """camelCase on the wire, like the events (JSON-RPC's convention)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class FileText(_Result):
    """One file of a fix as the guard verified it, so a client can preview the
    change without a diff parser of its own."""

    path: str
    before: str | None = Field(description="the text the fix was made against (unsaved buffer or disk); "
                                           "null when the fix creates the file")
    after: str | None = Field(description="the text with the fix applied; null when the fix deletes the file")


class ShowResult(_Result):
    """``ornith.showDiff`` and ``ornith.showPlan``: all the server knows of one fix."""

    task_id: str
    status: TaskStatus
    title: str = ""
    step: str = Field(default="", description="the current step, e.g. 'step 2/3: fix add'; empty when none")
    error: str | None = None
    scaffold: Scaffold | None = None
    diff: str = ""
    verified: bool = False
    reason: str = ""
    checkpoint: str | None = None
    files: list[FileText] = Field(default_factory=list,
                                  description="the verified fix per file; empty unless verified")


class FixStarted(_Result):
    """``ornith.fix``: the fix runs in the background; its events follow."""

    task_id: str
    status: Literal["started", "queued", "running", "refused"]
    reason: str = Field(default="", description="why it was refused")


class RunTestsResult(_Result):
    """``ornith.runTests``: the failures are also published as diagnostics."""

    passed: int
    failed: int
    report_found: bool
    timed_out: bool
    tasks: list[Task]
    error: str | None = Field(default=None, description="why the tests could not run, or ran no tests")


class FixTestsResult(RunTestsResult):
    """``ornith.fixTests``: the test run, and a fix started for each failure."""

    started: list[FixStarted]


class TaskSummary(_Result):
    """One fix of ``ornith.tasks``."""

    task_id: str
    title: str
    status: TaskStatus
    step: str


class QueueStatus(_Result):
    """``ornith.queue``: how loaded the fix queue is."""

    running: int
    queued: int
    concurrency: int
    queue_limit: int


class CancelResult(_Result):
    cancelled: list[str]


class ApplyResult(_Result):
    """``ornith.apply``: whether the editor took the fix's WorkspaceEdit."""

    applied: bool
    reason: str = ""


class RollbackResult(_Result):
    rolled_back: bool
    reason: str = ""
    restored: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    undo: str | None = Field(default=None, description="the checkpoint taken before the rollback: rolling back to it undoes it")


class BackendStatus(BaseModel):
    """``ornith.backendStatus``: the backend's plan and live state.  In the
    backend's own snake_case, as ``doctor --json`` prints it and the clients
    read it; an unknown key is an error here, so the schema cannot fall behind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: Literal["stopped", "starting", "ready", "restarting", "failed"]
    health: Literal["ok", "down"]
    kind: str | None = Field(default=None, description="vllm, llamacpp or remote; null before a backend is planned")
    model: str | None = None
    model_size: str | None = None
    quant: str | None = None
    context_length: int | None = None
    tensor_parallel_size: int | None = None
    gpu_layers: int | None = None
    command: list[str] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    log_path: str | None = None
    error: str | None = None
    pid: int | None = None
    endpoint: str | None = None
    restarts: int | None = None
    last_error: str | None = None


NOTIFICATIONS: dict[str, type[BaseModel]] = {
    "ornith/plan": PlanEvent, "ornith/step": StepEvent, "ornith/tool": ToolEvent, "ornith/fixDone": DoneEvent,
}
COMMANDS: dict[str, Any] = {
    "ornith.backendStatus": BackendStatus, "ornith.fix": FixStarted, "ornith.fixTests": FixTestsResult,
    "ornith.runTests": RunTestsResult, "ornith.apply": ApplyResult, "ornith.showDiff": ShowResult,
    "ornith.showPlan": ShowResult, "ornith.tasks": list[TaskSummary], "ornith.cancel": CancelResult,
    "ornith.cancelAll": CancelResult, "ornith.queue": QueueStatus, "ornith.rollback": RollbackResult,
}


# ---------------------------------------------------------------- JSON Schema


class _AllSent(GenerateJsonSchema):
    """Every field is serialised, defaults included: required on the wire."""

    def field_is_required(self, field: Any, total: bool) -> bool:
        if self.mode == "serialization":
            return not field.get("serialization_exclude")
        return super().field_is_required(field, total)


def _model_of(result: Any) -> type[BaseModel]:
    return typing.get_args(result)[0] if typing.get_origin(result) is list else result


def _ref(result: Any) -> dict[str, Any]:
    ref = {"$ref": f"#/$defs/{_model_of(result).__name__}"}
    return {"type": "array", "items": ref} if typing.get_origin(result) is list else ref


def _messages(table: dict[str, Any], what: str) -> dict[str, Any]:
    return {"type": "object", "description": what, "properties": {name: _ref(r) for name, r in table.items()},
            "required": list(table)}


def wire_schema() -> dict[str, Any]:
    """One JSON Schema for everything the server sends a client: ``properties``
    maps each notification and command to its payload, ``$defs`` holds the types."""
    models = list(dict.fromkeys([*NOTIFICATIONS.values(), *map(_model_of, COMMANDS.values())]))
    _, schema = models_json_schema([(m, "serialization") for m in models], by_alias=True,
                                   ref_template="#/$defs/{model}", schema_generator=_AllSent)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ornith-lsp wire protocol",
        "description": f"Generated by `{REGENERATE}` from server/ornith_lsp/lsp/wire.py; do not edit.",
        "type": "object",
        "properties": {
            "notifications": _messages(NOTIFICATIONS, "method -> params of each notification the server sends"),
            "commands": _messages(COMMANDS, "command -> result of each workspace/executeCommand"),
        },
        "required": ["notifications", "commands"],
        "$defs": dict(sorted(schema["$defs"].items())),
    }


def schema_text(schema: dict[str, Any] | None = None) -> str:
    return json.dumps(schema or wire_schema(), indent=2, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------- TypeScript

_IDENT = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


def _key(name: str) -> str:
    return name if _IDENT.match(name) else json.dumps(name)


def _ts(spec: dict[str, Any], indent: str = "") -> str:
    """A JSON Schema node as a TypeScript type (the subset pydantic emits)."""
    if "$ref" in spec:
        return spec["$ref"].rsplit("/", 1)[-1]
    if "const" in spec:
        return json.dumps(spec["const"])
    if "enum" in spec:
        return " | ".join(json.dumps(v) for v in spec["enum"])
    for union in ("anyOf", "oneOf"):
        if union in spec:
            return " | ".join(dict.fromkeys(_ts(s, indent) for s in spec[union]))
    kind = spec.get("type")
    if isinstance(kind, list):
        return " | ".join(_ts({**spec, "type": k}, indent) for k in kind)
    if kind == "array":
        item = _ts(spec.get("items", {}), indent)
        return f"({item})[]" if " " in item else f"{item}[]"
    if kind == "object":
        if "properties" in spec:
            return "{\n" + "".join(_fields(spec, indent + "  ")) + indent + "}"
        extra = spec.get("additionalProperties")
        return f"Record<string, {_ts(extra, indent) if isinstance(extra, dict) else 'unknown'}>"
    return {"string": "string", "integer": "number", "number": "number", "boolean": "boolean",
            "null": "null"}.get(kind or "", "unknown")


def _doc(text: str | None, indent: str) -> list[str]:
    if not text:
        return []
    lines = text.replace("``", "`").strip().splitlines()
    if len(lines) == 1:
        return [f"{indent}/** {lines[0]} */\n"]
    return [f"{indent}/**\n", *(f"{indent} * {line}".rstrip() + "\n" for line in lines), f"{indent} */\n"]


def _fields(spec: dict[str, Any], indent: str) -> list[str]:
    required = set(spec.get("required", []))
    out = []
    for name, prop in spec.get("properties", {}).items():
        out += _doc(prop.get("description"), indent)
        optional = "" if name in required else "?"
        out.append(f"{indent}{_key(name)}{optional}: {_ts(prop, indent)};\n")
    return out


def typescript(schema: dict[str, Any] | None = None) -> str:
    """``src/wire.ts`` for the VS Code client: an interface per type, and
    ``Notifications`` / ``CommandResults`` mapping each method to its payload."""
    schema = schema or wire_schema()
    out = [f"// Generated by `{REGENERATE}` from clients/schema/ornith-wire.schema.json; do not edit.\n"]
    for name, spec in schema["$defs"].items():
        out += ["\n", *_doc(spec.get("description"), "")]
        if spec.get("type") == "object" and "properties" in spec:
            out += [f"export interface {name} {{\n", *_fields(spec, "  "), "}\n"]
        else:
            out.append(f"export type {name} = {_ts(spec)};\n")
    for title, key in (("Notifications", "notifications"), ("CommandResults", "commands")):
        part = schema["properties"][key]
        out += ["\n", *_doc(part["description"], ""), f"export interface {title} {{\n", *_fields(part, "  "), "}\n"]
    return "".join(out)


# ---------------------------------------------------------------- files


def generated() -> dict[Path, str]:
    """Each generated file (relative to the repository) and what it must hold."""
    schema = wire_schema()
    return {SCHEMA_PATH: schema_text(schema), TYPESCRIPT_PATH: typescript(schema)}


def _checkout() -> Path:
    """The repository this module runs from (a source checkout), else the current directory."""
    here = Path(__file__).resolve().parents[3]
    return here if (here / "clients").is_dir() else Path.cwd()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ornith_lsp.lsp.wire",
                                     description="Print, or write into the repository, the wire schema and wire.ts.")
    parser.add_argument("--write", action="store_true", help="write both generated files")
    parser.add_argument("--root", type=Path, default=None, help="the repository (default: this checkout)")
    args = parser.parse_args(argv)
    if not args.write:
        sys.stdout.write(schema_text())
        return 0
    root = args.root or _checkout()
    for rel, text in generated().items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
        print(f"wrote {root / rel}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
