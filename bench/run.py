"""Run the mailingest benchmarks and write docs/performance.md.

    python bench/run.py [--quick] [--messages N] [--only SCENARIO[,SCENARIO]] [--output FILE]

Starts a private Dovecot and RabbitMQ (the classes of tests/servers/), runs each scenario in
bench/scenarios/ in one process so every ratio comes from the same run on the same machine, and
writes the markdown table.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import compileall
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import report  # noqa: E402
from bench.context import REPO, BenchContext  # noqa: E402
from bench.report import Row  # noqa: E402
from bench.scenarios import ALL, BY_NAME  # noqa: E402

logger = logging.getLogger("bench")

DEFAULT_MESSAGES = 2000
QUICK_MESSAGES = 50
ANALYSIS_START = "<!-- analysis: kept across runs, edit by hand -->"
ANALYSIS_END = "<!-- analysis end -->"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"reduced mode: {QUICK_MESSAGES} messages, small mailboxes, few samples")
    parser.add_argument("--messages", type=int, default=None,
                        help=f"N for the throughput scenarios (default {DEFAULT_MESSAGES}, quick {QUICK_MESSAGES})")
    parser.add_argument("--only", default="",
                        help="comma-separated scenarios: " + ", ".join(BY_NAME))
    parser.add_argument("--output", default=str(REPO / "docs" / "performance.md"), help="markdown file to write")
    parser.add_argument("--work", default=None,
                        help="keep this run's servers' files, sr3 homes and logs in a new directory under DIR "
                             "(a fresh one per run: nothing of an earlier run, sr3 state or files, is taken up); "
                             "default: a temp dir, removed at the end")
    parser.add_argument("--broker", default=None, metavar="URL",
                        help="use this running RabbitMQ (amqp://USER:PASSWORD@HOST:PORT/) instead of starting "
                             "a private one, e.g. the test suite's; its figures then share that broker")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    unknown = [s for s in _split(args.only) if s not in BY_NAME]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(BY_NAME)}")
    if args.messages is not None and args.messages < 1:
        parser.error("--messages must be at least 1")
    return args


def _split(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def run_scenarios(ctx: BenchContext, names: Sequence[str]) -> list[Row]:
    rows: list[Row] = []
    for module in ALL:
        if names and module.NAME not in names:
            continue
        started = time.monotonic()
        logger.info("== %s: %s", module.NAME, module.TITLE)
        try:
            rows.extend(module.run(ctx))
        except Exception as exc:  # one broken scenario must not lose the others' figures
            logger.exception("scenario %s failed", module.NAME)
            rows.append(Row(f"{module.NUMBER}. {module.TITLE}", "—", "failed", "—", "—", "",
                            f"{type(exc).__name__}: {exc}"[:300]))
        logger.info("== %s done in %.1fs", module.NAME, time.monotonic() - started)
    return rows


def kept_analysis(path: Path) -> str:
    """The hand-written analysis of an earlier page, so a re-run does not lose it."""
    if not path.exists():
        return ""
    text = path.read_text(encoding="utf-8")
    if ANALYSIS_START in text and ANALYSIS_END in text:
        return text.split(ANALYSIS_START, 1)[1].split(ANALYSIS_END, 1)[0].strip()
    return ""


def missed(rows: Sequence[Row]) -> str:
    lines = [f"* {r.scenario} ({r.size}): {r.target.replace('**', '')}" for r in rows if "missed" in r.target]
    return "\n".join(lines) if lines else "* none"


#: a new work directory where creating a file costs more than this (ms) is not used (see
#: :func:`work_directory`): 0.018-0.033 ms on this machine's ext4 away from fresh deletions
CREATE_COST_LIMIT = 0.04
#: new work directories tried at most before the cheapest is taken
WORK_DIRECTORY_TRIES = 8


def work_directory(parent: str | None, *, quick: bool = False) -> tuple[Path, str, list[Path]]:
    """A new work directory under *parent* (or the system's temporary directory) where creating a
    file costs what it costs on this file system, the Machine section's note on it, and the
    directories tried and not used.

    Every row that writes files (mailingest's download and decode, fetchmail's MDA, ripmime) pays
    the file creation once per file, the sr3 floor does not, so a slow creation would show in one
    side of the ratios only.  On this machine's ext4 (no journal), the inode allocator skips every
    inode freed in the last 60 s, or 360 s while its inode table block is dirty (which it is as
    soon as a file is created beside it), at one buffer look-up each (``recently_deleted`` in
    fs/ext4/ialloc.c): near the thousands of files an earlier run or test suite deleted in the last
    minutes, creating a file took 0.06-0.5 ms instead of 0.02-0.03 ms, and a profile of the
    pipeline's worker put a quarter of its CPU there.  Waiting that out would take six minutes;
    ext4 places each new directory in a block group of its choosing, and the rows' directories
    are made inside this one, near it.  So the cost of creating a file is measured here
    (:func:`report.create_cost`, which deletes nothing), and a directory over
    :data:`CREATE_COST_LIMIT` is kept aside while another is made (so ext4 does not place it in
    the same spot), up to :data:`WORK_DIRECTORY_TRIES`; the cheapest is used.  Directories not
    used are for the caller to remove at the end of the run, not now: deleting them would
    slow the run's own file creation.  In full mode the file system is synced first (what an
    earlier job left to write back would otherwise share the disk with the rows' fsyncs)."""
    if not quick:
        os.sync()
    tried: list[tuple[float, Path]] = []
    for _attempt in range(WORK_DIRECTORY_TRIES):
        work = Path(tempfile.mkdtemp(prefix="mailingest-bench-", dir=parent))
        work.chmod(0o755)  # Dovecot's mail user must traverse it when run as root
        cost = report.create_cost(work)
        tried.append((cost, work))
        if cost <= CREATE_COST_LIMIT:
            break
    cost, chosen = min(tried, key=lambda item: item[0])
    note = f"{cost:.3f} ms (median of 200 empty files created in the work directory)"
    others = [c for c, path in tried if path != chosen]
    if others:
        note += (f"; {len(others)} new work director{'y' if len(others) == 1 else 'ies'} tried first cost "
                 + ", ".join(f"{c:.3f}" for c in others) + " ms and were not used (bench/run.py, work_directory)")
    return chosen, note, [path for _cost, path in tried if path != chosen]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("pika", "imapclient"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    messages = args.messages or (QUICK_MESSAGES if args.quick else DEFAULT_MESSAGES)
    # An installed mailingest has its byte code (pip compiles it); a checkout on a machine that sets
    # PYTHONDONTWRITEBYTECODE would have every sr3 flow and `mailingest decode` process compile it
    # again (~0.1 s each), which is no part of what is measured.
    compileall.compile_dir(str(REPO / "plugins"), quiet=1)
    if args.work:
        Path(args.work).mkdir(parents=True, exist_ok=True)
        Path(args.work).chmod(0o755)  # Dovecot's mail user must traverse it when run as root
    work, notes_on_work, unused = work_directory(args.work, quick=args.quick)
    started = time.monotonic()
    notes = report.machine_notes(sys.version.split()[0])
    notes["file create"] = notes_on_work
    ctx = BenchContext(work=work, messages=messages, quick=args.quick, broker_url=args.broker)
    try:
        rows = run_scenarios(ctx, _split(args.only))
    finally:
        ctx.close()
        if args.work:
            logger.info("this run's files, sr3 homes and logs: %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
        for path in unused:
            shutil.rmtree(path, ignore_errors=True)
    seconds = time.monotonic() - started
    output = Path(args.output)
    analysis = kept_analysis(output) or "(to be written after a full run)"
    shown = [a for a in (argv if argv is not None else sys.argv[1:])
             if not a.startswith(("--output", "--work", "--broker")) and a not in (args.output, args.work, args.broker)]
    command = " ".join(["python bench/run.py", *shown])
    body = (f"Targets missed in this run:\n\n{missed(rows)}\n\n"
            f"{ANALYSIS_START}\n{analysis}\n{ANALYSIS_END}")
    notes["mode"] = f"{'quick' if args.quick else 'full'}, N = {messages}"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report.page(rows, notes, command.strip(), body, seconds), encoding="utf-8")
    print(report.table(rows))
    logger.info("wrote %s in %.1f min", output, seconds / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
