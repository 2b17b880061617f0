"""Scenario 3, end to end: N messages from the mailbox to downloaded, decoded, announced files.

The mailingest poll (``examples/poll/mail.conf`` as users install it) announces the mailbox into
the subscriber's declared queue; then a subscriber with ``callback mailingest.download`` +
``callback mailingest.decode`` and ``instances`` 1, 2, 4 (quick mode: 1, 2) works through it;
one more run, at the highest instance count, announces only the .eml and the attachments
(``mailDecodeAnnounce attachments``).
The figure is the sum of both stages: poll launch (cold) → last notice queued, plus first
notice taken → last announcement on the subscriber's post exchange (see
:func:`bench.subscriber.run_subscriber`).  When the decode callback cannot be imported yet, the
row says so and measures poll → download → announce only.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from pathlib import Path

from bench.context import BenchContext, mb
from bench.report import Row, ratio, target_check
from bench.subscriber import exchange_for, poll_feed, run_subscriber

logger = logging.getLogger(__name__)

NAME = "e2e"
NUMBER = 3
TITLE = "end to end"
INSTANCES = (1, 2, 4)
QUICK_INSTANCES = (1, 2)
#: runs of the default pipeline at instances 1 in full mode (rows 3, 3b, 4a, 4d take the median)
REPEATS = 3
#: the whole pipeline per message (subscriber stage, instances 1) against the sr3 floor (row 2)
PIPELINE_TARGET = 2.0


def decode_available() -> tuple[bool, str]:
    """Can sr3 load ``callback mailingest.decode``?  (It is being written while this bench is.)"""
    try:
        module = importlib.import_module("mailingest.decode")
        module.Decode  # noqa: B018 (the class must exist)
    except Exception as exc:  # ImportError, or a half-written module
        return False, f"{type(exc).__name__}: {exc}"
    return True, ""


#: the decoded files that ``mailDecodeAnnounce attachments`` leaves unannounced
NOT_ATTACHMENTS = ("body.txt", "body.html", "metadata.json")
#: the variant run: only the .eml and the attachments are announced
ATTACHMENTS_ONLY = "mailDecodeAnnounce attachments"
#: the pipeline at instances 1 with the decode in the worker's own process, beside the default
#: (``mailDecodeProcess auto``: a decode process per worker while a core is free)
IN_WORKER = "mailDecodeProcess off"
#: the cores the subscriber may run on (``mailDecodeProcess auto`` compares instances with them)
CPUS = len(os.sched_getaffinity(0))
#: the short names of the variant runs (sr3 config names)
VARIANTS = {ATTACHMENTS_ONLY: "a", IN_WORKER: "w"}


def _visible_files(directory: Path) -> list[Path]:
    """Every file under *directory* outside hidden entries (temp files, staging directories),
    read while workers write: a staging directory renamed away mid-walk is skipped, not an error
    (os.walk ignores directories that vanish; Path.rglob raises)."""
    found: list[Path] = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(root, name) for name in names if not name.startswith("."))
    return found


def _files_done(directory: Path, n: int, decode: bool, announced: int, attachments_only: bool = False) -> bool:
    """All N messages downloaded (and decoded), and at least one announcement per file announced."""
    files = _visible_files(directory)
    if sum(p.suffix == ".eml" and not p.parent.name.endswith(".parts") for p in files) < n:
        return False
    if decode and sum(p.name == "metadata.json" and p.parent.name.endswith(".parts") for p in files) < n:
        return False
    if attachments_only:
        files = [p for p in files if p.name not in NOT_ATTACHMENTS]
    return announced >= len(files)


def run_one(ctx: BenchContext, instances: int, decode: bool,
            extra: str = "", repeat: int = 0) -> tuple[float | None, float, int, int, int]:
    name = f"e2e{instances}" + VARIANTS.get(extra, "") + (f"r{repeat}" if repeat else "")
    account = ctx.loaded_account(name)  # downloads mark mail \Seen: a fresh copy per run
    home = ctx.sr3_home(name, account)
    callbacks = ["mailingest.download"] + (["mailingest.decode"] if decode else [])
    directory = ctx.work / "out" / name
    n = ctx.messages
    result = run_subscriber(
        ctx, home, name, callbacks, instances=instances,
        feed=poll_feed(ctx, home, exchange_for(name)), notices=n,
        expected=None if decode else n,
        done=lambda count: _files_done(directory, n, decode, count, attachments_only=extra == ATTACHMENTS_ONLY),
        timeout=max(300.0, n * 0.5), settle=1.0 if ctx.quick else 3.0, extra=extra)
    files = _visible_files(result.directory)
    emls = sum(p.suffix == ".eml" and not p.parent.name.endswith(".parts") for p in files)
    parts = sum(p.parent.name.endswith(".parts") for p in files)
    return result.elapsed, result.feed_seconds, result.announced, emls, parts


def run(ctx: BenchContext) -> list[Row]:
    decode, why = decode_available()
    n = ctx.messages
    total = ctx.pool_bytes
    raw_rate = ctx.results.get("raw_per_message_rate")
    rows: list[Row] = []
    best: tuple[float, int] | None = None
    counts = QUICK_INSTANCES if ctx.quick else INSTANCES
    variants = ([] if ctx.quick else [(counts[0], IN_WORKER)]) + [(counts[-1], ATTACHMENTS_ONLY)]
    runs = [(instances, "") for instances in counts] + (variants if decode else [])
    for instances, extra in runs:
        repeats = REPEATS if instances == 1 and not extra and not ctx.quick else 1
        results = [run_one(ctx, instances, decode, extra, repeat) for repeat in range(repeats)]
        elapsed, poll_s, announced, emls, parts = _median_run(results)
        stage_ms = _median_stage_ms(results, n)
        rate = n / elapsed if elapsed else None
        if not extra:
            if rate and (best is None or rate > best[0]):
                best = (rate, instances)
            ctx.results[f"e2e_rate_{instances}"] = rate
        what = "poll → download → decode → announce" if decode else "poll → download → announce (no decode yet)"
        if extra:
            what += f", `{extra}`"
        note = (f"{emls} .eml, {parts} decoded files, {announced} announcements; poll launch → notices queued "
                f"({poll_s:.1f} s), plus first notice taken → last announcement; ratio vs the raw per-message "
                f"ceiling (1b).")
        if decode and extra != IN_WORKER:
            note += (" Decode in a process of its own beside each worker (`mailDecodeProcess auto`: "
                     f"{instances} instance(s) on {CPUS} cores)." if instances < CPUS else
                     f" Decode in each worker's own process (`mailDecodeProcess auto`: {instances} instances on "
                     f"{CPUS} cores).")
        if not decode:
            note += f" mailingest.decode not available yet ({why[:120]})."
        if repeats > 1:
            note += (f" The median of {repeats} runs ("
                     + ", ".join(f"{r[0]:.1f} s" if r[0] else "did not finish" for r in results) + ").")
        rows.append(Row(
            scenario=f"3. end to end, {what}, instances {instances}",
            size=f"{n} × {total / n / 1000:.0f} KB",
            ours=f"{rate:.0f} msg/s, {mb(total) / elapsed:.1f} MB/s ({elapsed:.1f} s)" if elapsed else "did not finish",
            comparison=f"{raw_rate:.0f} msg/s (raw 1b)" if raw_rate else "—",
            ratio=ratio(rate, raw_rate), note=note))
        if instances == 1 and extra in ("", IN_WORKER) and stage_ms:
            rows.append(pipeline_row(ctx, stage_ms, decode, extra, stages=[
                (r[0] - r[1]) / n * 1000 for r in results if r[0]] if repeats > 1 else []))
        time.sleep(1)
    if best:
        ctx.results["e2e_best"] = best
    ctx.results["e2e_decode"] = decode
    return rows


def _median_run(results: list[tuple[float | None, float, int, int, int]]) -> tuple[float | None, float, int, int, int]:
    """The run with the median end-to-end time (a run that did not finish counts as the slowest)."""
    ordered = sorted(results, key=lambda r: r[0] if r[0] else float("inf"))
    return ordered[len(ordered) // 2]


def _median_stage_ms(results: list[tuple[float | None, float, int, int, int]], n: int) -> float | None:
    """The median subscriber stage (first notice taken → last announcement), ms per message."""
    stages = sorted((r[0] - r[1]) / n * 1000 if r[0] else float("inf") for r in results)
    middle = stages[len(stages) // 2]
    return middle if middle != float("inf") else None


def pipeline_row(ctx: BenchContext, ours_ms: float, decode: bool, extra: str = "",
                 stages: list[float] | None = None) -> Row:
    """Row 3b: download + decode + announcements per message at instances 1 (the subscriber
    stage of the end-to-end run) against the sr3 floor of row 2 (a download that does nothing)."""
    floor_ms = ctx.results.get("floor_ms")
    five_posts_ms = ctx.results.get("floor_ms_five_posts")
    n = ctx.messages
    return Row(
        scenario="3b. full pipeline per message (download + decode + announcements), instances 1"
                 + (f", `{extra}`" if extra else "") + ", vs the sr3 floor",
        size=f"{n} × {ctx.pool_bytes / n / 1000:.0f} KB",
        ours=f"{ours_ms:.2f} ms/msg",
        comparison=f"{floor_ms:.2f} ms/msg (floor, row 2)" if floor_ms else "run scenario floor for the floor",
        ratio=ratio(ours_ms, floor_ms),
        target="" if extra else target_check(ours_ms / floor_ms if floor_ms else None, PIPELINE_TARGET,
                                             at_least=False, label="× floor"),
        note=("first notice taken → last announcement of the end-to-end run at instances 1 (its poll stage left "
              "out), per message; the floor takes and posts each notice once (one commit per notice, as sr3 does), "
              "the pipeline posts 5 per message (one commit per pass, `mailPostBatch`)"
              + (f" (sr3 alone, posting 5 per message with no mailingest code: {five_posts_ms:.2f} ms/msg, row 2d)"
                 if five_posts_ms else "")
              + (f"; the median of {len(stages)} runs (" + ", ".join(f"{s:.2f}" for s in stages) + " ms/msg)"
                 if stages else "")
              + ("" if decode else "; no decode yet") + "; times, lower is better"))
