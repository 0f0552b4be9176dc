"""Runs ``ornith-lsp`` with a probe on its event loop: what blocked it, and for
how long, told apart from a loop that merely waited for a CPU.

    python bench/loop_probe.py OUT.json serve      # instead of: python -m ornith_lsp serve

Every callback the loop runs is timed.  A slow one (over ``ORNITH_PROBE_MS``,
default 5 ms) is recorded with its wall time split three ways, from the
loop thread's own ``/proc/thread-self/schedstat``:

* ``cpu_ms``: the loop thread computing -- real blocking work on the loop;
* ``runq_ms``: runnable, waiting for a core (other processes: the tests the
  fixes run, on a 2-core machine) -- contention, not blocking;
* ``other_ms``: neither (waiting for the GIL held by a worker thread, or for
  the disk) -- the rest.

``gc_ms`` says how much of it was the garbage collector, run on the loop
thread (its time is in ``cpu_ms`` too).

While a callback runs long, a watchdog thread samples the loop thread's stack
every millisecond, so each slow callback names the line it was in.  The
whole record is written to OUT.json at exit.  A measuring tool for the
benchmarks, not part of the server.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import atexit
import collections
import gc
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

THRESHOLD_S = float(os.environ.get("ORNITH_PROBE_MS", "5")) / 1000


class Probe:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.slow: list[dict] = []
        self.callbacks = 0
        self.busy_s = 0.0
        self.loop_thread: int | None = None
        self._current: tuple[float, object] | None = None
        self._samples: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._gc_started = 0.0
        self._gc_s = 0.0  # collector time within the running callback

    def _on_gc(self, phase: str, info: dict) -> None:
        if threading.get_ident() != self.loop_thread:
            return
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started:
            self._gc_s += time.perf_counter() - self._gc_started
            self._gc_started = 0.0

    def schedstat(self) -> tuple[float, float]:
        """(cpu s, run-queue wait s) of the calling thread."""
        if self._fd is None:
            return 0.0, 0.0
        cpu, wait, _ = os.pread(self._fd, 200, 0).split()
        return int(cpu) / 1e9, int(wait) / 1e9

    def install(self) -> None:
        probe = self
        original = asyncio.events.Handle._run

        def _run(handle: asyncio.events.Handle) -> None:
            if probe.loop_thread is None:
                probe.loop_thread = threading.get_ident()
                probe._fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
            t0 = time.perf_counter()
            cpu0, wait0 = probe.schedstat()
            probe._current = (t0, handle)
            probe._gc_s = 0.0
            try:
                original(handle)
            finally:
                probe._current = None
                wall = time.perf_counter() - t0
                probe.callbacks += 1
                probe.busy_s += wall
                if wall >= THRESHOLD_S:
                    cpu1, wait1 = probe.schedstat()
                    with probe._lock:
                        where = probe._samples.most_common(3)
                        probe._samples.clear()
                    probe.slow.append({
                        "at_s": round(t0, 3), "wall_ms": round(wall * 1000, 2),
                        "cpu_ms": round((cpu1 - cpu0) * 1000, 2), "runq_ms": round((wait1 - wait0) * 1000, 2),
                        "other_ms": round((wall - (cpu1 - cpu0) - (wait1 - wait0)) * 1000, 2),
                        "gc_ms": round(probe._gc_s * 1000, 2),
                        "callback": asyncio.base_events._format_handle(handle)[:300],
                        "where": [{"samples": n, "stack": s} for s, n in where],
                    })
                else:
                    with probe._lock:
                        probe._samples.clear()

        asyncio.events.Handle._run = _run  # type: ignore[method-assign]
        gc.callbacks.append(self._on_gc)
        threading.Thread(target=self._watch, name="loop-probe", daemon=True).start()
        atexit.register(self.write)

    def _watch(self) -> None:
        while True:
            time.sleep(0.001)
            current = self._current
            if current is None or self.loop_thread is None or time.perf_counter() - current[0] < THRESHOLD_S / 2:
                continue
            frame = sys._current_frames().get(self.loop_thread)
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)[-6:]
            key = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(stack))
            with self._lock:
                if self._current is current:
                    self._samples[key] += 1

    def write(self) -> None:
        self.out.write_text(json.dumps({"threshold_ms": THRESHOLD_S * 1000, "callbacks": self.callbacks,
                                        "busy_s": round(self.busy_s, 3), "slow": self.slow}, indent=1))


if __name__ == "__main__":
    Probe(Path(sys.argv[1])).install()
    sys.argv = ["ornith-lsp", *sys.argv[2:]]
    from ornith_lsp.cli import main

    raise SystemExit(main())
