"""Command line: ``serve`` for editors, ``doctor`` to explain the backend
choice, ``chat`` for a one-shot request through the same client.

Exit codes: 0 success, 2 a usage, settings or backend error (one clear line
on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ornith_lsp import settings as settings_mod

SETTING_FLAGS = {
    # flag: (settings path, help)
    "--backend": (("backend", "kind"), "auto | embedded | llamacpp | vllm | remote"),
    "--endpoint": (("backend", "endpoint"), "base URL of an OpenAI-compatible server"),
    "--model": (("backend", "model"), "model name sent in requests"),
    "--api-key-env": (("backend", "api_key_env"), "NAME of the env variable holding the API key"),
    "--model-path": (("backend", "model_path"), "a GGUF file for llama-server"),
    "--model-size": (("backend", "model_size"), "auto | embedded | 9B | 31B | 35B | 397B"),
    "--quant": (("backend", "quant"), "e.g. Q4_K_M"),
    "--llama-server": (("backend", "llama_server"), "path of the llama-server binary"),
    "--context-length": (("backend", "context_length"), "context window in tokens"),
    "--log-dir": (("log_dir",), "where backend logs are kept"),
}


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (override ornith.toml and the editor; ORNITH_* env overrides these)")
    for flag, (path, text) in SETTING_FLAGS.items():
        group.add_argument(flag, dest="set_" + "__".join(path), metavar="VALUE", help=text)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="workspace root holding ornith.toml (default: .)")


def _cli_layer(args: argparse.Namespace) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for flag, (path, _) in SETTING_FLAGS.items():
        value = getattr(args, "set_" + "__".join(path), None)
        if value is None:
            continue
        node = layer
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return layer


def _settings(args: argparse.Namespace) -> settings_mod.Settings:
    return settings_mod.load(args.root, cli=_cli_layer(args))


def _fail(message: str) -> int:
    print(f"ornith-lsp: {message}", file=sys.stderr)
    return 2


# -- serve ------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from ornith_lsp import procs
    from ornith_lsp.lsp.server import build

    cli_layer = _cli_layer(args)
    settings_mod.load(args.root, cli=cli_layer)  # fail early on bad flags
    server = build(cli_layer)

    def _reap(*_: Any) -> None:
        if server.backend is not None:
            server.backend.kill_now()

    def _on_sigterm(signum: int, frame: Any) -> None:
        """Exit at once: a graceful asyncio shutdown would wait for the thread
        blocked reading stdin, which may never return."""
        _reap()
        logging.shutdown()
        os._exit(128 + signum)

    atexit.register(_reap)
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGHUP, _on_sigterm)
    try:
        if args.tcp:
            if procs.port_in_use(args.host, args.port):
                return _fail(f"cannot listen on {args.host}:{args.port}: the port is in use")
            server.start_tcp(args.host, args.port)
        else:
            server.start_io()
    finally:
        _reap()
    return 0


# -- doctor -----------------------------------------------------------------------------
def cmd_doctor(args: argparse.Namespace) -> int:
    from ornith_lsp.backends import embedded
    from ornith_lsp.backends.hardware import probe
    from ornith_lsp.backends.planner import plan_summary
    from ornith_lsp.backends.runtime import make_plan

    s = _settings(args)
    hw = probe(args.hardware)
    the_plan, problems = make_plan(s, hw)
    report: dict[str, Any] = {
        **plan_summary(the_plan),
        "hardware": hw.model_dump(mode="json"),
        "problems": problems,
        "log_dir": str(s.resolved_log_dir()),
    }
    if the_plan.backend != "remote":
        try:
            path, where = embedded.find_llama_server(s.backend.llama_server)
            report["llama_server"] = {"path": str(path), "found_via": where}
        except embedded.MissingPart:
            report["llama_server"] = None
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"backend:        {the_plan.backend}")
    print(f"model:          {the_plan.model} ({the_plan.model_size}, {the_plan.quant})")
    print(f"context length: {the_plan.context_length}")
    print(f"tensor parallel {the_plan.tensor_parallel_size}, gpu layers {the_plan.gpu_layers}")
    if the_plan.command:
        print("command:        " + " ".join(the_plan.command))
    if the_plan.endpoint:
        print(f"endpoint:       {the_plan.endpoint}")
    print("why:")
    for reason in the_plan.reasons:
        print(f"  - {reason}")
    for problem in problems:
        print(f"problem: {problem}")
    return 0


# -- chat -------------------------------------------------------------------------------
async def _chat(s: settings_mod.Settings, prompt: str, as_json: bool, max_tokens: int) -> int:
    from ornith_lsp.backends.runtime import Backend, BackendUnavailable, make_plan
    from ornith_lsp.llm.client import Completion, LLMError

    the_plan, problems = make_plan(s)

    def on_event(kind: str, message: str) -> None:
        if kind in ("failed", "crashed") or not as_json:
            print(f"[{kind}] {message}", file=sys.stderr)

    backend = Backend(s, the_plan, on_event=on_event)
    try:
        try:
            await backend.start()
        except BackendUnavailable as exc:
            for problem in problems:
                print(f"ornith-lsp: {problem}", file=sys.stderr)
            return _fail(str(exc).splitlines()[0])
        final: Completion | None = None
        async with backend.client() as client:
            try:
                async for item in client.stream([{"role": "user", "content": prompt}], max_tokens=max_tokens):
                    if isinstance(item, str):
                        if not as_json:
                            print(item, end="", flush=True)
                    else:
                        final = item
            except LLMError as exc:
                return _fail(str(exc))
        assert final is not None
        result = {
            "text": final.text,
            "completion_tokens": final.usage.completion_tokens,
            "tokens_per_second": final.tokens_per_second,
            "ttft_s": final.ttft_s,
        }
        if as_json:
            print(json.dumps(result))
        else:
            tps = f"{final.tokens_per_second:.1f}" if final.tokens_per_second else "?"
            ttft = f"{final.ttft_s:.3f}" if final.ttft_s is not None else "?"
            print(f"\n\n[{final.usage.completion_tokens} tokens, {tps} tokens/s, first token after {ttft} s, {the_plan.model_size} via {the_plan.backend}]")
        return 0
    finally:
        await backend.stop()


def cmd_chat(args: argparse.Namespace) -> int:
    s = _settings(args)
    return asyncio.run(_chat(s, args.prompt, args.json, args.max_tokens))


# -- entry point ------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ornith-lsp", description="A language server that runs a local coding model.")
    p.add_argument("--log-level", default="WARNING", help="python logging level for stderr (default WARNING)")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the language server (stdio by default)")
    serve.add_argument("--tcp", action="store_true", help="listen on TCP instead of stdio")
    serve.add_argument("--host", default="127.0.0.1", help="TCP host (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=2087, help="TCP port (default 2087)")
    serve.add_argument("--stdio", action="store_true", help="stdio transport (the default; accepted for clients that pass it)")
    _add_setting_flags(serve)
    serve.set_defaults(func=cmd_serve)

    doctor = sub.add_parser("doctor", help="say which backend would be used, and why")
    doctor.add_argument("--json", action="store_true")
    doctor.add_argument("--hardware", type=Path, help="read nvidia-smi CSV from this file instead of running it")
    _add_setting_flags(doctor)
    doctor.set_defaults(func=cmd_doctor)

    chat = sub.add_parser("chat", help="one prompt through the configured backend")
    chat.add_argument("prompt")
    chat.add_argument("--json", action="store_true")
    chat.add_argument("--max-tokens", type=int, default=256)
    _add_setting_flags(chat)
    chat.set_defaults(func=cmd_chat)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return args.func(args)
    except settings_mod.SettingsError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a last line of defence: one line, not a traceback
        logging.getLogger("ornith_lsp").debug("unhandled", exc_info=True)
        return _fail(f"{type(exc).__name__}: {exc}")
