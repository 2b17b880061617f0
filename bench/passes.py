"""Read what ``callback passclock`` (bench/plugins/passclock.py) logged: a subscriber's passes.

The scenario names a file in the subscriber's config (:func:`clock_to`); the plugin appends one
line per pass; :func:`summary` turns consecutive lines into medians per pass.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

#: the environment variable passclock reads (it cannot import bench: sr3 loads it alone)
ENV = "MAILINGEST_BENCH_PASSCLOCK"


def clock_to(path: Path) -> str:
    """The config line that has passclock log each pass to *path* (emptied first)."""
    path.unlink(missing_ok=True)
    return f"declare env {ENV}={path}"


def summary(path: Path, full_pass: int) -> dict[str, float] | None:
    """Medians over the passes that took at least half of *full_pass* notices: ``period`` (from
    one pass's end to the next's, ms), ``cpu`` (the flow thread's CPU in it, ms) and ``runqueue``
    (its time runnable but waiting for a CPU, ms; absent without schedstat).  None: too few passes."""
    try:
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError:
        return None
    pairs = [(a, b) for a, b in zip(lines, lines[1:]) if b["notices"] * 2 >= full_pass]
    if len(pairs) < 3:
        return None
    result = {"period": statistics.median((b["wall"] - a["wall"]) * 1000 for a, b in pairs),
              "cpu": statistics.median((b["cpu"] - a["cpu"]) * 1000 for a, b in pairs),
              "passes": float(len(pairs))}
    if all(line["runqueue_ns"] >= 0 for line in lines):
        result["runqueue"] = statistics.median((b["runqueue_ns"] - a["runqueue_ns"]) / 1e6 for a, b in pairs)
    return result
