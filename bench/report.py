"""A Markdown table of every published figure in ``bench/results/*.json``:
figure, value, the command that produced it, the machine and the date.

Every value is read from the JSON files, so the README never carries a
figure typed by hand.  Quick (CI) results are left out unless ``--quick``.

    python bench/report.py [--quick] [--results DIR] [--readme README.md]

``--readme`` replaces the text between ``<!-- bench:start -->`` and
``<!-- bench:end -->`` in that file with the table, and nothing else.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
ORDER = ("bandwidth", "overhead", "kvcache", "lsp_latency", "repomap", "fixrate", "speculative", "concurrency",
         "guard_precision")


def rows_of(record: dict) -> list[tuple[str, str]]:
    """(figure, value) pairs: the script's own ``headline`` list, or, for a
    script that predates it, the figures it is known to publish."""
    if record.get("headline"):
        return [(h["figure"], f"{h['value']}{(' ' + h['unit']) if h.get('unit') else ''}") for h in record["headline"]]
    if record.get("benchmark") == "overhead":
        m = record["medians"]
        return [("decode tokens/s through ornith-lsp's client / bare request", f"{record['ratio_tokens_per_second_A_over_B']}"),
                ("time to first token, client / bare", f"{record['ratio_ttft_A_over_B']}"),
                ("decode tokens/s, bare request", f"{m['B_bare']['tokens_per_second']:.1f} tok/s")]
    return [(record.get("benchmark", "?"), "(no headline figures)")]


def machine_of(record: dict) -> str:
    m = record.get("machine") or {}
    gpu = m.get("gpu") or "no GPU"
    return f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('ram_gib', '?')} GiB, {gpu}"


def load(results: Path, quick: bool) -> list[dict]:
    records = []
    for path in sorted(results.glob("*.json")):
        if path.name.endswith(".quick.json") != quick:
            continue
        try:
            records.append(json.loads(path.read_text()))
        except ValueError:
            continue
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(records, key=lambda r: (rank.get(r.get("benchmark"), len(ORDER)), r.get("benchmark", "")))


def render(records: list[dict]) -> str:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| figure | value | command | machine | date |", "|---|---|---|---|---|"]
    for record in records:
        command = f"`python bench/{record.get('command', '?')}`"
        if record.get("complete") is False:
            command += " (partial run)"
        for figure, value in rows_of(record):
            lines.append(f"| {cell(figure)} | {cell(value)} | {command} | {cell(machine_of(record))} | {record.get('date', '?')} |")
    return "\n".join(lines)


def replace_between_markers(text: str, table: str) -> str:
    """``text`` with the table between the markers; ValueError when they are missing or out of order."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the file needs {START} followed by {END}")
    return text[: start + len(START)] + "\n" + table + "\n" + text[end:]


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the quick (CI) results instead of the published ones")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--readme", type=Path, help="write the table between the bench markers of this file")
    a = p.parse_args()
    table = render(load(a.results, a.quick))
    if a.readme:
        try:
            a.readme.write_text(replace_between_markers(a.readme.read_text(), table))
        except (OSError, ValueError) as exc:
            p.error(f"{a.readme}: {exc}")
    print(table)
