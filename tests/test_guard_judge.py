"""The judge layer, exercised through a scripted policy server.

``ScriptedPolicyServer`` is a TEST DOUBLE: a tiny local HTTP server speaking
the OpenAI chat-completions API that returns a fixed ``{veto, reason}``
answer and records what it was sent.  No model is involved; what is tested
is the guard's side of the contract (frozen request, schema, veto handling,
fallback when the judge is down)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from guard_corpus import corpus
from ornith_lsp import procs
from ornith_lsp.guard.check import check_diff
from ornith_lsp.guard.judge import Judge, JudgeUnavailable, load_prompt, parse_answer
from ornith_lsp.llm.client import ChatClient

PROGRAMS, CASES = corpus.load_cases()
BY_ID = {c.id: c for c in CASES}


class ScriptedPolicyServer:
    """Test double for a judge endpoint: answers every chat completion with ``content``."""

    def __init__(self, content: str) -> None:
        self.content = content
        self.requests: list[dict] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                double.requests.append(body)
                payload = json.dumps({
                    "choices": [{"message": {"role": "assistant", "content": double.content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> ScriptedPolicyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def judge_for(url: str) -> Judge:
    return Judge(lambda: ChatClient(url, "frozen-judge", max_retries=0, connect_timeout=1.0, read_timeout=10.0))


@pytest.fixture(scope="module")
def gcd_repo(tmp_path_factory) -> Path:
    return corpus.build_repo(tmp_path_factory.mktemp("judge") / "gcd", corpus.load_bundle("gcd"))


@pytest.fixture(scope="module")
def honest_diff(gcd_repo) -> str:
    return corpus.make_diff(gcd_repo, BY_ID["H-gcd-fix-like-the-reference"].edits)


def test_the_prompt_is_versioned_in_the_repository():
    version, body = load_prompt()
    assert version.startswith("guard-judge/")
    assert "veto" in body and "version:" not in body


def test_a_veto_blocks_and_is_shown_with_its_reason(gcd_repo, honest_diff):
    answer = json.dumps({"veto": True, "reason": "The fix special-cases negative inputs seen in the tests."})
    with ScriptedPolicyServer(answer) as double:
        verdict = check_diff(gcd_repo, honest_diff, None, judge=judge_for(double.url), judge_mode="on")
    assert not verdict.allowed
    [finding] = verdict.findings
    assert (finding.layer, finding.monitor) == ("judge", "judge-veto")
    assert "special-cases negative inputs" in finding.evidence
    assert "special-cases negative inputs" in verdict.for_model()
    [request] = double.requests
    assert request["temperature"] == 0
    schema = request["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["veto", "reason"] and schema["properties"]["veto"]["type"] == "boolean"
    system, user = request["messages"]
    assert system["content"] == load_prompt()[1]
    assert "abs(a)" in user["content"], "the judge is given the diff"


def test_no_veto_allows_and_notes_the_judges_word(gcd_repo, honest_diff):
    with ScriptedPolicyServer(json.dumps({"veto": False, "reason": "A general fix."})) as double:
        verdict = check_diff(gcd_repo, honest_diff, None, judge=judge_for(double.url), judge_mode="on")
    assert verdict.allowed
    assert any("no veto: A general fix." in n for n in verdict.notes)


def test_unsure_mode_asks_only_when_the_monitors_are_unsure(gcd_repo, honest_diff):
    weak = corpus.make_diff(gcd_repo, BY_ID["H-gcd-base-case-and-comment"].edits)
    with ScriptedPolicyServer(json.dumps({"veto": True, "reason": "Shaped around a case."})) as double:
        quiet = check_diff(gcd_repo, honest_diff, None, judge=judge_for(double.url), judge_mode="unsure")
        assert quiet.allowed and not double.requests
        unsure = check_diff(gcd_repo, weak, None, judge=judge_for(double.url), judge_mode="unsure")
        assert not unsure.allowed and len(double.requests) == 1
        assert "special case" in double.requests[0]["messages"][1]["content"], "the judge sees the concerns"


def test_a_deterministic_block_does_not_wait_for_the_judge(gcd_repo):
    cheat = corpus.make_diff(gcd_repo, BY_ID["B18-lookup-dict"].edits)
    with ScriptedPolicyServer(json.dumps({"veto": False, "reason": "fine"})) as double:
        verdict = check_diff(gcd_repo, cheat, None, judge=judge_for(double.url), judge_mode="on")
    assert not verdict.allowed and not double.requests
    assert [f.monitor for f in verdict.findings] == ["lookup-table"]


def test_a_judge_that_is_down_falls_back_to_the_deterministic_layers(gcd_repo, honest_diff):
    dead = f"http://127.0.0.1:{procs.free_port()}/v1"
    verdict = check_diff(gcd_repo, honest_diff, None, judge=judge_for(dead), judge_mode="on")
    assert verdict.allowed
    assert any("judge is unavailable" in n and "falling back to the deterministic layers" in n for n in verdict.notes)
    cheat = corpus.make_diff(gcd_repo, BY_ID["B17-always-equal-lambda"].edits)
    assert not check_diff(gcd_repo, cheat, None, judge=judge_for(dead), judge_mode="unsure").allowed


def test_an_answer_outside_the_schema_is_a_fallback_not_a_verdict(gcd_repo, honest_diff):
    with ScriptedPolicyServer("I think it is fine.") as double:
        verdict = check_diff(gcd_repo, honest_diff, None, judge=judge_for(double.url), judge_mode="on")
    assert verdict.allowed and any("outside its JSON schema" in n for n in verdict.notes)


@pytest.mark.parametrize("text, expected", [
    ('{"veto": true, "reason": "no"}', (True, "no")),
    ('```json\n{"veto": false, "reason": "ok"}\n```', (False, "ok")),
])
def test_parse_answer(text, expected):
    assert parse_answer(text) == expected


@pytest.mark.parametrize("text", ['{"veto": "yes", "reason": "x"}', '{"reason": "x"}', "[]", "veto"])
def test_parse_answer_refuses_other_shapes(text):
    with pytest.raises(JudgeUnavailable):
        parse_answer(text)
