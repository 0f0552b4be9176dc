"""Every benchmark's ``--quick`` mode, run as CI runs it, so the scripts that
produce the README's figures cannot rot.  Each runs as a subprocess with
tiny inputs and the REAL embedded backend; the test checks the JSON it wrote
(``bench/results/<name>.quick.json``) has the figures and that they are sane
(ratios > 0, fractions in [0, 1]).  No absolute time is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
RESULTS = BENCH / "results"

pytestmark = [pytest.mark.usefixtures("no_new_llama_servers"), pytest.mark.timeout(900)]


def run_quick(name: str) -> dict:
    started = time.time()
    proc = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--quick"], cwd=BENCH,
                          capture_output=True, text=True, timeout=840)
    assert proc.returncode == 0, proc.stderr[-3000:]
    path = RESULTS / f"{name}.quick.json"
    assert path.stat().st_mtime >= started - 1, f"{path} was not written by this run"
    data = json.loads(path.read_text())
    assert data["benchmark"] == name and data["quick"] is True
    assert {"command", "date", "machine"} <= set(data)
    assert data["machine"]["cores"] >= 1
    return data


def positive(value) -> bool:
    return isinstance(value, (int, float)) and value > 0


def fraction(value) -> bool:
    return isinstance(value, (int, float)) and 0 <= value <= 1


def test_overhead():
    d = run_quick("overhead")
    assert positive(d["ratio_tokens_per_second_A_over_B"]) and positive(d["ratio_ttft_A_over_B"])


def test_kvcache():
    d = run_quick("kvcache")
    frac = d["reused_fraction_after_first_turn"]
    assert fraction(frac["append_only"]) and fraction(frac["rebuilt"])
    assert frac["append_only"] > frac["rebuilt"], frac  # the point of the append-only layout
    assert positive(d["prefill_ratio_rebuilt_over_append_only"])
    for run in d["per_run"]["append_only"] + d["per_run"]["rebuilt"]:
        assert len(run["turns"]) >= 2
        assert all(t["prompt_tokens"] >= t["cached_tokens"] >= 0 for t in run["turns"])


def test_lsp_latency():
    d = run_quick("lsp_latency")
    for kind in ("codeAction", "hover", "backendStatus"):
        assert d["idle"][kind]["n"] > 0 and positive(d["idle"][kind]["p50_ms"])
        assert d["idle"][kind]["p99_ms"] >= d["idle"][kind]["p50_ms"]
        busy = d["busy"][kind]
        if busy["n"]:  # the model may finish a 2-core quick fix between samples
            assert positive(d["ratio_busy_over_idle"][kind]["p50"])
    assert d["busy"]["codeAction"]["n"] + d["fix_running_model_idle"]["codeAction"]["n"] > 0
    assert d["fixes_started"] >= 1


def test_repomap():
    d = run_quick("repomap")
    o = d["ornith"]
    assert d["files"] > 10 and positive(o["cold_s"]) and positive(o["update_s"]) and positive(o["peak_mib"])
    assert d["ornith_runs"][0]["parses_update"] == 1  # only the changed file is parsed again
    if d["aider"] is None:
        assert d["aider_not_measured"].startswith("aider: not measured because")
    else:
        assert positive(d["aider"]["cold_s"]) and positive(d["ratio_aider_over_ornith"]["cold_s"])


def test_fixrate():
    d = run_quick("fixrate")
    assert d["total"] == 2 and len(d["tasks"]) == 2
    for side in ("agent", "one_shot", "one_shot_text"):
        assert 0 <= d[side]["fixed"] <= d["total"]
        assert positive(d[side]["median_tokens_per_task"]) and positive(d[side]["median_wall_s_per_task"])
    assert d["agent"]["veto_events_by_rule"] >= 0 and d["one_shot"]["passed_but_vetoed_by_guard"] >= 0
    assert all(t["agent"]["status"] != "error" for t in d["tasks"]), [t["agent"] for t in d["tasks"]]
    assert all("canonical" not in json.dumps(t) for t in d["tasks"])


def test_speculative():
    d = run_quick("speculative")
    assert d["prompts"] == 2 and d["flags"] == ["--spec-type", "ngram-simple"]
    for side in ("A_plain", "B_ngram"):
        assert positive(d["medians"][side]["decode_tok_s"]) and positive(d["medians"][side]["wall_s"])
    assert 0 <= d["draft_accepted"] <= d["draft_tokens"]
    assert 0 <= d["answers_that_differ"] <= d["prompts"]


def test_concurrency():
    d = run_quick("concurrency")
    assert d["relative_to_n1"]["1"]["tokens_per_s"] == 1.0
    for n in d["slots"]:
        r = d["relative_to_n1"][str(n)]
        assert positive(r["tokens_per_s"]) and positive(r["tasks_per_min"])
    assert all(s != "error" for run in d["per_run"] for b in run.values() for s in b["statuses"])


def test_bandwidth():
    d = run_quick("bandwidth")
    assert positive(d["bandwidth_gb_s"]["one_process"]) and positive(d["bandwidth_gb_s"]["all_cores"])
    assert d["bytes_read_per_token"] > d["gguf_bytes"] > 0
    assert positive(d["decode_limit_tokens_per_s"]) and positive(d["achieved_tokens_per_s"])
    assert positive(d["achieved_over_limit"])


def test_report_renders_every_result_from_the_json(tmp_path):
    record = {"benchmark": "kvcache", "command": "kvcache.py --runs 3", "date": "2026-01-01",
              "machine": {"cpu": "Test CPU", "cores": 2, "ram_gib": 8.0, "gpu": None},
              "headline": [{"figure": "reuse | fraction", "value": 0.97, "unit": ""}]}
    (tmp_path / "kvcache.json").write_text(json.dumps(record))
    (tmp_path / "kvcache.quick.json").write_text(json.dumps({**record, "headline": [{"figure": "q", "value": 1, "unit": ""}]}))
    out = subprocess.run([sys.executable, str(BENCH / "report.py"), "--results", str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "| figure | value | command | machine | date |"
    assert out[2] == ("| reuse \\| fraction | 0.97 | `python bench/kvcache.py --runs 3` | "
                      "Test CPU, 2 cores, 8.0 GiB, no GPU | 2026-01-01 |")
    assert len(out) == 3  # the quick result stays out of the published table

    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nbefore\n<!-- bench:start -->\nold table\n<!-- bench:end -->\nafter\n")
    subprocess.run([sys.executable, str(BENCH / "report.py"), "--results", str(tmp_path), "--readme", str(readme)],
                   capture_output=True, text=True, check=True)
    assert readme.read_text() == ("# x\n\nbefore\n<!-- bench:start -->\n" + "\n".join(out)
                                  + "\n<!-- bench:end -->\nafter\n")
    readme.write_text("no markers\n")
    bad = subprocess.run([sys.executable, str(BENCH / "report.py"), "--results", str(tmp_path), "--readme", str(readme)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "bench:start" in bad.stderr and readme.read_text() == "no markers\n"


def test_compute_buffer():
    """The shipped llama-server's compute buffer grows by exactly the mask the
    planner assumes under flash attention, and its fixed part stays under the
    planner's bound."""
    d = run_quick("compute_buffer")
    per_token = d["bytes_per_context_token"]
    assert per_token["on"] == d["planner_mask_bytes_per_token"]
    assert per_token["off"] > 4 * per_token["on"]
    assert 0 < d["fixed_mib_flash_attn"] <= d["planner_fixed_bound_mib"]
def test_lsp_queue_latency():
    started = time.time()
    proc = subprocess.run([sys.executable, str(BENCH / "lsp_latency.py"), "--queue", "6", "--quick"], cwd=BENCH,
                          capture_output=True, text=True, timeout=840)
    assert proc.returncode == 0, proc.stderr[-3000:]
    path = RESULTS / "lsp_queue_latency.quick.json"
    assert path.stat().st_mtime >= started - 1
    d = json.loads(path.read_text())
    assert d["tasks"] == 6 and d["finished"] == 6 and d["worktrees_left"] == 0
    assert d["peak_queued"] >= 1  # more fixes than the concurrency of 2 did wait
    assert all(positive(d["queue_running"][k]["p99_ms"]) for k in ("codeAction", "hover"))


def test_soak():
    d = run_quick("soak")
    assert d["tasks"] == 15 and sum(d["statuses"].values()) == 15
    assert d["worktrees_left"] == 0 and d["shadow_dirs_left"] == 0 and d["child_processes_at_end"] == 0
    assert d["exit_code"] == 0 and isinstance(d["rss_growth_kib"], int)


def test_chaos():
    d = run_quick("chaos")
    assert d["runs"] == d["faults_injected"] >= 10
    assert (d["tasks_lost"], d["files_corrupted"], d["processes_left"], d["worktrees_left"]) == (0, 0, 0, 0), d["per_run"]
    assert d["behaved_as_specified"] == d["runs"], [r for r in d["per_run"] if not r["ok"]]
