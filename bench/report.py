"""Rows of results and the markdown page they make (docs/performance.md)."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path


@dataclass(frozen=True)
class Row:
    """One line of the table.  ``ratio`` is ours / comparison unless the note says otherwise."""

    scenario: str
    size: str
    ours: str
    comparison: str
    ratio: str
    target: str = ""
    note: str = ""


def ratio(ours: float | None, comparison: float | None) -> str:
    if not ours or not comparison:
        return "—"
    value = ours / comparison
    if value >= 10:
        return f"{value:.0f}×"
    return f"{value:.2f}×" if value >= 0.1 else f"{value:.2g}×"


def target_check(value: float | None, goal: float, *, at_least: bool, label: str) -> str:
    """``"≥ 2× fetchmail: met"`` or ``"≥ 2× fetchmail: missed by 35 %"`` (relative to the goal)."""
    sign = "≥" if at_least else "≤"
    if value is None:
        return f"{sign} {goal:g}{label}: not measured"
    met = value >= goal if at_least else value <= goal
    if met:
        return f"{sign} {goal:g}{label}: met"
    short = (goal - value) / goal if at_least else (value - goal) / goal
    return f"{sign} {goal:g}{label}: **missed by {short * 100:.0f} %**"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: Sequence[Row]) -> str:
    head = ["scenario", "size", "ours", "comparison", "ratio", "target", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.scenario, r.size, r.ours, r.comparison, r.ratio, r.target, r.note]
        lines.append("| " + " | ".join(_escape(c) for c in cells) + " |")
    return "\n".join(lines)


def _version(argv: list[str], pattern: str = r"(\d+(?:\.\d+)+)") -> str:
    if shutil.which(argv[0]) is None and not argv[0].startswith("/"):
        return "not installed"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    match = re.search(pattern, done.stdout + done.stderr)
    return match.group(1) if match else "unknown"


def _dpkg_version(package: str) -> str:
    return _version(["dpkg-query", "-W", "-f", "${Version}", package], r"(\S+)")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_notes(python: str) -> dict[str, str]:
    import os
    from importlib import metadata

    try:
        sr3 = metadata.version("metpx-sr3")
    except metadata.PackageNotFoundError:
        sr3 = "not installed"
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": f"{os.cpu_count()} × {_cpu_model()}",
        "load average at start": " ".join(f"{x:.2f}" for x in load),
        "kernel": platform.release(),
        "python": python,
        "metpx-sr3": sr3,
        "dovecot": _version(["dovecot", "--version"]),
        "rabbitmq-server": _dpkg_version("rabbitmq-server"),
        "erlang": _dpkg_version("erlang-base"),
        "fetchmail": _dpkg_version("fetchmail"),
        "ripmime": _dpkg_version("ripmime"),
    }


def create_cost(directory: Path, files: int = 200) -> float:
    """The median time (ms) to create (and close) an empty file in a new subdirectory of *directory*.

    Every file a subscriber writes, and every file fetchmail's MDA and ripmime write, pays it once;
    the sr3 floor pays nothing.  It is ~0.01-0.05 ms on an ordinary ext4 directory, and up to 0.5 ms
    on this machine's ext4 (no journal) near inodes freed in the last minutes (see
    ``bench/run.py``, ``work_directory``).  The files are left in place (the work directory is
    removed at the end of the run): deleting them would slow every file created after them for a
    minute or more."""
    import os
    import statistics
    import tempfile
    import time

    probe = Path(tempfile.mkdtemp(prefix="create-cost-", dir=directory))
    times = []
    for number in range(files):
        started = time.perf_counter()
        os.close(os.open(probe / f"f{number}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def page(rows: Sequence[Row], notes: dict[str, str], command: str, analysis: str, seconds: float) -> str:
    machine = "\n".join(f"* {k}: {v}" for k, v in notes.items())
    return f"""# Performance

Measured by one command, which starts its own Dovecot and RabbitMQ (the test fixtures of
`tests/servers/`), runs every scenario and rewrites this page:

    python bench/run.py                 # full run (N = 2,000 messages of ~70 KB), ~15 min
    python bench/run.py --quick         # reduced mode (small N), as the test suite runs it
    python bench/run.py --only e2e,decode --messages 500 --output /tmp/perf.md

See `bench/README.md` for the options and for what each scenario does.  Only **ratios taken in
the same run on the same machine** are claims; absolute figures are for this machine only.

Generated by `{command}` in {seconds / 60:.1f} min.

## Results

{table(rows)}

Ratio = ours / comparison (for times, lower is better; for rates, higher is better; the note
says which).  Targets are tracked here, they are not test assertions.

## Machine

{machine}

## What the numbers say

{analysis}
"""
