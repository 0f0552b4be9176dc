"""The judge: a frozen model asked only for a veto and a reason.

Frozen means reproducible: temperature 0, a prompt versioned in the
repository (``judge_prompt.md``, first line ``version: ...``), and an answer
constrained to ``{veto, reason}``.  The judge only ever *adds* a block; it
cannot clear a finding of the deterministic layers.  When it cannot be reached
or answers outside its schema, :class:`JudgeUnavailable` tells the caller to
fall back to the deterministic layers and say so.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from ornith_lsp.guard.task import GuardTask
from ornith_lsp.guard.verdict import Finding
from ornith_lsp.llm.client import ChatClient, LLMError
from ornith_lsp.settings import Settings

PROMPT_PATH = Path(__file__).with_name("judge_prompt.md")
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"veto": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["veto", "reason"],
    "additionalProperties": False,
}
MAX_DIFF_CHARS = 24_000


class JudgeUnavailable(Exception):
    """The judge gave no usable answer; the message says why, for the verdict's notes."""


@lru_cache(maxsize=1)
def load_prompt() -> tuple[str, str]:
    """(version, prompt body).  A prompt without its version line is refused: an
    unversioned judge could drift without anyone noticing."""
    text = PROMPT_PATH.read_text(encoding="utf-8")
    first, _, body = text.partition("\n")
    m = re.match(r"^version:\s*(\S+)\s*$", first)
    if not m:
        raise RuntimeError(f"{PROMPT_PATH} must start with a 'version: ...' line")
    return m.group(1), body.strip()


class Judge:
    def __init__(
        self,
        client_factory: Callable[[], ChatClient],
        *,
        owns_client: bool = True,
        max_diff_chars: int = MAX_DIFF_CHARS,
        max_tokens: int = 400,
    ) -> None:
        self._factory = client_factory
        self._owns = owns_client
        self.max_diff_chars = max_diff_chars
        self.max_tokens = max_tokens
        self.version, self._prompt = load_prompt()

    def messages(self, task: GuardTask | None, diff: str, findings: Iterable[Finding]) -> list[dict]:
        findings = list(findings)
        shown = "\n".join(
            f"- [{f.layer}/{f.monitor}] {f.where() or '-'}: {f.evidence}" for f in findings
        ) or "- none"
        if len(diff) > self.max_diff_chars:
            diff = diff[: self.max_diff_chars] + f"\n[... {len(diff) - self.max_diff_chars} more characters not shown]"
        task_text = json.dumps(task.model_dump(exclude_none=True), indent=1, sort_keys=True) if task else "(no task given: judge the diff on its own)"
        user = f"Task:\n{task_text}\n\nMonitor findings and concerns:\n{shown}\n\nDiff:\n```diff\n{diff}\n```"
        return [{"role": "system", "content": self._prompt}, {"role": "user", "content": user}]

    async def review(self, task: GuardTask | None, diff: str, findings: Iterable[Finding]) -> tuple[bool, str]:
        try:
            client = self._factory()
        except Exception as exc:  # e.g. the shared backend is not running: a fallback, not a crash
            raise JudgeUnavailable(f"the judge could not be reached ({exc})") from None
        try:
            completion = await client.complete(
                self.messages(task, diff, findings), json_schema=SCHEMA, temperature=0, max_tokens=self.max_tokens,
            )
        except LLMError as exc:
            raise JudgeUnavailable(f"the judge is unavailable ({exc})") from None
        finally:
            if self._owns:
                await client.aclose()
        return parse_answer(completion.text)


def parse_answer(text: str) -> tuple[bool, str]:
    """Read ``{veto, reason}``; tolerate a code fence around it, nothing else."""
    raw = text.strip()
    fenced = re.match(r"^```(?:json)?\s*(.*?)\s*```$", raw, re.S)
    if fenced:
        raw = fenced.group(1)
    try:
        data = json.loads(raw)
    except ValueError:
        raise JudgeUnavailable(f"the judge answered outside its JSON schema: {text[:200]!r}") from None
    if not isinstance(data, dict) or not isinstance(data.get("veto"), bool) or not isinstance(data.get("reason"), str):
        raise JudgeUnavailable(f"the judge's answer lacks a boolean 'veto' and a string 'reason': {text[:200]!r}")
    reason = " ".join(data["reason"].split())[:600] or ("vetoed without a reason" if data["veto"] else "no veto")
    return data["veto"], reason


def judge_for(settings: Settings, *, endpoint: str | None = None, model: str | None = None,
              fallback: Callable[[], ChatClient] | None = None) -> Judge | None:
    """The one way a judge is built: on its own endpoint (``endpoint``, else
    ``guard.judge_endpoint``) when there is one, else on ``fallback`` -- the
    fixing model's client -- when given; None when neither exists.  Whether a
    judge is wanted at all (``guard.judge``) is the caller's to decide."""
    g = settings.guard
    endpoint = endpoint or g.judge_endpoint
    if endpoint:
        key = os.environ.get(g.judge_api_key_env) or None if g.judge_api_key_env else None
        name = model or g.judge_model or "judge"
        c = settings.client
        return Judge(lambda: ChatClient(endpoint, name, api_key=key, connect_timeout=c.connect_timeout_s,
                                        read_timeout=c.read_timeout_s, max_retries=min(c.max_retries, 1)))
    return Judge(fallback) if fallback is not None else None
