"""A map of the repository for the model's prompt: the definitions that matter
most to the task, as signature lines, within a token budget.

As in aider's repomap: files are nodes, and a file that refers to a name
another file defines has an edge to it.  PageRank over that graph,
personalised toward the focus files and the files defining identifiers the
task mentions, says which files matter; each file's rank then flows along its
edges to the definitions it uses, which orders the definitions.  The focus
files' own definitions come first whatever their rank: the agent is editing
them.  The longest prefix of that order whose rendering fits the budget wins.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

from .parse import SCOPES, FileTags, Index, Symbol

GENERIC_DEFINERS = 50
"""A name defined in more files than this (``__init__``, ``get``) says nothing
about which file is meant, and would add edges by the thousand: ignored."""


def estimate_tokens(text: str) -> int:
    """Four characters a token: the fallback when no tokenizer is at hand.
    Close for English and code with BPE vocabularies; pass the backend's
    tokenizer (llama-server's ``/tokenize``) to ``repo_map`` to be exact."""
    return math.ceil(len(text) / 4)


def pagerank(
    edges: Mapping[tuple[str, str], float],
    personalization: Mapping[str, float],
    *,
    damping: float = 0.85,
    tolerance: float = 1e-9,
    max_iterations: int = 100,
) -> dict[str, float]:
    """Power iteration; rank of dangling nodes returns to the personalization,
    as in networkx, so a file that uses nothing does not leak rank away."""
    nodes = sorted({n for edge in edges for n in edge} | set(personalization))
    if not nodes:
        return {}
    total = sum(personalization.values())
    restart = {n: personalization.get(n, 0.0) / total if total else 1 / len(nodes) for n in nodes}
    out: dict[str, float] = defaultdict(float)
    for (source, _), weight in edges.items():
        out[source] += weight
    flows = [(source, target, damping * weight / out[source]) for (source, target), weight in edges.items()]
    sinks = [n for n in nodes if not out[n]]
    rank = dict.fromkeys(nodes, 1 / len(nodes))
    for _ in range(max_iterations):
        dangling = sum(rank[n] for n in sinks)
        new = {n: (1 - damping + damping * dangling) * restart[n] for n in nodes}
        for source, target, share in flows:
            new[target] += rank[source] * share
        done = sum(abs(new[n] - rank[n]) for n in nodes) < tolerance * len(nodes)
        rank = new
        if done:
            break
    return rank


def name_weight(name: str, definers: int, mentioned: set[str]) -> float:
    """aider's heuristics: a mentioned or long, descriptive name is a strong
    link; a private or widely defined one a weak link."""
    weight = 10.0 if name in mentioned else 1.0
    if len(name) >= 8 and re.fullmatch(r"[a-z0-9_]+|[A-Za-z0-9]+", name) and ("_" in name or not name.islower()):
        weight *= 10
    if name.startswith("_"):
        weight *= 0.1
    if definers > 5:
        weight *= 0.1
    return weight


def reference_edges(files: Iterable[FileTags], focus: set[str], mentioned: set[str]) -> dict[tuple[str, str, str], float]:
    """``(referrer, definer, name) -> weight``; uses from a focus file weigh 50
    times more, so what the edited code calls ranks high.  Each file also uses
    its own definitions, faintly, so an unreferenced definition still ranks by
    its file -- a mentioned helper nobody calls yet is often the point."""
    files = list(files)
    definers: dict[str, set[str]] = defaultdict(set)
    for tags in files:
        for symbol in tags.definitions:
            definers[symbol.name].add(tags.path)
    edges: dict[tuple[str, str, str], float] = defaultdict(float)
    for tags in files:
        for name in {symbol.name for symbol in tags.definitions}:
            edges[(tags.path, tags.path, name)] += 0.1 * name_weight(name, len(definers[name]), mentioned)
        uses = Counter(r.name for r in tags.references if 0 < len(definers.get(r.name, ())) <= GENERIC_DEFINERS)
        for name, count in uses.items():
            weight = name_weight(name, len(definers[name]), mentioned) * math.sqrt(count)
            weight *= 50 if tags.path in focus else 1
            for definer in definers[name]:
                edges[(tags.path, definer, name)] += weight
    return edges


def rank_definitions(files: Mapping[str, FileTags], focus: Sequence[str], mentioned: set[str]) -> list[Symbol]:
    edges = reference_edges(files.values(), set(focus), mentioned)
    file_edges: dict[tuple[str, str], float] = defaultdict(float)
    for (source, target, _), weight in edges.items():
        file_edges[(source, target)] += weight
    wanted = {p for p in focus if p in files}
    wanted |= {s.path for tags in files.values() for s in tags.definitions if s.name in mentioned}
    wanted |= {p for p in files if any(part in mentioned for part in re.split(r"[/.]", p))}
    file_rank = pagerank(file_edges, dict.fromkeys(wanted or files, 1.0))

    out: dict[str, float] = defaultdict(float)
    for (source, _), weight in file_edges.items():
        out[source] += weight
    score: dict[tuple[str, str], float] = defaultdict(float)
    for (source, target, name), weight in edges.items():
        score[(target, name)] += file_rank[source] * weight / out[source]

    first = [s for path in dict.fromkeys(focus) if path in files for s in files[path].definitions]
    rest = [s for path, tags in files.items() if path not in focus for s in tags.definitions]
    rest.sort(key=lambda s: (-score[(s.path, s.name)], -file_rank.get(s.path, 0.0), s.path, s.line))
    return first + rest


def render(files: Mapping[str, FileTags], entries: Sequence[Symbol]) -> str:
    """aider's layout: the path, then each definition's header lines prefixed
    with ``│``, and ``⋮`` wherever lines are left out.  A method is shown
    inside its class header so it is never read as a top-level function."""
    chosen: dict[str, set[Symbol]] = {}
    for symbol in entries:
        chosen.setdefault(symbol.path, set()).add(symbol)
    chunks = []
    for path, symbols in chosen.items():
        tags = files[path]
        parents = {d for d in tags.definitions if d.kind in SCOPES for s in symbols if d.line < s.line <= d.end_line}
        lines, next_line = [f"{path}:"], 1
        for symbol in sorted(symbols | parents, key=lambda s: s.line):
            if symbol.line > next_line:
                lines.append("⋮")
            header = symbol.signature.split("\n")
            lines += [f"│{line}" for line in header]
            next_line = max(next_line, symbol.line + len(header))
        if next_line <= tags.lines:
            lines.append("⋮")
        chunks.append("\n".join(lines))
    return "\n".join(chunks) + "\n" if chunks else ""


def repo_map(
    index: Index,
    *,
    focus_paths: list[str],
    mentioned: set[str],
    token_budget: int,
    count_tokens: Callable[[str], int] = estimate_tokens,
) -> str:
    """The map of ``index`` as it stands (``refresh()`` it first) in at most
    ``token_budget`` tokens, as measured by ``count_tokens``.

    The cut is a binary search on the number of entries, so a remote tokenizer
    is called about log2(budget) times.  Every entry adds at least a line and
    so at least a token, which bounds the search by the budget itself.
    """
    focus = [rel for p in focus_paths if (rel := index.relative(p)) is not None]
    ranked = rank_definitions(index.files, focus, mentioned)
    low, high = 0, min(len(ranked), max(token_budget, 0))
    while low < high:
        middle = (low + high + 1) // 2
        if count_tokens(render(index.files, ranked[:middle])) <= token_budget:
            low = middle
        else:
            high = middle - 1
    return render(index.files, ranked[:low])
