"""Where a cell's seconds went: wall and process-CPU seconds per phase, the unmeasured remainder kept as `other`.

    clock = Clock(started)                # started: time.time() when the cell's process was spawned
    with clock.phase("eval", "perplexity"):
        ...
    result["timing"] = clock.record()     # {"phases": [...], "wall_seconds", "cpu_seconds", "benchmark_tasks"}

A phase record is {"phase", "name"?, "wall", "cpu"}: phases are start (interpreter start and imports,
from the runner's spawn time), load, sanity, prepare, data, train (one record per learning-rate trial,
or the final run), artifact, eval (one per suite) and store. They do not overlap, so their wall seconds and
`other` sum to `wall_seconds`. `benchmark_tasks` ({task: seconds}, from the benchmarks suite) lies
inside the benchmarks suite's record and is not added again.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

SPAWNED_ENV = "HARNESS_SPAWNED_AT"  # time.time() when the runner started the cell's process


class Clock:
    """One cell's phase records; `started` before now adds the process's own start as the first."""

    def __init__(self, started: float | None = None):
        now = time.time()
        self.started = started if started is not None and started <= now else now
        self.phases: list[dict] = []
        self.benchmark_tasks: dict[str, float] = {}
        if now - self.started > 0:  # the process's start and imports, before this clock existed
            self.phases.append({"phase": "start", "name": "process", "wall": round(now - self.started, 3),
                                "cpu": round(time.process_time(), 3)})  # CPU since the process began

    @contextmanager
    def phase(self, phase: str, name: str | None = None):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            record = {"phase": phase, **({"name": name} if name else {}),
                      "wall": round(time.perf_counter() - wall, 3), "cpu": round(time.process_time() - cpu, 3)}
            self.phases.append(record)

    def wall_seconds(self) -> float:
        return round(time.time() - self.started, 3)

    def record(self) -> dict:
        """The timing as stored: the phases, `other` (wall not inside any phase) and the totals."""
        total = self.wall_seconds()
        measured = sum(p["wall"] for p in self.phases)
        phases = [*self.phases, {"phase": "other", "wall": round(max(0.0, total - measured), 3)}]
        out = {"phases": phases, "wall_seconds": total, "cpu_seconds": round(time.process_time(), 3)}
        if self.benchmark_tasks:
            out["benchmark_tasks"] = dict(self.benchmark_tasks)
        return out


def seconds(timing: dict | None, phase: str) -> float | None:
    """Wall seconds of every record of `phase` together; None for results stored before timing existed."""
    if not timing or not isinstance(timing.get("phases"), list):
        return None
    found = [p.get("wall") or 0.0 for p in timing["phases"] if p.get("phase") == phase]
    return round(sum(found), 3) if found else 0.0


def suite_seconds(timing: dict | None) -> dict[str, float]:
    """{suite: wall seconds} of the eval phase, in the order the suites ran."""
    if not timing or not isinstance(timing.get("phases"), list):
        return {}
    return {p.get("name", "?"): p.get("wall") or 0.0 for p in timing["phases"] if p.get("phase") == "eval"}
