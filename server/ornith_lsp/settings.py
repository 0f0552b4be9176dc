"""Settings: one pydantic model, merged from every place a user can set them.

Precedence, lowest first: defaults < ``ornith.toml`` at the workspace root <
LSP ``initializationOptions`` / ``workspace/didChangeConfiguration`` < CLI
flags < environment (``ORNITH_*``).  The environment wins because it is what
a CI job or a wrapper script controls last.

A bad value must produce one sentence naming the field, the source it came
from and what is allowed -- never a traceback -- so validation errors are
translated by :func:`explain`.

API keys are never settings: ``api_key_env`` names the environment variable
that holds the key, and :func:`api_key` reads it only when a request is made,
so a key can never leak through a settings dump, a log or an LSP message.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENV_PREFIX = "ORNITH_"
TOML_NAME = "ornith.toml"
SOURCES = ("default", TOML_NAME, "editor", "command line", "environment")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class BackendSettings(_Strict):
    """Which model server to use and how to start it."""

    kind: Literal["auto", "embedded", "llamacpp", "vllm", "remote"] = "auto"
    endpoint: str | None = Field(
        None, description="Base URL of an OpenAI-compatible server (remote backend)."
    )
    model: str | None = Field(None, description="Model name sent in requests.")
    api_key_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="NAME of the environment variable holding the API key.",
    )
    model_path: Path | None = Field(None, description="A GGUF file for llama-server.")
    llama_server: Path | None = Field(None, description="Path of the llama-server binary.")
    model_size: Literal["auto", "embedded", "9B", "31B", "35B", "397B"] = "auto"
    draft: Literal["auto", "off", "ngram"] = Field(
        "auto", description="llama-server speculative decoding: ngram drafts from the context (no second model)"
    )
    embedded_model: Literal["coder-1.5b", "tiny"] = Field(
        "coder-1.5b", description="coder-1.5b fixes simple bugs; tiny (SmolLM2-135M) only proves the wiring."
    )
    quant: str | None = Field(None, description="e.g. Q4_K_M, Q5_K_M, bf16, fp8.")
    context_length: int | None = Field(None, ge=512, le=262144)
    gpu_layers: int | None = Field(None, ge=0)
    cpu_moe_layers: int | None = Field(
        None, ge=0, description="Layers whose MoE experts stay in RAM (llama-server --n-cpu-moe); default: planned."
    )
    kv_cache_type: Literal["auto", "f16", "q8_0", "q4_0"] = Field(
        "auto", description="llama-server KV cache type; auto quantizes it only where f16 leaves too little context."
    )
    tensor_parallel_size: int | None = Field(None, ge=1, le=64)
    pipeline_parallel_size: int | None = Field(
        None, ge=1, le=64, description="vLLM pipeline stages: nodes of a Ray cluster."
    )
    parallel: int = Field(1, ge=1, le=64, description="llama-server slots (-np).")
    threads: int | None = Field(None, ge=1, le=1024)
    cache_ram_mib: int = Field(256, ge=0, description="llama-server prompt cache bound.")
    ready_timeout_s: float = Field(120.0, gt=0)
    max_restarts: int = Field(5, ge=0, le=100)


class ClientSettings(_Strict):
    """How requests to the model server behave."""

    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(300.0, gt=0)
    max_retries: int = Field(3, ge=0, le=20)


class AgentSettings(_Strict):
    """Budgets end a task with a report instead of letting a model loop."""

    max_turns: int = Field(24, ge=1, le=500)
    max_tokens: int = Field(200_000, ge=1000)
    max_wall_s: float = Field(600.0, gt=0)
    max_output_tokens: int = Field(512, ge=64, le=32768, description="per model call")
    test_command: list[str] | None = Field(
        None, description="default: found from the project's environment (tasks/environment.py)")
    test_timeout_s: float = Field(120.0, gt=0, description="a whole test run; one test past a third of it fails as hung")
    language: Literal["auto", "python", "javascript", "go", "rust"] = Field(
        "auto", description="whose tests to run; auto: a Python marker, else Cargo.toml, go.mod, package.json")
    test_commands: dict[Literal["javascript", "go", "rust"], list[str]] = Field(
        default_factory=dict, description='per language, e.g. {"go": ["go", "test", "-tags", "unit"]}')
    temperature: float = Field(0.2, ge=0, le=2)
    strategy: Literal["auto", "model-plan", "direct-rewrite", "reproduce-then-fix", "sample-and-verify",
                      "read-then-edit"] = Field(
        "auto", description="auto: a capable model plans for itself, a small one picks a built-in strategy")
    model_class: Literal["auto", "small", "capable"] = Field(
        "auto", description="auto: the embedded models are small, every other model capable")
    edit_format: Literal["auto", "symbol", "file", "search-replace"] = Field(
        "auto", description="how rewrite strategies ask for code; auto: the measured best for the model")
    candidates: int = Field(5, ge=1, le=50, description="fixes sampled and verified by sample-and-verify")
    tool_calls: Literal["auto", "native", "json_schema"] = Field(
        "auto", description="auto: native tool calls when the server and model make them, else constrained JSON")
    concurrency: int | None = Field(
        None, ge=1, le=64, description="fixes the language server runs at once; default: backend.parallel (its slots)"
    )
    queue_limit: int = Field(200, ge=1, le=10000, description="fixes that may wait; more are refused with a message")


class GuardSettings(_Strict):
    """The trust boundary and the judge; see the guard package."""

    protected: list[str] = Field(default_factory=list, description="extra protected globs")
    unprotected: list[str] = Field(default_factory=list, description="globs taken out of the defaults")
    allow_new_tests: bool = Field(True, description="new test modules may be added; they never count toward verification")
    judge: Literal["off", "on", "unsure"] = "off"
    judge_endpoint: str | None = Field(None, description="default: the agent's own backend")
    judge_model: str | None = None
    judge_api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class Settings(_Strict):
    backend: BackendSettings = BackendSettings()
    client: ClientSettings = ClientSettings()
    agent: AgentSettings = AgentSettings()
    guard: GuardSettings = GuardSettings()
    log_dir: Path | None = Field(
        None, description="Where backend logs go; default: $XDG_STATE_HOME/ornith-lsp."
    )

    def resolved_log_dir(self) -> Path:
        if self.log_dir is not None:
            return self.log_dir.expanduser()
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(base) / "ornith-lsp"


class SettingsError(ValueError):
    """A setting that cannot be used; its message is meant for the user as is."""


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _snake(key: str) -> str:
    """Editors send camelCase (``apiKeyEnv``); TOML and env use snake_case."""
    return "".join("_" + c.lower() if c.isupper() else c for c in key).lstrip("_")


def normalise_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        _snake(k): normalise_keys(v) if isinstance(v, Mapping) else v for k, v in data.items()
    }


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """``ORNITH_BACKEND__KIND=remote`` -> ``{"backend": {"kind": "remote"}}``.

    Values that look like JSON lists/objects are parsed so lists can be set too;
    everything else stays a string for pydantic's own coercion.
    """
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        if path[0] not in Settings.model_fields:
            continue  # an unrelated ORNITH_* variable in the user's shell is not ours to reject
        value: Any = raw
        if raw[:1] in "[{":
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                pass
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[path[-1]] = value
    return out


def from_toml(root: Path | None) -> dict[str, Any]:
    if root is None:
        return {}
    path = Path(root) / TOML_NAME
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None


def _lookup(layer: Mapping[str, Any], loc: tuple[Any, ...]) -> bool:
    node: Any = layer
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _allowed(err: Mapping[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        return f"allowed: {ctx['expected']}"
    for key, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if key in ctx:
            return f"must be {word} {ctx[key]}"
    if "pattern" in ctx:
        return "must be an environment variable NAME (letters, digits, _), not a value"
    if err.get("type") == "extra_forbidden":
        return "unknown setting"
    return err.get("msg", "invalid")


def explain(exc: ValidationError, layers: Mapping[str, Mapping[str, Any]]) -> str:
    """One line per bad field: name, offending value, source, what is allowed."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        field = ".".join(str(p) for p in loc)
        source = next(
            (name for name in reversed(SOURCES[1:]) if _lookup(layers.get(name, {}), loc)),
            "default",
        )
        value = err.get("input")
        shown = "" if isinstance(value, Mapping) else f" = {value!r}"
        lines.append(f"setting '{field}'{shown} (from {source}): {_allowed(err)}")
    return "; ".join(lines)


def load(
    root: Path | None = None,
    editor: Mapping[str, Any] | None = None,
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge every source and validate once; raise SettingsError with a user message."""
    layers = {
        TOML_NAME: normalise_keys(from_toml(root)),
        "editor": normalise_keys(editor or {}),
        "command line": normalise_keys(cli or {}),
        "environment": from_env(os.environ if environ is None else environ),
    }
    merged: dict[str, Any] = {}
    for name in SOURCES[1:]:
        merged = _deep_merge(merged, layers[name])
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise SettingsError(explain(exc, layers)) from None


def api_key(settings: Settings, environ: Mapping[str, str] | None = None) -> str | None:
    """Read the key at the last moment, from the variable the user named."""
    name = settings.backend.api_key_env
    if not name:
        return None
    return (os.environ if environ is None else environ).get(name) or None

