"""The planner against the release table and against arithmetic redone here
from the catalog alone, plus nvidia-smi parsing.  All pure: no GPU, no server."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from ornith_lsp import procs
from ornith_lsp.backends import catalog, hardware
from ornith_lsp.backends.embedded import EMBEDDED_CONTEXT, EMBEDDED_NAME, EMBEDDED_QUANT
from ornith_lsp.backends.hardware import (
    Gpu,
    Hardware,
    HardwareError,
    parse_nvidia_smi,
    probe,
)
from ornith_lsp.backends.placement import CPU_HEADROOM_MIB, VLLM_HEADROOM_MIB
from ornith_lsp.backends.planner import plan
from ornith_lsp.backends.plans import Plan, PlanError, plan_summary
from ornith_lsp.backends.vllm import VLLM_GPU_MEMORY_UTILIZATION
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
    "1x8GB-4060Ti-desktop": (
        machine(("NVIDIA GeForce RTX 4060 Ti", 8188, 7702)),
        "9B",
        "Q4_K_M",
        "llamacpp",
        [0],
        "9B Q4 (~6 GB) on an 8 GB RTX 4060 Ti, the card the release names",
    ),
    "1x12GB": (machine(card("NVIDIA GeForce RTX 3060", 12)), "9B", "Q4_K_M", "llamacpp", [0], "9B Q4 on 8-12 GB"),
    "1x16GB": (machine(card("NVIDIA GeForce RTX 4080", 16)), "9B", "Q8_0", "llamacpp", [0], "35B needs 24 GB"),
    "1x24GB": (machine(RTX4090), "35B", "Q4_K_M", "llamacpp", [0], "35B Q4_K_M on 24 GB"),
    "1x24GB-desktop": (
        machine(card("NVIDIA GeForce RTX 4090", 24, free_mib=22_500)),
        "35B",
        "Q4_K_M",
        "llamacpp",
        [0],
        "prefer 35B wherever it fits: with an f16 KV cache it leaves under 8K here, with q8_0 it fits",
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


KV_BYTES = {"f16": 2, "q8_0": 34 / 32, "q4_0": 18 / 32}
LLAMA_MARGIN = 1024 * MIB  # llama.cpp's default --fit-target per GPU


def llama_gpu_reserve(spec: catalog.ModelSpec, context: int) -> int:
    """llama.cpp's compute buffer under flash attention (f32 logits of a 512-token
    micro-batch, f16 mask of context x 512) plus its --fit margin."""
    vocab = spec.vocab_size or 152064
    return LLAMA_MARGIN + vocab * 512 * 4 + context * 512 * 2


def memory_check(p: Plan, hw: Hardware, backend: BackendSettings):
    """Redo the arithmetic from the catalog: returns fits(context) for the
    pool the plan uses (full offload or CPU only)."""
    spec = catalog.EMBEDDED if p.model_size == EMBEDDED_NAME else catalog.MODELS[p.model_size]
    quant = next(q for q in spec.quants if q.name == p.quant)
    weights = round(quant.size_gb * 1e9)
    kv = math.ceil(2 * spec.layers * spec.kv_heads * spec.head_dim * KV_BYTES[p.kv_cache_type or "f16"])
    gpus = [g for g in hw.gpus if g.index in p.gpu_indices]
    if not gpus:
        capacity = hw.ram_mib * MIB
        return spec, lambda context: weights + kv * context + (CPU_HEADROOM_MIB + backend.cache_ram_mib) * MIB <= capacity
    if p.backend == "vllm":
        capacity = len(gpus) * math.floor(VLLM_GPU_MEMORY_UTILIZATION * min(g.total_mib for g in gpus) * MIB)
        return spec, lambda context: weights + kv * context + len(gpus) * VLLM_HEADROOM_MIB * MIB <= capacity
    capacity = len(gpus) * min(g.free_mib for g in gpus) * MIB
    return spec, lambda context: weights + kv * context + len(gpus) * llama_gpu_reserve(spec, context) <= capacity


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
        "-c", "15360",
        "-ngl", "49",
        "-fa", "on",
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
    """The automatic choice never leaves weights in RAM, so no model fits 64K on an
    8 GB card, and the 9B's line carries the numbers."""
    with pytest.raises(PlanError) as err:
        plan(machine(card("NVIDIA GeForce RTX 4060", 8)), BackendSettings(context_length=65536))
    message = str(err.value)
    for number in (
        "65536", "5722 MiB weights", "4608 MiB KV", "1024 MiB margin", "297 MiB compute buffer",
        "64 MiB attention mask", "11715 MiB", "8192 MiB free",
    ):  # fmt: skip
        assert number in message
    assert "at most 15360 tokens fit" in message


def test_9b_asked_for_with_more_context_than_the_gpu_holds_splits_layers():
    hw = machine(card("NVIDIA GeForce RTX 4060", 8), ram_gb=16)
    p = plan(hw, BackendSettings(model_size="9B", context_length=65536))
    assert (p.model_size, p.quant, p.context_length, p.kv_cache_type) == ("9B", "Q4_K_M", 65536, "f16")
    layers = p.gpu_layers
    assert 0 < layers < 37 and p.command[p.command.index("-ngl") + 1] == str(layers)
    spec = catalog.MODELS["9B"]
    share = layers / 37
    weights, kv = 6.0e9, kv_bytes_per_token(spec)
    gpu = weights * share + kv * share * 65536 + llama_gpu_reserve(spec, 65536)
    ram = weights * (1 - share) + kv * (1 - share) * 65536 + (CPU_HEADROOM_MIB + 256) * MIB
    assert gpu <= 8 * GIB * MIB and ram <= 16 * GIB * MIB
    share_more = (layers + 1) / 37
    assert weights * share_more + kv * share_more * 65536 + llama_gpu_reserve(spec, 65536) > 8 * GIB * MIB
    assert any(r.startswith(f"-ngl {layers} of 37") and "the most that fit" in r for r in p.reasons)
    assert any("GB from RAM" in r and "an estimate" in r for r in p.reasons)


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
    assert "--n-cpu-moe" not in p.command
    with pytest.raises(PlanError, match="16384 MiB free") as err:
        plan(machine(card("NVIDIA GeForce RTX 4080", 16), ram_gb=8), BackendSettings(model_size="35B"))
    assert "> 8192 MiB RAM" in str(err.value)
    with pytest.raises(PlanError, match=r"even with the experts of 48 of 48 layers in RAM.* > 2048 MiB free"):
        plan(machine(card("NVIDIA GeForce RTX 3050", 2), ram_gb=64), BackendSettings(model_size="35B"))


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

    monkeypatch.setattr(hardware.procs, "capture", missing)
    hw = probe()
    assert hw.gpus == [] and "not found" in hw.source


def test_probe_reports_a_failing_nvidia_smi(monkeypatch):
    def failing(argv, **kwargs):
        assert argv == hardware.NVIDIA_SMI and kwargs["timeout_s"] == 10
        return procs.CaptureResult(9, stdout="", stderr="NVIDIA-SMI has failed\n", timed_out=False)

    monkeypatch.setattr(hardware.procs, "capture", failing)
    hw = probe()
    assert hw.gpus == [] and any("exited with 9" in p for p in hw.problems)


# custom GGUF files --------------------------------------------------------

from ornith_lsp.backends import gguf  # noqa: E402 -- this section's imports sit with its tests
from ornith_lsp.backends.ollama import is_ollama_port, ollama_model_name  # noqa: E402


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
    assert catalog.from_gguf(info).kv_bytes("f16") == 2 * 30 * 3 * 64 * 2
    assert info.file_type == "Q4_1" and info.size_bytes == other_gguf.stat().st_size
    assert info.vocab_size == 49152  # the length of tokenizer.ggml.tokens, which is skipped, not kept
    assert (info.expert_bytes, info.expert_count, info.is_moe) == (None, None, False)  # its tensor table has no *_exps
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
        "/usr/bin/llama-server", "-m", str(other_gguf), "-c", "8192", "-ngl", "31", "-fa", "on",
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
    assert round(794 * 1e9) + kv * p.context_length + 16 * VLLM_HEADROOM_MIB * MIB <= usable
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


# calibrated headroom, KV cache types, layers and experts in RAM ----------------------

RTX4060TI = ("NVIDIA GeForce RTX 4060 Ti", 8188, 7702)
RTX4080 = card("NVIDIA GeForce RTX 4080", 16)
RTX3060 = card("NVIDIA GeForce RTX 3060", 12)


def test_9b_q4_on_the_8gb_card_the_release_names_with_its_reasons():
    p = plan(machine(RTX4060TI), BackendSettings())
    assert (p.model_size, p.quant, p.kv_cache_type, p.gpu_layers) == ("9B", "Q4_K_M", "f16", 37)
    assert p.context_length >= 8192
    # (7702 MiB - 5722 MiB weights - 1024 MiB margin - 297 MiB logits) / (72 KiB KV + 1 KiB mask)
    assert p.context_length == (7702 * MIB - round(6.0e9) - 1024 * MIB - 151936 * 512 * 4) // (73 * 1024) // 1024 * 1024
    context = next(r for r in p.reasons if r.startswith("Context"))
    assert "1024 MiB margin" in context and "297 MiB compute buffer" in context and "1 KiB attention mask" in context
    assert any("--fit-target" in a for a in p.assumed)
    assert p.command[p.command.index("-fa") + 1] == "on"


def test_kv_cache_is_quantized_only_where_f16_falls_under_the_floor():
    desktop = machine(card("NVIDIA GeForce RTX 4090", 24, free_mib=22_500))
    p = plan(desktop, BackendSettings())
    assert (p.model_size, p.kv_cache_type) == ("35B", "q8_0")
    cmd = p.command
    assert cmd[cmd.index("-ctk") + 1] == "q8_0" and cmd[cmd.index("-ctv") + 1] == "q8_0"
    assert cmd[cmd.index("-fa") + 1] == "on"
    reason = next(r for r in p.reasons if r.startswith("KV cache stored as q8_0"))
    assert "with f16 only 4096 tokens fit, under the 8192 needed" in reason
    _, fits = memory_check(p, desktop, BackendSettings())
    assert fits(p.context_length) and not fits(p.context_length + 1024)
    # nothing is quantized where f16 already leaves the floor
    full = plan(machine(RTX4090), BackendSettings())
    assert full.kv_cache_type == "f16" and "-ctk" not in full.command


def test_kv_cache_type_setting_forces_it_on_or_off():
    desktop = machine(card("NVIDIA GeForce RTX 4090", 24, free_mib=22_500))
    off = plan(desktop, BackendSettings(kv_cache_type="f16"))
    assert (off.model_size, off.kv_cache_type) == ("31B", "f16") and "-ctk" not in off.command
    assert any(r.startswith("Not the 35B") for r in off.reasons)
    q4 = plan(machine(RTX4090), BackendSettings(kv_cache_type="q4_0"))
    f16 = plan(machine(RTX4090), BackendSettings())
    assert (q4.model_size, q4.kv_cache_type) == ("35B", "q4_0")
    assert q4.command[q4.command.index("-ctv") + 1] == "q4_0" and q4.context_length > 1.5 * f16.context_length
    assert any("backend.kv_cache_type asked for it" in r for r in q4.reasons)
    cpu = plan(machine(ram_gb=16), BackendSettings(model_size="9B", kv_cache_type="q8_0"))
    assert cpu.command[cpu.command.index("-fa") + 1] == "on" and "-ctk" in cpu.command
    assert "-fa" not in plan(machine(ram_gb=16), BackendSettings(model_size="9B")).command
    with pytest.raises(PlanError, match="vLLM does not take it"):
        plan(machine(H100), BackendSettings(kind="vllm", kv_cache_type="q8_0"))


def expert_arithmetic(p: Plan, ram_mib: int, free_mib: int):
    """The 35B's GPU and RAM needs redone from the catalog for ``--n-cpu-moe n``."""
    spec = catalog.MODELS["35B"]
    weights = round(next(q for q in spec.quants if q.name == p.quant).size_gb * 1e9)
    layer = round(weights * spec.expert_share / spec.layers)
    kv = kv_bytes_per_token(spec)

    def gpu(n: int, context: int) -> int:
        return weights - n * layer + kv * context + llama_gpu_reserve(spec, context) + layer

    def ram(n: int) -> int:
        return n * layer + (CPU_HEADROOM_MIB + 256) * MIB

    return gpu, ram, free_mib * MIB, ram_mib * MIB


def test_35b_asked_for_on_a_16gb_card_keeps_experts_in_ram():
    hw = machine(RTX4080, ram_gb=32)
    p = plan(hw, BackendSettings(model_size="35B"))
    n = p.cpu_moe_layers
    assert (p.model_size, p.quant, p.backend, p.gpu_layers) == ("35B", "Q4_K_M", "llamacpp", 49)
    assert n is not None and 0 < n < 48
    assert p.command[p.command.index("--n-cpu-moe") + 1] == str(n) and "-ot" not in p.command
    assert p.context_length >= 32768
    gpu, ram, free, total = expert_arithmetic(p, 32 * GIB, 16 * GIB)
    assert gpu(n, p.context_length) <= free and ram(n) <= total
    assert gpu(n - 1, 32768) > free, "one layer fewer in RAM would have left 32K"
    speed = next(r for r in p.reasons if "tokens/s" in r)
    assert "GB from RAM" in speed and "an estimate, not a measurement" in speed
    assert 10 < p.expected_tokens_per_second < 100
    # slower than the whole model on a card that holds it, faster than the 9B entirely in RAM
    assert p.expected_tokens_per_second < plan(machine(RTX4090), BackendSettings()).expected_tokens_per_second
    assert p.expected_tokens_per_second > plan(machine(ram_gb=32), BackendSettings(model_size="9B")).expected_tokens_per_second
    assert any(f"--n-cpu-moe {n}" in r and "routed experts" in r for r in p.reasons)
    assert any("128 routed experts, 8 per token" in a for a in p.assumed)
    # asked for in so many words, the split is kept as asked
    fixed = plan(hw, BackendSettings(model_size="35B", cpu_moe_layers=40))
    assert fixed.cpu_moe_layers == 40 and any("backend.cpu_moe_layers asked for it" in r for r in fixed.reasons)


def test_automatic_choice_never_leaves_weights_in_ram():
    p = plan(machine(RTX4080, ram_gb=32), BackendSettings())
    assert (p.model_size, p.cpu_moe_layers, p.gpu_layers) == ("9B", None, 37)
    from ornith_lsp.backends.planner import alternatives

    others = alternatives(machine(RTX4080, ram_gb=32), BackendSettings(), p)
    assert [(o.model_size, o.cpu_moe_layers is not None) for o in others] == [("35B", True)]
    assert alternatives(machine(RTX4090), BackendSettings(), plan(machine(RTX4090), BackendSettings())) == []


def test_not_enough_ram_for_the_offloaded_experts_is_refused_with_arithmetic():
    with pytest.raises(PlanError) as err:
        plan(machine(RTX3060, ram_gb=8), BackendSettings(model_size="35B"))
    message = str(err.value)
    assert "backend.model_size = 35B cannot be served here" in message and "but RAM cannot hold them" in message
    assert re.search(r"RAM: \d+ x 411 MiB = \d+ MiB experts \+ 2048 MiB headroom \+ 256 MiB prompt cache = \d+ MiB > 8192 MiB RAM", message)
    assert "12288 MiB free" in message


def test_a_dense_model_asked_to_offload_experts_is_refused():
    with pytest.raises(PlanError, match="the 9B is a dense model"):
        plan(machine(RTX4080), BackendSettings(model_size="9B", cpu_moe_layers=4))
    with pytest.raises(PlanError, match="has 48 layers"):
        plan(machine(RTX4080), BackendSettings(model_size="35B", cpu_moe_layers=60))
    with pytest.raises(PlanError, match="set one of them"):
        plan(machine(RTX4080), BackendSettings(model_size="35B", cpu_moe_layers=4, gpu_layers=20))
    with pytest.raises(PlanError, match="no GPU is usable"):
        plan(machine(), BackendSettings(model_size="35B", cpu_moe_layers=4))
    with pytest.raises(PlanError, match="the 397B has no GGUF file"):
        plan(machine(RTX4080), BackendSettings(model_size="397B", cpu_moe_layers=4))
    # left to the automatic choice, the setting picks among the models that have experts
    auto = plan(machine(RTX4080, ram_gb=32), BackendSettings(cpu_moe_layers=30))
    assert (auto.model_size, auto.cpu_moe_layers) == ("35B", 30)


def test_31b_asked_for_on_a_12gb_card_splits_its_layers():
    hw = machine(RTX3060, ram_gb=64)
    p = plan(hw, BackendSettings(model_size="31B"))
    assert (p.model_size, p.quant, p.cpu_moe_layers) == ("31B", "Q4_K_M", None)
    assert 0 < p.gpu_layers < 65 and p.context_length >= 32768
    assert p.command[p.command.index("-ngl") + 1] == str(p.gpu_layers)
    assert any("the most that fit the GPU" in r for r in p.reasons)
    assert 0 < p.expected_tokens_per_second < 10


def moe_gguf(path: Path, used: int | None) -> Path:
    """A header with a tensor table: two layers, each with 3 MB of expert tensors
    and 1 MB of attention, followed by their (zero) data."""
    import struct

    def s(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    def kv_u32(key, value):
        return s(key) + struct.pack("<II", 4, value)

    arch = "qwen3moe"
    kvs = [
        s("general.architecture") + struct.pack("<I", 8) + s(arch),
        kv_u32(f"{arch}.block_count", 2),
        kv_u32(f"{arch}.context_length", 32768),
        kv_u32(f"{arch}.embedding_length", 512),
        kv_u32(f"{arch}.attention.head_count", 8),
        kv_u32(f"{arch}.attention.head_count_kv", 2),
        kv_u32(f"{arch}.expert_count", 64),
        kv_u32("general.file_type", 15),
    ]
    if used is not None:
        kvs.append(kv_u32(f"{arch}.expert_used_count", used))
    tensors, offset = [], 0
    for layer in range(2):
        for name, size in (("attn_q.weight", 1_000_000), ("ffn_up_exps.weight", 3_000_000)):
            tensors.append(s(f"blk.{layer}.{name}") + struct.pack("<IQIQ", 1, size, 0, offset))
            offset += size
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + b"".join(tensors)
    head += b"\0" * (-len(head) % 32)
    path.write_bytes(head + b"\0" * offset)
    return path


def test_gguf_reader_measures_expert_tensors(tmp_path):
    info = gguf.read_header(moe_gguf(tmp_path / "mix.gguf", used=4))
    assert (info.expert_count, info.expert_used_count, info.expert_bytes, info.expert_layers) == (64, 4, 6_000_000, 2)
    assert info.is_moe
    plain = gguf.read_header(synthetic_gguf(tmp_path / "plain.gguf"))
    assert plain.expert_bytes is None


def test_custom_moe_gguf_without_expert_counts_is_refused(tmp_path):
    path = moe_gguf(tmp_path / "mix.gguf", used=None)
    headers = {str(path): gguf.read_header(path)}
    small = machine(("NVIDIA GeForce RTX 3060", 12288, 1200))  # 8 MB of weights do not fit next to the margin
    with pytest.raises(PlanError) as err:
        plan(small, BackendSettings(model_path=path), gguf_headers=headers)
    message = str(err.value)
    assert "6 MiB of expert tensors but its header has no expert_used_count" in message
    assert "1200 MiB free" in message and "backend.gpu_layers" in message
    with pytest.raises(PlanError, match="no expert_used_count"):
        plan(machine(RTX3060), BackendSettings(model_path=path, cpu_moe_layers=1), gguf_headers=headers)
    counted = moe_gguf(tmp_path / "mix-counted.gguf", used=4)
    p = plan(machine(RTX3060), BackendSettings(model_path=counted, cpu_moe_layers=1),
             gguf_headers={str(counted): gguf.read_header(counted)})  # fmt: skip
    assert p.cpu_moe_layers == 1 and "--n-cpu-moe" in p.command
    assert any("64 experts, 4 read per token" in a for a in p.assumed)


def test_procs_capture_keeps_streams_apart_and_bounds_time():
    done = procs.capture(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout_s=10)
    assert (done.returncode, done.stdout, done.stderr, done.timed_out) == (3, "out\n", "err\n", False)
    slow = procs.capture(["sh", "-c", "sleep 30 & sleep 30"], timeout_s=0.3)
    assert slow.timed_out and slow.returncode is not None
    with pytest.raises(FileNotFoundError):
        procs.capture(["no-such-binary-here"], timeout_s=1)


def test_readme_hardware_table_is_the_planners():
    from ornith_lsp.backends import table

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    rendered = table.render()
    assert rendered in readme, "regenerate it with: python -m ornith_lsp.backends.table"
    assert "| 8 GB RTX 4060 Ti (7702 MiB free), 32 GB RAM | nothing | 9B Q4_K_M |" in rendered
    assert "`--model-size 35B` | 35B Q4_K_M |" in rendered and "--n-cpu-moe" in rendered
