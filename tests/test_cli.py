"""The command line: doctor explains, chat answers through the real embedded
model, and bad input is one clear line with exit code 2."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from lsp_wire import Wire

pytestmark = pytest.mark.usefixtures("no_new_llama_servers")


def run(*args, env=None, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "ornith_lsp", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


def test_doctor_json_explains_the_embedded_choice(tmp_path, llama_server, embedded_model):
    res = run("doctor", "--json", "--root", str(tmp_path), "--hardware", os.devnull)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["backend"] == "llamacpp"
    assert report["model_size"] == "SmolLM2-135M-Instruct"
    assert report["model"] == str(embedded_model)
    assert report["command"][0] == str(llama_server)
    assert "{port}" in report["command"]
    assert report["llama_server"]["path"] == str(llama_server)
    assert report["reasons"] and all(isinstance(r, str) and r for r in report["reasons"])
    assert report["problems"] == []


def test_chat_json_answers_through_the_embedded_model(tmp_path, llama_server, embedded_model):
    res = run("chat", "Write a Python function that adds two numbers", "--json", "--max-tokens", "64",
              "--root", str(tmp_path), "--log-dir", str(tmp_path / "logs"))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out) == {"text", "completion_tokens", "tokens_per_second", "ttft_s"}
    assert out["text"].strip() and out["completion_tokens"] > 0
    assert out["tokens_per_second"] > 0 and out["ttft_s"] > 0


def test_bad_setting_from_env_is_one_line(tmp_path):
    res = run("doctor", "--root", str(tmp_path), env={"ORNITH_BACKEND__KIND": "gpu"})
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "backend.kind" in lines[0] and "'gpu'" in lines[0] and "environment" in lines[0]
    assert "remote" in lines[0] and "Traceback" not in res.stderr


def test_bad_cli_value_names_the_field(tmp_path):
    res = run("doctor", "--root", str(tmp_path), "--context-length", "lots")
    assert res.returncode == 2
    assert "backend.context_length" in res.stderr and "command line" in res.stderr


def test_unreachable_remote_endpoint(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    started = time.monotonic()
    res = run("chat", "hi", "--root", str(tmp_path), "--backend", "remote",
              "--endpoint", f"http://127.0.0.1:{dead}/v1", env={"ORNITH_CLIENT__MAX_RETRIES": "1"})
    assert res.returncode == 2
    assert f"127.0.0.1:{dead}" in res.stderr and "Traceback" not in res.stderr
    assert time.monotonic() - started < 30


def test_tcp_port_in_use_and_tcp_serving(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = run("serve", "--tcp", "--port", str(port), "--root", str(tmp_path))
        assert res.returncode == 2 and f"127.0.0.1:{port}" in res.stderr and "in use" in res.stderr

    proc = subprocess.Popen(
        [sys.executable, "-m", "ornith_lsp", "serve", "--tcp", "--port", str(port), "--backend", "remote",
         "--endpoint", "http://127.0.0.1:9/v1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                time.sleep(0.05)
        with conn:
            wire = Wire(_SocketProc(conn))
            result = wire.initialize(tmp_path.as_uri())["result"]
            assert result["serverInfo"]["name"] == "ornith-lsp"
            status = wire.wait_backend("failed", timeout=30)
            assert status["state"] == "failed" and "127.0.0.1:9" in status["error"]
    finally:
        proc.terminate()
        proc.wait(10)


class _SocketProc:
    """Lets Wire talk over a TCP socket as if it were a process's pipes."""

    def __init__(self, conn: socket.socket):
        self.stdin = conn.makefile("wb")
        self.stdout = conn.makefile("rb")


# doctor with bad input: one clear line each, and the rest still printed -------------

def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def doctor(tmp_path, *args, env=None):
    quiet = {"OLLAMA_HOST": f"127.0.0.1:{dead_port()}", **(env or {})}
    return run("doctor", "--root", str(tmp_path), *args, env=quiet)


def test_doctor_with_malformed_nvidia_smi_csv_still_plans(tmp_path, llama_server, embedded_model):
    csv = tmp_path / "smi.csv"
    csv.write_text("0, NVIDIA GeForce RTX 4090, 24564, 23012\nNVIDIA-SMI has failed\n")
    res = doctor(tmp_path, "--hardware", str(csv))
    assert res.returncode == 0, res.stderr
    problems = [line for line in res.stdout.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1 and "line 2" in problems[0] and "NVIDIA-SMI has failed" in problems[0]
    assert "MiB RAM" in res.stdout and "CPU cores" in res.stdout and "backend:        llamacpp" in res.stdout
    report = json.loads(doctor(tmp_path, "--hardware", str(csv), "--json").stdout)
    assert report["backend"] == "llamacpp" and report["error"] is None
    assert report["hardware"]["gpus"] == [] and report["hardware"]["ram_mib"] > 0
    assert len(report["problems"]) == 1 and "line 2" in report["problems"][0]


def test_doctor_with_a_gpu_that_has_no_free_memory(tmp_path, llama_server, embedded_model):
    csv = tmp_path / "smi.csv"
    csv.write_text("0, NVIDIA GeForce RTX 3090, 24576, 0\n1, NVIDIA GeForce RTX 4090, 24564, 23012\n")
    res = doctor(tmp_path, "--hardware", str(csv), "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert [g["index"] for g in report["hardware"]["gpus"]] == [1]
    assert len(report["problems"]) == 1 and "GPU 0" in report["problems"][0] and "0 MiB free" in report["problems"][0]
    assert report["gpu_indices"] == [1] and report["env"]["CUDA_VISIBLE_DEVICES"] == "1"


def test_doctor_with_a_context_larger_than_memory_allows(tmp_path, llama_server, embedded_model):
    """With every layer pinned to the GPU (backend.gpu_layers = 37), 64K of context cannot fit 8 GB."""
    csv = tmp_path / "smi.csv"
    csv.write_text("0, NVIDIA GeForce RTX 4060, 8192, 8192\n")
    args = ("--hardware", str(csv), "--model-size", "9B", "--context-length", "65536")
    pinned = {"ORNITH_BACKEND__GPU_LAYERS": "37"}
    res = doctor(tmp_path, *args, env=pinned)
    assert res.returncode == 2
    assert "GPU 0 NVIDIA GeForce RTX 4060 8192/8192 MiB free" in res.stdout and "CPU cores" in res.stdout
    assert "backend:        none" in res.stdout and "11715 MiB > 8192 MiB free" in res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot plan" in lines[0] and "65536" in lines[0] and "Traceback" not in res.stderr
    report = json.loads(doctor(tmp_path, *args, "--json", env=pinned).stdout)
    assert report["backend"] is None and "11715 MiB" in report["error"]
    assert report["hardware"]["gpus"][0]["name"] == "NVIDIA GeForce RTX 4060" and report["problems"] == []
    # left to the planner, the layers that do not fit stay in RAM
    split = json.loads(doctor(tmp_path, *args, "--json").stdout)
    assert split["backend"] == "llamacpp" and split["context_length"] == 65536 and 0 < split["gpu_layers"] < 37


def test_doctor_refuses_expert_offload_it_cannot_plan(tmp_path, llama_server, embedded_model):
    csv = tmp_path / "smi.csv"
    csv.write_text("0, NVIDIA GeForce RTX 4080, 16376, 15800\n")
    res = doctor(tmp_path, "--hardware", str(csv), "--model-size", "9B", env={"ORNITH_BACKEND__CPU_MOE_LAYERS": "8"})
    assert res.returncode == 2 and "backend:        none" in res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "cpu_moe_layers = 8" in lines[0] and "dense model" in lines[0]
    assert "Traceback" not in res.stderr


def test_doctor_offers_the_35b_with_experts_in_ram(tmp_path, llama_server, embedded_model):
    csv = tmp_path / "smi.csv"
    csv.write_text("0, NVIDIA GeForce RTX 4080, 16376, 15800\n")
    res = doctor(tmp_path, "--hardware", str(csv))
    assert res.returncode == 0, res.stderr
    assert "model:          Ornith-1.0-9B-Q8_0.gguf (9B, Q8_0)" in res.stdout
    alternative = [line for line in res.stdout.splitlines() if line.startswith("alternative:")]
    assert len(alternative) == 1 and "the 35B Q4_K_M" in alternative[0] and "--n-cpu-moe" in alternative[0]
    assert "an estimate" in alternative[0] and alternative[0].endswith("use it with --model-size 35B")
    report = json.loads(doctor(tmp_path, "--hardware", str(csv), "--json").stdout)
    (other,) = report["alternatives"]
    assert other["model_size"] == "35B" and other["cpu_moe_layers"] > 0
    assert other["command"][other["command"].index("--n-cpu-moe") + 1] == str(other["cpu_moe_layers"])


def test_doctor_with_an_unreachable_remote_endpoint(tmp_path):
    port = dead_port()
    res = doctor(tmp_path, "--hardware", os.devnull, "--backend", "remote", "--endpoint", f"http://127.0.0.1:{port}/v1")
    assert res.returncode == 0, res.stderr
    problems = [line for line in res.stdout.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1 and f"127.0.0.1:{port}" in problems[0] and "not usable" in problems[0]
    assert "backend:        remote" in res.stdout and "Remote backend" in res.stdout
    report = json.loads(doctor(tmp_path, "--hardware", os.devnull, "--backend", "remote",
                               "--endpoint", f"http://127.0.0.1:{port}/v1", "--json").stdout)
    assert report["remote"]["models"] is None and report["problems"] == [report["remote"]["error"]]


async def test_doctor_probes_a_real_remote_endpoint(tmp_path, llama_server, embedded_model):
    import asyncio

    from ornith_lsp.backends.supervisor import Supervisor

    argv = [str(llama_server), "-m", str(embedded_model), "-c", "1024", "--alias", "tiny-remote",
            "--host", "127.0.0.1", "--port", "{port}"]
    sup = Supervisor("remote-for-doctor", argv, log_path=tmp_path / "remote.log")
    await sup.start()
    try:
        res = await asyncio.to_thread(doctor, tmp_path, "--hardware", os.devnull, "--backend", "remote",
                                      "--endpoint", sup.endpoint, "--json")
        assert res.returncode == 0, res.stderr
        report = json.loads(res.stdout)
        assert report["backend"] == "remote" and report["endpoint"] == sup.endpoint
        assert "tiny-remote" in report["remote"]["models"] and report["remote"]["ollama"] is None
        assert report["problems"] == []
        text = await asyncio.to_thread(doctor, tmp_path, "--hardware", os.devnull, "--endpoint", sup.endpoint)
        assert "endpoint lists: tiny-remote" in text.stdout
    finally:
        await sup.stop()


def test_doctor_reports_a_local_ollama(tmp_path, llama_server, embedded_model):
    from test_backends_more import FakeOllama

    with FakeOllama(models=("qwen2.5-coder:7b", "llama3:latest")) as fake:
        host = fake.root.removeprefix("http://")
        res = doctor(tmp_path, "--hardware", os.devnull, "--json", env={"OLLAMA_HOST": host})
        assert res.returncode == 0, res.stderr
        report = json.loads(res.stdout)
        assert report["backend"] == "llamacpp"  # reported, not chosen: the user decides
        assert report["ollama"] == {"root": fake.root, "version": "0.9.0", "models": ["qwen2.5-coder:7b", "llama3:latest"]}
        text = doctor(tmp_path, "--hardware", os.devnull, env={"OLLAMA_HOST": host}).stdout
        assert f"--endpoint {fake.root}/v1 --model qwen2.5-coder:7b" in text
    quiet = json.loads(doctor(tmp_path, "--hardware", os.devnull, "--json").stdout)
    assert quiet["ollama"] is None


def test_doctor_text_for_an_endpoint_on_ollamas_port(tmp_path):
    """The plan's own ``ollama`` flag is not a detected Ollama: the text report
    says how the context would be pinned instead of failing on the flag."""
    res = doctor(tmp_path, "--hardware", os.devnull, "--endpoint", "http://127.0.0.1:11434/v1", "--model", "llama3")
    assert res.returncode == 0, res.stderr
    assert "backend:        remote" in res.stdout and "Ollama (port 11434 is Ollama's)" in res.stdout
    report = json.loads(doctor(tmp_path, "--hardware", os.devnull, "--endpoint", "http://127.0.0.1:11434/v1", "--json").stdout)
    assert report["ollama"] is True and report["remote"]["endpoint"] == "http://127.0.0.1:11434/v1"


def test_doctor_json_for_vllm_names_the_missing_install(tmp_path):
    csv = tmp_path / "smi.csv"
    csv.write_text("".join(f"{i}, NVIDIA H100 80GB HBM3, 81559, 81000\n" for i in range(8)))
    report = json.loads(doctor(tmp_path, "--hardware", str(csv), "--json").stdout)
    assert report["backend"] == "vllm" and report["model_size"] == "397B"
    assert report["problems"] == ['vLLM is not installed; install it with: pip install "ornith-lsp[vllm]"']


# pull: arguments and the missing-library message; nothing is downloaded -------------

def test_pull_without_huggingface_hub_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    from ornith_lsp import cli

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails, whatever is installed
    assert cli.main(["pull", "--model-size", "35B", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ornith-lsp: pull needs huggingface_hub, which is not installed; install it with: pip install huggingface_hub"]
    assert list(tmp_path.iterdir()) == []


def test_pull_argument_handling(monkeypatch, capsys, tmp_path):
    import types

    from ornith_lsp import cli

    calls = []
    hub = types.ModuleType("huggingface_hub")  # a test double: records, never downloads
    hub.hf_hub_download = lambda **kw: calls.append(("file", kw)) or str(kw["local_dir"] / kw["filename"])
    hub.snapshot_download = lambda **kw: calls.append(("repo", kw)) or str(kw["local_dir"])
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)

    assert cli.main(["pull", "--model-size", "35B", "--quant", "Q3_K_S"]) == 2
    assert "the 35B has no 'Q3_K_S' file; it has: bf16, Q8_0, Q5_K_M, Q4_K_M" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["pull", "--model-size", "70B"])
    assert exit_.value.code == 2
    capsys.readouterr()

    assert cli.main(["pull", "--model-size", "35B", "--dir", str(tmp_path)]) == 0
    assert calls[-1] == ("file", {"repo_id": "deepreinforce-ai/Ornith-1.0-35B-GGUF",
                                  "filename": "Ornith-1.0-35B-Q4_K_M.gguf", "local_dir": tmp_path})
    out = capsys.readouterr()
    assert out.out.strip() == str(tmp_path / "Ornith-1.0-35B-Q4_K_M.gguf")
    assert "--backend llamacpp --model-path" in out.err

    assert cli.main(["pull", "--quant", "bf16", "--dir", str(tmp_path)]) == 0
    assert calls[-1] == ("repo", {"repo_id": "deepreinforce-ai/Ornith-1.0-9B", "local_dir": tmp_path / "Ornith-1.0-9B"})
    assert "--backend vllm --model-path" in capsys.readouterr().err

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert cli.main(["pull"]) == 0
    assert calls[-1][1]["filename"] == "Ornith-1.0-9B-Q4_K_M.gguf"
    assert calls[-1][1]["local_dir"] == tmp_path / "data" / "ornith-lsp" / "models"

    def offline(**kw):
        raise OSError("We couldn't connect to 'https://huggingface.co'\nsecond line")

    hub.hf_hub_download = offline
    capsys.readouterr()
    assert cli.main(["pull", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "ornith-lsp: could not fetch deepreinforce-ai/Ornith-1.0-9B-GGUF: OSError: We couldn't connect to 'https://huggingface.co'"
