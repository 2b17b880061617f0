"""The benchmark in its reduced mode, so it cannot rot: every scenario must produce its row.

Runs ``bench/run.py --quick`` as a developer would (its own Dovecot, real sr3), with a small N,
a temporary output file and the worker's RabbitMQ (``--broker``).  Figures are not asserted: only that each
scenario ran and wrote a row.  The scenarios run in four groups (``--only``), one test each, so
the ~2 minutes of the whole run spread over four workers; the first group keeps ``raw``, ``e2e`` and ``fetchmail`` together, as the later ones compare with the
earlier ones' figures (ctx.results).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.sr3_daemons]

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = {1: "raw IMAP", 2: "sr3 floor", 3: "end to end", 4: "fetchmail / sr3 built-ins",
             5: "poll scale", 6: "IDLE latency", 7: "decode"}
#: ``--only`` groups of about equal length, and the scenario numbers each must write a row for
GROUPS = {"raw,e2e,fetchmail,idle": (1, 3, 4, 6), "floor,builtin": (2, 4), "poll,memory": (3, 5), "decode": (7,)}


def test_the_groups_cover_every_scenario() -> None:
    from bench.scenarios import BY_NAME
    names = [name for group in GROUPS for name in group.split(",")]
    assert sorted(names) == sorted(BY_NAME), "a scenario missing from GROUPS would never be smoke-tested"
    assert {n for numbers in GROUPS.values() for n in numbers} == set(SCENARIOS)


@pytest.mark.parametrize("only", GROUPS)
def test_quick_bench_writes_a_row_for_every_scenario(tmp_path: Path, rabbitmq, only: str) -> None:
    output = tmp_path / "performance.md"
    done = subprocess.run(  # the worker's broker: one RabbitMQ boot less per group (~5 s of CPU)
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--messages", "20", "--only", only,
         "--output", str(output), "--work", str(tmp_path / "work"), "--broker", rabbitmq.url],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False)  # rows 2b, 3c, 4d added ~1 min
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in output.read_text().splitlines() if line.startswith("| ") and "---" not in line][1:]
    numbers = {re.match(r"\| (\d+)", row).group(1) for row in rows if re.match(r"\| (\d+)", row)}
    missing = [f"{n} ({SCENARIOS[n]})" for n in GROUPS[only] if str(n) not in numbers]
    assert not missing, f"no row for scenario(s) {missing}:\n" + "\n".join(rows)
    failed = [row for row in rows if "| failed |" in row]
    assert not failed, "scenario(s) failed:\n" + "\n".join(failed) + "\n" + done.stderr[-3000:]
    assert "## Machine" in output.read_text()
