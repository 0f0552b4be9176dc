"""Every flag the planner gives llama-server exists in the shipped binary.

The real ``llama-server --help`` is read, so an upgrade of llama.cpp that
renames or drops a flag (or a value such as ``-fa on`` or a KV cache type)
fails here rather than at a user's first start on a GPU.
"""

from __future__ import annotations

import re

import pytest
from ornith_lsp import procs
from ornith_lsp.backends.hardware import Gpu, Hardware
from ornith_lsp.backends.llamacpp import FLAGS
from ornith_lsp.backends.planner import plan
from ornith_lsp.settings import BackendSettings


@pytest.fixture(scope="module")
def help_text(llama_server) -> str:
    done = procs.capture([str(llama_server), "--help"], timeout_s=60)
    assert done.returncode == 0 and not done.timed_out, done.stderr
    return done.stdout + done.stderr


def options(text: str) -> dict[str, str]:
    """Each option name -> its line, from lines that start with a dash."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"((?:-{1,2}[\w-]+,?\s*)+)(.*)", line)
        if match:
            for name in re.findall(r"-{1,2}[\w-]+", match.group(1)):
                found.setdefault(name, line)
    return found


def gpu(name: str, gb: int, free: int | None = None) -> Hardware:
    total = gb * 1024
    return Hardware(
        gpus=[Gpu(index=0, name=name, total_mib=total, free_mib=free or total)],
        ram_mib=64 * 1024,
        cpu_cores=8,
        source="test",
    )


PLANS = {
    "embedded on the CPU": (Hardware(gpus=[], ram_mib=16384, cpu_cores=8, source="test"), BackendSettings()),
    "9B on 8 GB": (gpu("NVIDIA GeForce RTX 4060 Ti", 8, 7702), BackendSettings(threads=4, parallel=2)),
    "35B, q8_0 KV": (gpu("NVIDIA GeForce RTX 4090", 24, 22500), BackendSettings()),
    "35B, q4_0 KV": (gpu("NVIDIA GeForce RTX 4090", 24), BackendSettings(kv_cache_type="q4_0")),
    "35B, experts in RAM": (gpu("NVIDIA GeForce RTX 4080", 16), BackendSettings(model_size="35B")),
    "31B, layers in RAM": (gpu("NVIDIA GeForce RTX 3060", 12), BackendSettings(model_size="31B")),
    "embedded, n-gram drafts": (Hardware(gpus=[], ram_mib=16384, cpu_cores=8, source="test"),
                                BackendSettings(draft="ngram")),
}


def test_every_flag_the_builder_knows_is_in_the_help(help_text):
    known = options(help_text)
    missing = [flag for flag in FLAGS if flag not in known]
    assert not missing, f"llama-server --help lists none of: {missing}"


@pytest.mark.parametrize("case", PLANS, ids=list(PLANS))
def test_every_planned_argument_is_accepted(case, help_text):
    hw, backend = PLANS[case]
    argv = plan(hw, backend, llama_server="llama-server").command
    assert argv[0] == "llama-server"
    known = options(help_text)
    flags = [a for a in argv[1:] if a.startswith("-")]
    assert set(flags) <= set(FLAGS), "the builder emitted a flag it does not declare"
    for flag in flags:
        assert flag in known, f"{flag} is not in llama-server --help"
    if "-fa" in argv:
        assert argv[argv.index("-fa") + 1] == "on" and "[on|off|auto]" in known["-fa"]
    if "--spec-type" in argv:
        assert argv[argv.index("--spec-type") + 1] in known["--spec-type"]
    for flag in ("-ctk", "-ctv"):
        if flag in argv:
            allowed = help_text[help_text.index(known[flag]):].split("allowed values:", 1)[1].splitlines()[0]
            assert argv[argv.index(flag) + 1] in [v.strip() for v in allowed.split(",")]


def test_the_cases_cover_every_flag():
    used = {a for hw, backend in PLANS.values() for a in plan(hw, backend).command if a.startswith("-")}
    assert used == set(FLAGS)
