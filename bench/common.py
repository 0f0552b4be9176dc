"""What every benchmark shares: the machine it ran on, medians, the embedded
backend, and writing results that the README quotes verbatim."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

from ornith_lsp import settings as settings_mod
from ornith_lsp.backends.runtime import Backend, make_plan

RESULTS = Path(__file__).resolve().parent / "results"
HUMANEVALFIX = Path(os.environ.get("ORNITH_HUMANEVALFIX") or Path(__file__).resolve().parents[2] / "shared" / "data"
                    / "humanevalfix" / "humanevalpack_python.jsonl")


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(ram_gib, 1), "gpu": None,
            "python": platform.python_version()}


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def llama_server_pids() -> list[int]:
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() == "llama-server":
                pids.append(int(comm.parent.name))
    return pids


def llama_servers_running() -> int:
    """llama-server processes on the machine now: a benchmark's own is stopped by
    the time results are written, so any counted then belong to someone else."""
    return len(llama_server_pids())


def _ancestors(pid: int) -> set[int]:
    seen: set[int] = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return seen


class Contention:
    """Samples, every few seconds while a benchmark runs, the load average and
    whether a llama-server that is not this benchmark's own is running.  On a
    2-core machine one other llama-server slows ours several times over, so
    the results say how much of the run was shared."""

    def __init__(self, interval_s: float = 5.0) -> None:
        self.samples = 0
        self.foreign = 0
        self.max_load = 0.0
        self._interval = interval_s
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        me = os.getpid()
        while True:
            self.samples += 1
            self.foreign += any(me not in _ancestors(pid) for pid in llama_server_pids())
            self.max_load = max(self.max_load, os.getloadavg()[0])
            time.sleep(self._interval)

    def report(self) -> dict:
        return {"samples": self.samples, "max_load_1m": round(self.max_load, 2),
                "fraction_with_another_llama_server": round(self.foreign / self.samples, 3) if self.samples else None}


# sampled only when a bench script is the program, not when tests import this module
CONTENTION = Contention() if Path(sys.argv[0]).resolve().parent == Path(__file__).resolve().parent else None


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100): an observed value, never an interpolation."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    return values[max(0, math.ceil(q / 100 * len(values)) - 1)]


def ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    return round(a / b, digits) if a is not None and b else None


def headline(figure: str, value, unit: str = "") -> dict:
    """One row of ``bench/report.py``'s table; every script lists its own."""
    return {"figure": figure, "value": value, "unit": unit}


def write(name: str, data: dict, quick: bool) -> Path:
    """Quick runs (CI) go to a separate file so they never overwrite the published figures."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / (f"{name}.quick.json" if quick else f"{name}.json")
    record = {"benchmark": name, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "date": time.strftime("%Y-%m-%d"), "machine": machine(), "quick": quick,
              # other work on the machine moves absolute times; the ratios are what to quote
              "load_average_at_write": [round(x, 2) for x in os.getloadavg()],
              "other_llama_servers_at_write": llama_servers_running(), "contention": CONTENTION.report() if CONTENTION else None, **data}
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


@contextlib.asynccontextmanager
async def embedded_backend(parallel: int = 1, log_dir: str | None = None,
                           context_per_slot: int | None = None,
                           embedded_model: str = "tiny",
                           extra_args: tuple[str, ...] = ()) -> AsyncIterator[Backend]:
    """The embedded llama-server under ornith-lsp's own supervisor (which reaps
    its process group however the benchmark ends).

    ``context_per_slot`` rewrites ``-c`` to ``parallel * context_per_slot``:
    llama-server splits ``-c`` evenly between its ``-np`` slots, and the
    planner caps ``-c`` at the model's trained context, so without it four
    slots would get 2048 tokens each -- less than one agent prompt.

    ``tiny`` by default: the overhead, cache and latency benchmarks measure the
    harness, which the smallest model exposes best; the fix rate asks for the
    default coder model."""
    s = settings_mod.load(None, cli={"backend": {"kind": "embedded", "parallel": parallel,
                                                 "embedded_model": embedded_model},
                                     **({"log_dir": log_dir} if log_dir else {})})
    plan, problems = make_plan(s)
    if problems:
        raise SystemExit("; ".join(problems))
    if context_per_slot is not None:
        command = list(plan.command)
        command[command.index("-c") + 1] = str(context_per_slot * parallel)
        plan = plan.model_copy(update={"command": command})
    if extra_args:
        plan = plan.model_copy(update={"command": [*plan.command, *extra_args]})
    backend = Backend(s, plan)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.stop()


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


def make_repo(root: Path, files: dict[str, str]) -> Path:
    """A committed git repository holding ``files``: the agent's shadow tree needs git."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "bench@example.invalid")
    git(root, "config", "user.name", "bench")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    return root


def humanevalfix_rows(path: Path = HUMANEVALFIX) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def humanevalfix_project(row: dict) -> dict[str, str]:
    """A HumanEvalFix task as a tiny pytest project: ``solution.py`` is the prompt
    plus the buggy solution, ``test_solution.py`` imports it and calls ``check``.
    The canonical solution is never part of it."""
    lines = row["test"].rstrip().splitlines()
    if lines and lines[-1].startswith("check("):
        lines = lines[:-1]
    test = (f"from solution import {row['entry_point']}\n" + "\n".join(lines)
            + f"\n\n\ndef test_check():\n    check({row['entry_point']})\n")
    return {"solution.py": row["prompt"] + row["buggy_solution"], "test_solution.py": test}


SMALL_REPO = {
    "shop/__init__.py": "",
    "shop/money.py": (
        "def cents(amount: float) -> int:\n"
        "    return round(amount * 100)\n\n\n"
        "def format_cents(value: int) -> str:\n"
        "    return f\"{value // 100}.{value % 100:02d}\"\n"
    ),
    "shop/cart.py": (
        "from shop.money import cents, format_cents\n\n\n"
        "class Cart:\n"
        "    def __init__(self) -> None:\n"
        "        self.items: dict[str, tuple[int, int]] = {}\n\n"
        "    def add(self, name: str, price: float, quantity: int = 1) -> None:\n"
        "        _, held = self.items.get(name, (0, 0))\n"
        "        self.items[name] = (cents(price), held + quantity)\n\n"
        "    def total(self) -> int:\n"
        "        return sum(price for price, quantity in self.items.values())\n\n"
        "    def receipt(self) -> str:\n"
        "        return format_cents(self.total())\n"
    ),
    "tests/test_cart.py": (
        "from shop.cart import Cart\n\n\n"
        "def test_total_counts_quantities():\n"
        "    cart = Cart()\n"
        "    cart.add(\"apple\", 0.5, 3)\n"
        "    cart.add(\"pear\", 1.25)\n"
        "    assert cart.total() == 275\n\n\n"
        "def test_receipt():\n"
        "    cart = Cart()\n"
        "    cart.add(\"pear\", 1.25)\n"
        "    assert cart.receipt() == \"1.25\"\n"
    ),
}
"""A small project with one bug (``total`` ignores quantities): one failing
test, one passing, a few definitions for the repo map."""


async def failing_tasks(root: Path, timeout_s: float = 120):
    """The failing tests of ``root`` as tasks, plus the passing ones (the
    regression baseline), exactly as ``ornith-lsp fix`` collects them."""
    from ornith_lsp.tasks.pytest_report import run_tests, tasks_from_results

    run = await run_tests(root, timeout_s=timeout_s)
    return tasks_from_results(run.results), [r.node_id for r in run.results if r.outcome == "passed"]
