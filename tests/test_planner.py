"""The planner against the release table and against arithmetic redone here
from the catalog alone, plus nvidia-smi parsing.  All pure: no GPU, no server."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from ornith_lsp.backends import catalog, hardware
from ornith_lsp.backends.embedded import EMBEDDED_CONTEXT, EMBEDDED_NAME, EMBEDDED_QUANT
from ornith_lsp.backends.hardware import Gpu, Hardware, HardwareError, parse_nvidia_smi, probe
from ornith_lsp.backends.planner import (
    CPU_HEADROOM_MIB,
    HEADROOM_MIB,
    VLLM_GPU_MEMORY_UTILIZATION,
    Plan,
    PlanError,
    plan,
    plan_summary,
)
from ornith_lsp.settings import BackendSettings

MIB = 1 << 20
GIB = 1024


def machine(*gpus: tuple[str, int, int], ram_gb: int = 64) -> Hardware:
    return Hardware(
        gpus=[Gpu(index=i, name=name, total_mib=total, free_mib=free) for i, (name, total, free) in enumerate(gpus)],
        ram_mib=ram_gb * GIB,
        cpu_cores=16,
        source="test",
    )


def card(name: str, gb: int, free_mib: int | None = None) -> tuple[str, int, int]:
    return name, gb * GIB, gb * GIB if free_mib is None else free_mib


H100 = card("NVIDIA H100 80GB HBM3", 80)
RTX4090 = card("NVIDIA GeForce RTX 4090", 24)

# fixture id: (hardware, model_size, quant, backend, gpu_indices, release row it is checked against)
TABLE = {
    "cpu-8GB": (machine(ram_gb=8), EMBEDDED_NAME, EMBEDDED_QUANT, "llamacpp", [], "no GPU: embedded by default"),
    "cpu-16GB": (machine(ram_gb=16), EMBEDDED_NAME, EMBEDDED_QUANT, "llamacpp", [], "no GPU: embedded by default"),
    "cpu-64GB": (machine(ram_gb=64), EMBEDDED_NAME, EMBEDDED_QUANT, "llamacpp", [], "no GPU: embedded by default"),
    "1x8GB": (machine(card("NVIDIA GeForce RTX 4060", 8)), "9B", "Q4_K_M", "llamacpp", [0], "9B Q4 fits on 8 GB"),
    "1x12GB": (machine(card("NVIDIA GeForce RTX 3060", 12)), "9B", "Q4_K_M", "llamacpp", [0], "9B Q4 on 8-12 GB"),
    "1x16GB": (machine(card("NVIDIA GeForce RTX 4080", 16)), "9B", "Q8_0", "llamacpp", [0], "35B needs 24 GB"),
    "1x24GB": (machine(RTX4090), "35B", "Q4_K_M", "llamacpp", [0], "35B Q4_K_M on 24 GB"),
    "1x24GB-desktop": (
        machine(card("NVIDIA GeForce RTX 4090", 24, free_mib=22_500)),
        "31B",
        "Q4_K_M",
        "llamacpp",
        [0],
        "31B: more than the 9B needs, 35B does not fit",
    ),
    "1x32GB": (machine(card("NVIDIA GeForce RTX 5090", 32)), "35B", "Q5_K_M", "llamacpp", [0], "35B Q5_K_M on 32 GB"),
    "1x48GB": (machine(card("NVIDIA RTX 6000 Ada Generation", 48)), "35B", "Q8_0", "llamacpp", [0], "prefer 35B"),
    "1x80GB": (machine(H100), "35B", "Q8_0", "llamacpp", [0], "prefer 35B over 9B bf16"),
    "2x24GB": (machine(RTX4090, RTX4090), "35B", "Q8_0", "llamacpp", [0, 1], "prefer 35B"),
    "4x80GB": (machine(*[H100] * 4), "35B", "bf16", "vllm", [0, 1], "397B does not fit 320 GB"),
    "8x80GB": (machine(*[H100] * 8), "397B", "fp8", "vllm", list(range(8)), "397B on a multi-GPU node"),
}


def kv_bytes_per_token(spec: catalog.ModelSpec) -> int:
    return 2 * spec.layers * spec.kv_heads * spec.head_dim * 2


def memory_check(p: Plan, hw: Hardware, backend: BackendSettings):
    """Redo the arithmetic from the catalog: returns fits(context) for the
    pool the plan uses (full offload or CPU only)."""
    spec = catalog.EMBEDDED if p.model_size == EMBEDDED_NAME else catalog.MODELS[p.model_size]
    quant = next(q for q in spec.quants if q.name == p.quant)
    weights = round(quant.size_gb * 1e9)
    kv = kv_bytes_per_token(spec)
    gpus = [g for g in hw.gpus if g.index in p.gpu_indices]
    if not gpus:
        capacity = hw.ram_mib * MIB
        reserve = (CPU_HEADROOM_MIB + backend.cache_ram_mib) * MIB
    elif p.backend == "vllm":
        capacity = len(gpus) * math.floor(VLLM_GPU_MEMORY_UTILIZATION * min(g.total_mib for g in gpus) * MIB)
        reserve = len(gpus) * HEADROOM_MIB * MIB
    else:
        capacity = len(gpus) * min(g.free_mib for g in gpus) * MIB
        reserve = len(gpus) * HEADROOM_MIB * MIB
    return spec, lambda context: weights + kv * context + reserve <= capacity


@pytest.mark.parametrize("fixture", TABLE, ids=list(TABLE))
def test_release_table_and_arithmetic(fixture):
    hw, size, quant, backend_kind, gpu_indices, _release_row = TABLE[fixture]
    backend = BackendSettings()
    p = plan(hw, backend)

    assert (p.model_size, p.quant, p.backend, p.gpu_indices) == (size, quant, backend_kind, gpu_indices)
    spec, fits = memory_check(p, hw, backend)
    assert fits(p.context_length)
    assert p.context_length % 1024 == 0
    assert p.context_length <= spec.max_context
    if gpu_indices and p.context_length < spec.max_context:
        assert not fits(p.context_length + 1024), "a larger context would have fitted"
    if not gpu_indices:
        assert p.context_length == EMBEDDED_CONTEXT
        assert p.gpu_layers == 0
    assert p.tensor_parallel_size == (len(gpu_indices) if backend_kind == "vllm" else 1)
    assert p.expected_tokens_per_second and p.expected_tokens_per_second > 0


@pytest.mark.parametrize("fixture", TABLE, ids=list(TABLE))
def test_every_plan_explains_itself_and_names_its_binary(fixture):
    hw = TABLE[fixture][0]
    p = plan(hw, BackendSettings(), llama_server="/opt/llama-server", vllm_cmd="/opt/vllm")
    assert p.reasons and all(isinstance(r, str) and r for r in p.reasons)
    assert p.command[0] == ("/opt/vllm" if p.backend == "vllm" else "/opt/llama-server")
    assert p.command[p.command.index("--port") + 1] == "{port}"
    assert any("tokens/s" in r for r in p.reasons)
    assert any(r.startswith("Context") for r in p.reasons)
    if p.model_size != EMBEDDED_NAME:
        assert p.assumed and any(r.startswith("Assumed") for r in p.reasons)


def test_35b_q4_on_24gb_lands_in_release_range():
    p = plan(machine(RTX4090), BackendSettings())
    assert (p.model_size, p.quant) == ("35B", "Q4_K_M")
    assert 8192 <= p.context_length <= 16384
    assert any("agrees" in r for r in p.reasons)


def test_catalog_keeps_release_figures():
    sizes = {(s, q.name): q.size_gb for s, m in catalog.MODELS.items() for q in m.quants}
    assert sizes[("9B", "Q4_K_M")] == 6.0
    assert sizes[("9B", "bf16")] == 19.0
    assert sizes[("35B", "Q4_K_M")] == 21.2
    assert sizes[("35B", "Q5_K_M")] == 24.7
    assert catalog.MODELS["35B"].active_params_b == 3
    assert catalog.EMBEDDED.quants[0].size_gb == 1.12 and catalog.EMBEDDED_TINY.quants[0].size_gb == 0.1
    assert (catalog.EMBEDDED.layers, catalog.EMBEDDED.kv_heads, catalog.EMBEDDED.head_dim) == (28, 2, 128)
    assert (catalog.EMBEDDED_TINY.layers, catalog.EMBEDDED_TINY.kv_heads, catalog.EMBEDDED_TINY.head_dim) == (30, 3, 64)


def test_exact_llama_server_argv():
    p = plan(machine(RTX4090), BackendSettings(), llama_server="/usr/bin/llama-server")
    assert p.command == [
        "/usr/bin/llama-server",
        "-m", "Ornith-1.0-35B-Q4_K_M.gguf",
        "-c", "14336",
        "-ngl", "49",
        "--jinja",
        "-np", "1",
        "--cache-ram", "256",
        "--host", "127.0.0.1",
        "--port", "{port}",
        "--alias", "Ornith-1.0",
    ]  # fmt: skip
    assert p.model == "Ornith-1.0-35B-Q4_K_M.gguf"
    assert p.hf_repo == "deepreinforce-ai/Ornith-1.0-35B-GGUF"
    assert p.served_name == "Ornith-1.0"


def test_exact_vllm_argv():
    p = plan(machine(*[H100] * 8), BackendSettings())
    assert p.command == [
        "vllm", "serve", "deepreinforce-ai/Ornith-1.0-397B-FP8",
        "--served-model-name", "Ornith-1.0",
        "--max-model-len", "262144",
        "--enable-auto-tool-choice",
        "--tool-call-parser", "qwen3_coder",
        "--tensor-parallel-size", "8",
        "--host", "127.0.0.1",
        "--port", "{port}",
    ]  # fmt: skip
    assert any("qwen3_coder" in a for a in p.assumed)


def test_embedded_cpu_argv_uses_the_given_model_path():
    p = plan(machine(ram_gb=16), BackendSettings(), embedded_model="/site/SmolLM2.gguf")
    assert p.command[:7] == ["llama-server", "-m", "/site/SmolLM2.gguf", "-c", str(EMBEDDED_CONTEXT), "-ngl", "0"]
    assert p.served_name == EMBEDDED_NAME


def test_context_too_large_names_the_numbers():
    with pytest.raises(PlanError) as err:
        plan(machine(card("NVIDIA GeForce RTX 4060", 8)), BackendSettings(model_size="9B", context_length=65536))
    message = str(err.value)
    for number in ("65536", "5722 MiB weights", "4608 MiB KV", "1536 MiB headroom", "11866 MiB", "8192 MiB free"):
        assert number in message
    assert "12288" in message


def test_context_override_is_honoured_when_it_fits():
    p = plan(machine(RTX4090), BackendSettings(context_length=65536))
    assert p.context_length == 65536
    assert p.model_size == "9B"
    assert any("35B" in r and r.startswith("Not the") for r in p.reasons)
    _, fits = memory_check(p, machine(RTX4090), BackendSettings())
    assert fits(65536)


def test_9b_on_cpu_with_8gb_ram_is_refused_with_arithmetic():
    with pytest.raises(PlanError) as err:
        plan(machine(ram_gb=8), BackendSettings(model_size="9B"))
    message = str(err.value)
    assert "5722 MiB weights" in message and "8602 MiB > 8192 MiB RAM" in message


def test_9b_on_cpu_with_64gb_ram():
    hw = machine(ram_gb=64)
    p = plan(hw, BackendSettings(model_size="9B"))
    assert (p.model_size, p.quant, p.backend, p.gpu_layers) == ("9B", "Q4_K_M", "llamacpp", 0)
    assert p.command[p.command.index("-ngl") + 1] == "0"
    assert 1 <= p.expected_tokens_per_second <= 20
    _, fits = memory_check(p, hw, BackendSettings())
    assert fits(p.context_length)


def test_quant_override_picks_vllm_for_bf16():
    p = plan(machine(RTX4090), BackendSettings(quant="bf16"))
    assert (p.model_size, p.quant, p.backend) == ("9B", "bf16", "vllm")
    assert p.command[2] == "deepreinforce-ai/Ornith-1.0-9B"


def test_tensor_parallel_override():
    p = plan(machine(*[H100] * 4), BackendSettings(tensor_parallel_size=4))
    assert (p.backend, p.tensor_parallel_size, p.gpu_indices) == ("vllm", 4, [0, 1, 2, 3])
    with pytest.raises(PlanError, match="tensor_parallel_size = 2 but this machine has 1"):
        plan(machine(RTX4090), BackendSettings(tensor_parallel_size=2))
    with pytest.raises(PlanError, match="needs vLLM"):
        plan(machine(RTX4090, RTX4090), BackendSettings(kind="llamacpp", tensor_parallel_size=2))


def test_gpu_layers_override_splits_weights_with_ram():
    p = plan(machine(card("NVIDIA GeForce RTX 4080", 16)), BackendSettings(model_size="35B", gpu_layers=30))
    assert (p.model_size, p.gpu_layers) == ("35B", 30)
    assert p.command[p.command.index("-ngl") + 1] == "30"
    with pytest.raises(PlanError, match="16384 MiB free"):
        plan(machine(card("NVIDIA GeForce RTX 4080", 16)), BackendSettings(model_size="35B"))


def test_vllm_on_cpu_is_refused():
    with pytest.raises(PlanError, match="needs a GPU"):
        plan(machine(), BackendSettings(kind="vllm"))


def test_partly_used_card_lowers_vllm_memory_share():
    hw = machine(card("NVIDIA GeForce RTX 4090", 24, free_mib=21_000))
    p = plan(hw, BackendSettings(model_size="9B", quant="bf16"))
    assert p.command[p.command.index("--gpu-memory-utilization") + 1] == "0.85"


def test_remote_plan():
    p = plan(machine(), BackendSettings(kind="remote", endpoint="http://gpu-box:8000/v1"))
    assert (p.backend, p.model, p.served_name, p.context_length) == ("remote", "Ornith-1.0", "Ornith-1.0", 32768)
    assert p.command == [] and p.endpoint == "http://gpu-box:8000/v1"
    assert p.reasons and "remote" in p.reasons[0].lower()

    named = plan(machine(RTX4090), BackendSettings(endpoint="http://x/v1", model="my-model", context_length=8192))
    assert (named.backend, named.model, named.context_length) == ("remote", "my-model", 8192)
    assert "endpoint is set" in named.reasons[0]

    with pytest.raises(PlanError, match="endpoint"):
        plan(machine(), BackendSettings(kind="remote"))


def test_plan_summary_is_the_full_json_shape():
    p = plan(machine(RTX4090), BackendSettings())
    summary = plan_summary(p)
    assert set(Plan.model_fields) <= set(summary)
    assert json.loads(json.dumps(summary))["command"][-1] == "Ornith-1.0"


# nvidia-smi ---------------------------------------------------------------

GOOD_CSV = """\
0, NVIDIA GeForce RTX 4090, 24564, 23012
1, NVIDIA H100 80GB HBM3, 81559, 81000
"""


def test_parse_good_csv():
    gpus, problems = parse_nvidia_smi(GOOD_CSV)
    assert problems == []
    assert gpus == [
        Gpu(index=0, name="NVIDIA GeForce RTX 4090", total_mib=24564, free_mib=23012),
        Gpu(index=1, name="NVIDIA H100 80GB HBM3", total_mib=81559, free_mib=81000),
    ]


@pytest.mark.parametrize("text", ["", "\n", "  \n\n"])
def test_parse_empty_means_no_gpu(text):
    assert parse_nvidia_smi(text) == ([], [])


def test_parse_malformed_line_names_line_number_and_text():
    text = "0, NVIDIA GeForce RTX 4090, 24564, 23012\nNVIDIA-SMI has failed\n"
    with pytest.raises(HardwareError) as err:
        parse_nvidia_smi(text)
    assert "line 2" in str(err.value) and "NVIDIA-SMI has failed" in str(err.value)
    with pytest.raises(HardwareError, match="line 1"):
        parse_nvidia_smi("0, Tesla T4, lots, 100\n")


def test_parse_na_free_memory_is_a_problem_not_a_crash():
    gpus, problems = parse_nvidia_smi("0, NVIDIA A100-SXM4-40GB MIG 1g.5gb, [N/A], [N/A]\n1, Tesla T4, 15360, 15000\n")
    assert [g.index for g in gpus] == [1]
    assert len(problems) == 1 and "GPU 0" in problems[0] and "[N/A]" in problems[0]


def test_parse_zero_free_memory_is_a_problem():
    gpus, problems = parse_nvidia_smi("0, NVIDIA GeForce RTX 3090, 24576, 0\n")
    assert gpus == []
    assert "0 MiB free" in problems[0]


def test_problems_reach_the_plan():
    text = "0, NVIDIA GeForce RTX 3090, 24576, 0\n"
    gpus, problems = parse_nvidia_smi(text)
    hw = Hardware(gpus=gpus, ram_mib=16 * GIB, cpu_cores=8, source="test", problems=problems)
    p = plan(hw, BackendSettings())
    assert p.model_size == EMBEDDED_NAME
    assert problems[0] in p.reasons


def test_probe_reads_a_hardware_file(tmp_path: Path):
    path = tmp_path / "smi.csv"
    path.write_text(GOOD_CSV)
    hw = probe(path)
    assert [g.index for g in hw.gpus] == [0, 1]
    assert hw.source == f"file {path}"
    assert hw.cpu_cores >= 1


def test_probe_without_nvidia_smi_means_no_gpu(monkeypatch):
    def missing(*args, **kwargs):
        raise FileNotFoundError("nvidia-smi")

    monkeypatch.setattr(hardware.subprocess, "run", missing)
    hw = probe()
    assert hw.gpus == [] and "not found" in hw.source


def test_probe_reports_a_failing_nvidia_smi(monkeypatch):
    def failing(argv, **kwargs):
        assert argv == hardware.NVIDIA_SMI and kwargs["timeout"] == 10
        return subprocess.CompletedProcess(argv, 9, stdout="", stderr="NVIDIA-SMI has failed\n")

    monkeypatch.setattr(hardware.subprocess, "run", failing)
    hw = probe()
    assert hw.gpus == [] and any("exited with 9" in p for p in hw.problems)


# custom GGUF files --------------------------------------------------------

from ornith_lsp.backends import gguf  # noqa: E402
from ornith_lsp.backends.planner import is_ollama_port, ollama_model_name  # noqa: E402


@pytest.fixture
def other_gguf(tmp_path, embedded_model) -> Path:
    """The real embedded GGUF under a name that says nothing about its size."""
    path = tmp_path / "some-other-model.gguf"
    path.write_bytes(embedded_model.read_bytes())
    return path


def test_gguf_header_of_the_real_embedded_file(other_gguf):
    info = gguf.read_header(other_gguf)
    assert (info.architecture, info.block_count, info.head_count, info.head_count_kv) == ("llama", 30, 9, 3)
    assert (info.embedding_length, info.head_dim, info.context_length) == (576, 64, 8192)
    assert info.kv_bytes_per_token == 2 * 30 * 3 * 64 * 2
    assert info.file_type == "Q4_1" and info.size_bytes == other_gguf.stat().st_size
    assert info.chat_template and "<|im_start|>" in info.chat_template
    assert not info.supports_tools


def test_gguf_reader_refuses_what_is_not_a_gguf(tmp_path, other_gguf):
    text = tmp_path / "notes.gguf"
    text.write_text("not a model")
    with pytest.raises(gguf.GgufError, match="no 'GGUF' magic") as err:
        gguf.read_header(text)
    assert str(text) in str(err.value)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(other_gguf.read_bytes()[:50_000])
    with pytest.raises(gguf.GgufError, match="truncated or corrupt"):
        gguf.read_header(cut)
    with pytest.raises(gguf.GgufError, match="cannot read"):
        gguf.read_header(tmp_path / "absent.gguf")


def synthetic_gguf(path: Path, arch: str = "qwen3", template: str | None = "{% if tools %}{{ tools }}{% endif %}",
                   head_count_kv=8, version: int = 3) -> Path:
    """A header-only GGUF written by the spec, for what the real file does not show."""
    import struct

    def s(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    def kv_u32(key, value):
        return s(key) + struct.pack("<II", 4, value)

    kvs = [
        s("general.architecture") + struct.pack("<I", 8) + s(arch),
        s("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3) + s("a") + s("b") + s("c"),
        s("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, 3) + struct.pack("<fff", 0, 0, 0),
        kv_u32(f"{arch}.block_count", 48),
        kv_u32(f"{arch}.context_length", 262144),
        kv_u32(f"{arch}.embedding_length", 2048),
        kv_u32(f"{arch}.attention.head_count", 32),
        kv_u32(f"{arch}.attention.key_length", 128),
        kv_u32(f"{arch}.expert_count", 128),
        kv_u32("general.file_type", 15),
    ]
    if isinstance(head_count_kv, list):
        kvs.append(s(f"{arch}.attention.head_count_kv") + struct.pack("<IIQ", 9, 4, len(head_count_kv))
                   + struct.pack(f"<{len(head_count_kv)}I", *head_count_kv))
    else:
        kvs.append(kv_u32(f"{arch}.attention.head_count_kv", head_count_kv))
    if template is not None:
        kvs.append(s("tokenizer.chat_template") + struct.pack("<I", 8) + s(template))
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", version, 0, len(kvs)) + b"".join(kvs))
    return path


def test_gguf_reader_on_a_synthetic_moe_header(tmp_path):
    info = gguf.read_header(synthetic_gguf(tmp_path / "x.gguf", head_count_kv=[4, 4, 8]))
    assert (info.architecture, info.block_count, info.head_count_kv, info.head_dim) == ("qwen3", 48, 8, 128)
    assert (info.context_length, info.expert_count, info.file_type) == (262144, 128, "Q4_K_M")
    assert info.supports_tools
    with pytest.raises(gguf.GgufError, match="version 1"):
        gguf.read_header(synthetic_gguf(tmp_path / "old.gguf", version=1))


def test_custom_gguf_is_planned_from_its_header(other_gguf):
    hw = machine(RTX4090)
    backend = BackendSettings(kind="llamacpp", model_path=other_gguf)
    with pytest.raises(PlanError, match="header was not read"):
        plan(hw, backend)
    info = gguf.read_header(other_gguf)
    p = plan(hw, backend, llama_server="/usr/bin/llama-server", gguf_headers={str(other_gguf): info})
    assert (p.backend, p.model_size, p.quant, p.model) == ("llamacpp", catalog.CUSTOM, "Q4_1", str(other_gguf))
    assert p.context_length == 8192  # the GPU leaves far more; the trained context caps it
    assert p.command == [
        "/usr/bin/llama-server", "-m", str(other_gguf), "-c", "8192", "-ngl", "31",
        "-np", "1", "--cache-ram", "256",
        "--host", "127.0.0.1", "--port", "{port}", "--alias", "some-other-model",
    ]  # fmt: skip
    assert p.served_name == "some-other-model" and p.hf_repo is None
    assert any("30 layers, 3 KV heads x 64, trained context 8192" in r for r in p.reasons)
    assert any("22.5 KiB" in r and r.startswith("Context 8192") for r in p.reasons)
    assert any(r.startswith("No --jinja") for r in p.reasons)


def test_custom_gguf_on_cpu_and_its_limits(other_gguf):
    info = {str(other_gguf): gguf.read_header(other_gguf)}
    backend = BackendSettings(model_path=other_gguf)
    p = plan(machine(ram_gb=4), backend, gguf_headers=info)
    assert (p.model_size, p.gpu_layers, p.context_length) == (catalog.CUSTOM, 0, 8192)
    weights = other_gguf.stat().st_size
    assert weights + 23040 * 8192 + (CPU_HEADROOM_MIB + 256) * MIB <= 4 * GIB * MIB
    assert any(f"{round(weights / MIB)} MiB weights" in r for r in p.reasons)
    with pytest.raises(PlanError, match=r"= 2578 MiB > 1024 MiB RAM"):
        plan(machine(ram_gb=1), backend, gguf_headers=info)
    with pytest.raises(PlanError, match="handles at most 8192 tokens"):
        plan(machine(RTX4090), backend.model_copy(update={"context_length": 16384}), gguf_headers=info)


def test_jinja_only_where_the_template_offers_tools(tmp_path):
    with_tools = synthetic_gguf(tmp_path / "mine-with-tools.gguf")
    without = synthetic_gguf(tmp_path / "mine-plain.gguf", template="{{ messages }}")
    for path, jinja in ((with_tools, True), (without, False)):
        headers = {str(path): gguf.read_header(path)}
        big = machine(card("NVIDIA H100 80GB HBM3", 80, free_mib=80 * GIB))
        p = plan(big, BackendSettings(model_path=path), gguf_headers=headers)
        assert ("--jinja" in p.command) is jinja, path
        assert any("128 experts" in a for a in p.assumed)
    # the catalog's own files are assumed to offer tools when their header is not at hand
    assert "--jinja" in plan(machine(RTX4090), BackendSettings()).command


def test_parallel_slots_and_bounded_prompt_cache():
    p = plan(machine(RTX4090), BackendSettings(parallel=4, cache_ram_mib=1024, threads=8))
    cmd = p.command
    assert cmd[cmd.index("-np") + 1] == "4" and cmd[cmd.index("--cache-ram") + 1] == "1024"
    assert cmd[cmd.index("-t") + 1] == "8"
    assert any("4 slots" in r for r in p.reasons)


# vLLM: local directories, Ray pipeline parallelism ------------------------------


def test_vllm_model_directory_runs_offline():
    hw = machine(*[H100] * 2)
    p = plan(hw, BackendSettings(kind="vllm", model_path=Path("/models/Ornith-1.0-35B")), vllm_cmd="/venv/bin/vllm")
    assert p.command == [
        "/venv/bin/vllm", "serve", "/models/Ornith-1.0-35B",
        "--served-model-name", "Ornith-1.0",
        "--max-model-len", str(p.context_length),
        "--enable-auto-tool-choice",
        "--tool-call-parser", "qwen3_coder",
        "--tensor-parallel-size", "2",
        "--host", "127.0.0.1",
        "--port", "{port}",
    ]  # fmt: skip
    assert p.env == {"HF_HUB_OFFLINE": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "0,1"}
    assert (p.model, p.quant, p.model_size) == ("/models/Ornith-1.0-35B", "bf16", "35B")
    with pytest.raises(PlanError, match="model directory"):
        plan(hw, BackendSettings(kind="vllm", model_path=Path("/models/my-finetune")))
    with pytest.raises(PlanError, match="set backend.quant"):
        plan(machine(*[H100] * 8), BackendSettings(model_path=Path("/models/Ornith-1.0-397B")))
    fp8 = plan(machine(*[H100] * 8), BackendSettings(model_path=Path("/models/Ornith-1.0-397B-FP8")))
    assert fp8.quant == "fp8" and fp8.command[2] == "/models/Ornith-1.0-397B-FP8"


def test_the_server_sees_exactly_the_gpus_planned_for():
    p = plan(machine(*[H100] * 4), BackendSettings())
    assert p.gpu_indices == [0, 1]
    assert p.env == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "0,1"}
    assert plan(machine(*[H100] * 8), BackendSettings()).env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"
    assert plan(machine(), BackendSettings()).env == {}


def test_pipeline_parallel_over_a_ray_cluster():
    """Four 80 GB GPUs cannot hold the 397B bf16 (794 GB); two such nodes cannot
    either, four can: the plan is arithmetic over nodes x GPUs."""
    node = machine(*[H100] * 4)
    with pytest.raises(PlanError):
        plan(node, BackendSettings(model_size="397B", quant="bf16", pipeline_parallel_size=2))
    p = plan(node, BackendSettings(model_size="397B", quant="bf16", pipeline_parallel_size=4), vllm_cmd="vllm")
    assert (p.backend, p.tensor_parallel_size, p.pipeline_parallel_size) == ("vllm", 4, 4)
    cmd = p.command
    assert cmd[cmd.index("--tensor-parallel-size") + 1] == "4"
    assert cmd[cmd.index("--pipeline-parallel-size") + 1] == "4"
    assert cmd[cmd.index("--distributed-executor-backend") + 1] == "ray"
    usable = 4 * 4 * math.floor(VLLM_GPU_MEMORY_UTILIZATION * 80 * GIB * MIB)
    kv = kv_bytes_per_token(catalog.MODELS["397B"])
    assert round(794 * 1e9) + kv * p.context_length + 16 * HEADROOM_MIB * MIB <= usable
    assert any("ray start --head" in r for r in p.reasons)
    assert p.env == {}  # Ray's raylets, not this process's environment, assign GPUs on each node
    with pytest.raises(PlanError, match="only vLLM"):
        plan(node, BackendSettings(kind="llamacpp", pipeline_parallel_size=2))
    with pytest.raises(PlanError, match="needs GPUs"):
        plan(machine(), BackendSettings(pipeline_parallel_size=2))


# Ollama -------------------------------------------------------------------


def test_ollama_port_is_recognised_and_its_context_pinned():
    p = plan(machine(), BackendSettings(endpoint="http://127.0.0.1:11434/v1", model="qwen2.5-coder:7b", context_length=16384))
    assert p.ollama and p.backend == "remote"
    assert any("ignores num_ctx" in r and "qwen2.5-coder:7b-ornith-ctx16384" in r for r in p.reasons)
    assert not plan(machine(), BackendSettings(endpoint="http://gpu-box:8000/v1")).ollama
    assert is_ollama_port("http://box:11434") and not is_ollama_port("http://box:8000/v1")
    assert not is_ollama_port("not a url:abc")


def test_ollama_model_names():
    assert ollama_model_name("qwen2.5-coder:7b", 32768) == "qwen2.5-coder:7b-ornith-ctx32768"
    assert ollama_model_name("llama3", 8192) == "llama3:latest-ornith-ctx8192"
    assert ollama_model_name("me/model", 8192) == "me/model:latest-ornith-ctx8192"
    assert ollama_model_name("llama3:latest-ornith-ctx8192", 8192) == "llama3:latest-ornith-ctx8192"
