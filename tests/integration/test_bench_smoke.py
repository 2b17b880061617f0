"""The benchmark in its reduced mode, so it cannot rot: every scenario must produce its row.

Runs ``bench/run.py --quick`` exactly as a developer would (own Dovecot and RabbitMQ, real
sr3), with a small N and a temporary output file.  Figures are not asserted: only that each
scenario ran and wrote a row.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = {1: "raw IMAP", 2: "sr3 floor", 3: "end to end", 4: "fetchmail / sr3 built-ins",
             5: "poll scale", 6: "IDLE latency", 7: "decode"}


def test_quick_bench_writes_a_row_for_every_scenario(tmp_path: Path) -> None:
    output = tmp_path / "performance.md"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--messages", "20",
         "--output", str(output), "--work", str(tmp_path / "work")],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False)  # rows 2b, 3c, 4d added ~1 min
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in output.read_text().splitlines() if line.startswith("| ") and "---" not in line][1:]
    numbers = {re.match(r"\| (\d+)", row).group(1) for row in rows if re.match(r"\| (\d+)", row)}
    missing = [f"{n} ({what})" for n, what in SCENARIOS.items() if str(n) not in numbers]
    assert not missing, f"no row for scenario(s) {missing}:\n" + "\n".join(rows)
    failed = [row for row in rows if "| failed |" in row]
    assert not failed, "scenario(s) failed:\n" + "\n".join(failed) + "\n" + done.stderr[-3000:]
    assert "## Machine" in output.read_text()
