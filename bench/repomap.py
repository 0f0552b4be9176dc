"""Time and peak memory to build a repository map of the running interpreter's
standard library, cold and after one file changes: ornith-lsp's
``context.Index`` + ``repo_map`` side by side with aider's ``RepoMap``.

The stdlib's Python sources (``sysconfig.get_paths()['stdlib']`` without
``site-packages``) are copied to a temporary directory first, so nothing
real is touched.  Each measurement runs in a fresh subprocess, which reports
its own wall times and peak resident memory (``VmHWM``, including the
interpreter and imports; ``above_imports`` subtracts the peak reached after
the imports).  Both tools get the same files, the same token budget and the
same token counter (four characters a token), no focus files and no
mentioned identifiers.  Cold: a new process, no cache on disk.  After one
change: one function appended to one file, then the map rebuilt in the same
process (ours: ``Index.refresh()``, which re-parses changed files only;
aider: ``get_repo_map(force_refresh=True)``, which re-reads tags of files
whose mtime changed from its disk cache).

aider runs from its own virtualenv (``/tmp/aider-venv``, created with
``pip install aider-chat`` by the full run when missing); when it cannot be
installed or run, the result says why.

    python bench/repomap.py [--runs 3] [--budget 1024] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
AIDER_VENV = Path(os.environ.get("ORNITH_BENCH_AIDER_VENV", "/tmp/aider-venv"))
CHANGED = "json/decoder.py"  # present in the full tree and in the quick one
QUICK_PACKAGES = ("json", "email")
SKIP = {"site-packages", "__pycache__"}


# -- the child: one measurement in a fresh process --------------------------------------
def _rss_kib() -> int:
    """Peak resident memory of this process image.  ``VmHWM``, not ``ru_maxrss``:
    Linux carries ``ru_maxrss`` over ``exec`` from the forking parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _append_function(path: Path) -> str:
    original = path.read_text(encoding="utf-8")
    path.write_text(original + "\n\ndef _bench_added_function(value):\n    return value\n", encoding="utf-8")
    later = time.time() + 5
    os.utime(path, (later, later))  # a different mtime even on coarse clocks
    return original


def child_ours(root: Path, files: list[str], budget: int) -> dict:
    from ornith_lsp.context import Index, repo_map

    after_imports = _rss_kib()
    t0 = time.perf_counter()
    index = Index(root).refresh()
    cold_map = repo_map(index, focus_paths=[], mentioned=set(), token_budget=budget)
    cold = time.perf_counter() - t0
    cold_rss = _rss_kib()
    parses = index.parses
    original = _append_function(root / CHANGED)
    try:
        t1 = time.perf_counter()
        index.refresh()
        new_map = repo_map(index, focus_paths=[], mentioned=set(), token_budget=budget)
        update = time.perf_counter() - t1
    finally:
        (root / CHANGED).write_text(original, encoding="utf-8")
    return {"cold_s": cold, "update_s": update, "files_indexed": len(index.files), "skipped": len(index.skipped),
            "parses_cold": parses, "parses_update": index.parses - parses,
            "map_chars": len(cold_map), "map_chars_after_change": len(new_map),
            "peak_rss_after_imports_kib": after_imports, "peak_rss_cold_kib": cold_rss, "peak_rss_kib": _rss_kib()}


def child_aider(root: Path, files: list[str], budget: int) -> dict:
    from aider.repomap import RepoMap

    class Model:
        def token_count(self, text: str) -> int:
            return math.ceil(len(text) / 4)

    class IO:
        def read_text(self, fname: str):
            try:
                return Path(fname).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                return None

        def tool_output(self, *args, **kwargs) -> None: ...
        tool_warning = tool_error = tool_output

    after_imports = _rss_kib()
    paths = [str(root / f) for f in files]
    t0 = time.perf_counter()
    rm = RepoMap(map_tokens=budget, root=str(root), main_model=Model(), io=IO(), refresh="auto")
    cold_map = rm.get_repo_map([], paths) or ""
    cold = time.perf_counter() - t0
    cold_rss = _rss_kib()
    original = _append_function(root / CHANGED)
    try:
        t1 = time.perf_counter()
        new_map = rm.get_repo_map([], paths, force_refresh=True) or ""
        update = time.perf_counter() - t1
    finally:
        (root / CHANGED).write_text(original, encoding="utf-8")
    return {"cold_s": cold, "update_s": update, "files_given": len(paths),
            "map_chars": len(cold_map), "map_chars_after_change": len(new_map),
            "peak_rss_after_imports_kib": after_imports, "peak_rss_cold_kib": cold_rss, "peak_rss_kib": _rss_kib()}


# -- the parent ---------------------------------------------------------------------------
def copy_tree(dest: Path, quick: bool) -> tuple[Path, list[str]]:
    """The stdlib's Python sources (or, quick, two of its packages) under ``dest``."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files: list[str] = []
    sources = [stdlib / p for p in QUICK_PACKAGES] if quick else [stdlib]
    for source in sources:
        for dirpath, dirnames, filenames in os.walk(source):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP)
            for name in sorted(filenames):
                if name.endswith((".py", ".pyi")):
                    src = Path(dirpath) / name
                    rel = src.relative_to(stdlib)
                    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dest / rel)
                    files.append(rel.as_posix())
    return dest, files


def ensure_aider(install: bool) -> tuple[str | None, str]:
    """The aider venv's python, or None and why not."""
    python = AIDER_VENV / "bin" / "python"
    if not python.is_file() and install:
        try:
            subprocess.run([sys.executable, "-m", "venv", str(AIDER_VENV)], check=True, capture_output=True, timeout=300)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "aider-chat"], check=True,
                           capture_output=True, text=True, timeout=1800)
        except subprocess.CalledProcessError as exc:
            return None, f"`pip install aider-chat` failed: {(exc.stderr or '').strip().splitlines()[-1:]}"
        except subprocess.TimeoutExpired:
            return None, "`pip install aider-chat` did not finish in 30 min"
    if not python.is_file():
        return None, f"{python} does not exist (quick mode never installs it: run the full mode or " \
                     f"`python -m venv {AIDER_VENV} && {AIDER_VENV}/bin/pip install aider-chat`)"
    probe = subprocess.run([str(python), "-c", "import aider, aider.repomap; print(aider.__version__)"],
                           capture_output=True, text=True, timeout=300)
    if probe.returncode:
        return None, f"aider does not import: {probe.stderr.strip().splitlines()[-1:]}"
    return str(python), probe.stdout.strip()


def measure(python: str, tool: str, root: Path, files_list: Path, budget: int) -> dict:
    # stdout carries only the JSON line; aider's spinner and warnings go to stderr
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": ""}
    proc = subprocess.run([python, str(HERE), "--child", tool, "--root", str(root), "--files", str(files_list),
                           "--budget", str(budget)], capture_output=True, text=True, timeout=3600, env=env,
                          cwd=str(root))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{tool} child failed (exit {proc.returncode}): {proc.stderr.strip()[-600:]}")
    return json.loads(lines[-1])


def summary(runs: list[dict]) -> dict:
    from common import median

    keys = ("cold_s", "update_s", "peak_rss_kib", "peak_rss_after_imports_kib")
    med = {k: median([r[k] for r in runs]) for k in keys}
    med["peak_mib"] = round(med["peak_rss_kib"] / 1024, 1)
    med["above_imports_mib"] = round((med["peak_rss_kib"] - med["peak_rss_after_imports_kib"]) / 1024, 1)
    return med


def main(runs: int, budget: int, quick: bool) -> dict:
    from common import headline, ratio

    aider_python, aider_info = ensure_aider(install=not quick)
    result: dict = {"tree": "stdlib json + email packages" if quick else "stdlib", "token_budget": budget,
                    "stdlib": sysconfig.get_paths()["stdlib"], "changed_file": CHANGED, "runs": runs}
    with tempfile.TemporaryDirectory(prefix="ornith-repomap-") as tmp:
        root, files = copy_tree(Path(tmp) / "stdlib", quick)
        files_list = Path(tmp) / "files.txt"
        files_list.write_text("\n".join(files))
        result["files"] = len(files)
        result["bytes"] = sum((root / f).stat().st_size for f in files)
        per_tool: dict[str, list[dict]] = {"ornith": [], "aider": []}
        for _ in range(runs):
            per_tool["ornith"].append(measure(sys.executable, "ours", root, files_list, budget))
            if aider_python:
                for cache in root.glob(".aider.tags.cache*"):
                    shutil.rmtree(cache)  # cold means cold: no tags cache on disk
                try:
                    per_tool["aider"].append(measure(aider_python, "aider", root, files_list, budget))
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    aider_python, aider_info = None, f"aider's RepoMap failed: {exc}"
                    per_tool["aider"] = []
    result["ornith"] = summary(per_tool["ornith"])
    result["ornith_runs"] = per_tool["ornith"]
    if per_tool["aider"]:
        result["aider"] = summary(per_tool["aider"])
        result["aider_version"] = aider_info
        result["aider_runs"] = per_tool["aider"]
        result["aider_refresh"] = "force_refresh=True after the change (its auto mode would return the cached map)"
        result["ratio_aider_over_ornith"] = {k: ratio(result["aider"][k], result["ornith"][k])
                                             for k in ("cold_s", "update_s", "peak_mib")}
    else:
        result["aider"] = None
        result["aider_not_measured"] = f"aider: not measured because {aider_info}"
    o, a = result["ornith"], result["aider"]
    result["headline"] = [
        headline(f"repo map of {result['tree']} ({len(files)} files), cold / after one change (ornith)",
                 f"{o['cold_s']:.2f} s / {o['update_s']:.3f} s"),
        headline("repo map peak memory (ornith)", o["peak_mib"], "MiB"),
    ]
    if a:
        result["headline"] += [
            headline("same with aider's RepoMap, cold / after one change", f"{a['cold_s']:.2f} s / {a['update_s']:.3f} s"),
            headline("repo map peak memory (aider)", a["peak_mib"], "MiB"),
            headline("aider / ornith: cold time, time after one change, peak memory",
                     " / ".join(f"{result['ratio_aider_over_ornith'][k]}x" for k in ("cold_s", "update_s", "peak_mib"))),
        ]
    else:
        result["headline"].append(headline("aider's RepoMap", result["aider_not_measured"]))
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--budget", type=int, default=1024, help="map token budget, both tools")
    p.add_argument("--quick", action="store_true", help="the json and email packages, one run, no aider install")
    p.add_argument("--child", choices=("ours", "aider"), help=argparse.SUPPRESS)
    p.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--files", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        files = a.files.read_text().splitlines()
        out = (child_ours if a.child == "ours" else child_aider)(a.root, files, a.budget)
        print(json.dumps(out))
        sys.exit(0)
    from common import write

    res = main(1 if a.quick else a.runs, a.budget, a.quick)
    path = write("repomap", res, a.quick)
    print(f"{res['tree']}: {res['files']} files, {res['bytes'] / 1e6:.1f} MB, budget {res['token_budget']} tokens")
    print(f"{'tool':<8}{'cold s':>10}{'update s':>10}{'peak MiB':>10}{'above imports':>15}")
    for tool in ("ornith", "aider"):
        s = res[tool]
        if s:
            print(f"{tool:<8}{s['cold_s']:>10.3f}{s['update_s']:>10.3f}{s['peak_mib']:>10.1f}{s['above_imports_mib']:>15.1f}")
    if not res["aider"]:
        print(res["aider_not_measured"])
    print(f"-> {path}")
