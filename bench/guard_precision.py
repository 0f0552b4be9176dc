"""The guard's precision on its own corpus, both sides: how many cheats it
blocks and how many honest changes it allows, every case through every layer
(boundary, monitors, the linter recheck of suppressions, collection and
grading on pristine tests in a fresh process), exactly as ``guard check``
runs them.  Also the 164 canonical HumanEvalFix fixes through the
deterministic layers (allowed / 164).

The corpus is ``tests/guard_corpus`` (programs + ``cases.toml``); each case
becomes a real git repository and a real ``git diff``.  A cheat counts as
blocked when the verdict blocks it; the JSON also says whether the monitor
named for it was among the findings.  An honest case counts as allowed when
the verdict allows it (for a test task, only after its tests ran and passed).

    python bench/guard_precision.py [--quick] [--parallel 2]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1] / "tests"))
sys.path.insert(0, str(HERE.parents[1] / "server"))


async def run_corpus(parallel: int, limit: int | None) -> dict:
    from guard_corpus import corpus
    from ornith_lsp.guard.check import acheck_diff

    programs, cases = corpus.load_cases()
    if limit:
        cases = [c for c in cases if c.expect == "allowed"][:limit] + [c for c in cases if c.expect == "blocked"][:limit]
    gate = asyncio.Semaphore(parallel)
    with tempfile.TemporaryDirectory(prefix="ornith-bench-guard-") as tmp:
        repos = {name: corpus.build_repo(Path(tmp) / name, corpus.load_bundle(name)) for name in programs}
        diffs = {c.id: corpus.make_diff(repos[c.program], c.edits) for c in cases}

        async def one(case):
            async with gate:
                started = time.monotonic()
                verdict = await acheck_diff(repos[case.program], diffs[case.id], case.task,
                                            allow_new_tests=case.allow_new_tests, timeout_s=120)
                return case, verdict, time.monotonic() - started

        results = await asyncio.gather(*(one(c) for c in cases))
    rows = []
    for case, verdict, seconds in results:
        named = {f.monitor for f in verdict.findings}
        rows.append({
            "id": case.id, "expect": case.expect, "allowed": verdict.allowed,
            "correct": verdict.allowed == (case.expect == "allowed"),
            "by_named_monitor": set(case.monitors) <= named if case.expect == "blocked" else None,
            "findings": sorted(named), "seconds": round(seconds, 2),
        })
    cheats = [r for r in rows if r["expect"] == "blocked"]
    honest = [r for r in rows if r["expect"] == "allowed"]
    return {
        "cheats": len(cheats), "cheats_blocked": sum(not r["allowed"] for r in cheats),
        "cheats_blocked_by_named_monitor": sum(bool(r["by_named_monitor"]) for r in cheats),
        "honest": len(honest), "honest_allowed": sum(r["allowed"] for r in honest),
        "wrong": [r["id"] for r in rows if not r["correct"]],
        "cases": rows,
    }


def humanevalfix() -> dict:
    from ornith_lsp.guard.boundary import Boundary
    from ornith_lsp.guard.check import review_diff
    from test_guard_humanevalfix import DATA, TASK, load_rows, project

    from guard_corpus import corpus

    if not DATA.is_file():
        return {"error": f"{DATA} not found"}
    allowed = concerned = 0
    rows = load_rows()
    for row in rows:
        files, fixed = project(row)
        review = review_diff(corpus.unified("solution.py", files["solution.py"], fixed), boundary=Boundary(root=None),
                             read_base=files.get, list_base=lambda files=files: list(files), task=TASK)
        allowed += not review.findings
        concerned += bool(review.concerns)
    return {"tasks": len(rows), "allowed": allowed, "with_concerns": concerned}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the first 4 cases of each side only (CI)")
    parser.add_argument("--parallel", type=int, default=2, help="cases checked at once (each grading is a pytest process)")
    args = parser.parse_args()
    started = time.monotonic()
    result = asyncio.run(run_corpus(max(1, args.parallel), 4 if args.quick else None))
    hef = humanevalfix()
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_common", HERE.parent / "common.py")
    common = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(common)  # type: ignore[union-attr]
    headline, write = common.headline, common.write

    out = {
        **result,
        "humanevalfix": hef,
        "wall_s": round(time.monotonic() - started, 1),
        "headline": [
            headline("guard corpus: cheats blocked", f"{result['cheats_blocked']}/{result['cheats']}"),
            headline("guard corpus: honest changes allowed", f"{result['honest_allowed']}/{result['honest']}"),
            headline("HumanEvalFix canonical fixes allowed by the guard", f"{hef.get('allowed')}/{hef.get('tasks')}"),
        ],
    }
    path = write("guard_precision", out, args.quick)
    print(f"cheats blocked {result['cheats_blocked']}/{result['cheats']} "
          f"(by the named monitor {result['cheats_blocked_by_named_monitor']}), "
          f"honest allowed {result['honest_allowed']}/{result['honest']}, "
          f"HumanEvalFix {hef.get('allowed')}/{hef.get('tasks')}; wrong: {result['wrong'] or 'none'} -> {path}")
    return 0 if not result["wrong"] else 1


if __name__ == "__main__":
    sys.exit(main())
