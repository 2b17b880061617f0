"""Scenario 2, the sr3 floor: N notices through a real subscriber whose download does nothing,
against the same notices through ``callback mailingest.download`` (instances 1); row 2b does
both again while another process keeps the disk busy (:mod:`bench.diskload`); row 2c runs the
floor alone at ``instances 4``: the most messages per second any sr3 subscriber (one post per
message) reaches on this machine, whatever its plugins do, which rows 3 and 4a compare with; row
2d is the floor that posts five notices per message, as the whole pipeline does (row 3b): what
sr3's posting alone costs, with no mailingest code.

Both subscribers get the very notices the mailingest poll published (captured once, queued
with pika before the subscriber starts) and post every message they accept; time runs from the
moment sr3 takes the first notice to the moment the post exchange has carried all N.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from bench import passes
from bench.context import BenchContext, mb
from bench.diskload import busy_disk
from bench.report import Row, ratio, target_check
from bench.subscriber import SubscriberResult, capture_notices, example_settings, run_subscriber

logger = logging.getLogger(__name__)

NAME = "floor"
NUMBER = 2
TITLE = "sr3 floor vs mailingest.download"
TARGET = 1.25
#: row 2c: the floor with this many instances (the most the end-to-end rows use)
PARALLEL_INSTANCES = 4


def run(ctx: BenchContext) -> list[Row]:
    return [pair(ctx, "2. per-message cost: mailingest.download vs sr3 floor (null download), instances 1", ""),
            pair(ctx, "2b. per-message cost on a busy disk: mailingest.download vs sr3 floor, instances 1, while "
                      "another process writes and fsyncs", "-busy"),
            parallel_floor(ctx),
            five_posts_floor(ctx)]


#: the notices the whole pipeline posts per message of the bench (the .eml, body.txt, body.html,
#: the attachment, metadata.json), as ``bench/plugins/nullannounce.py`` posts them
PIPELINE_POSTS = 5


def five_posts_floor(ctx: BenchContext) -> Row:
    """Row 2d: the floor at instances 1 with ``callback nullannounce`` after the null download
    (four more posts per message, nothing decoded or written), on the notices of row 2, against
    row 2's floor (times)."""
    n = ctx.messages
    result = run_subscriber(ctx, ctx.sr3_home("floor5"), "floor5", ["nulldownload", "nullannounce"], instances=1,
                            preload=ctx.results["floor_notices"], expected=n * PIPELINE_POSTS)
    ours_ms = result.elapsed / n * 1000 if result.elapsed else None
    ctx.results["floor_ms_five_posts"] = ours_ms
    floor_ms = ctx.results.get("floor_ms")
    return Row(
        scenario=f"2d. sr3 floor posting {PIPELINE_POSTS} notices per message (as the whole pipeline does), "
                 "instances 1",
        size=f"{n} × {ctx.pool_bytes / n / 1000:.0f} KB",
        ours=f"{ours_ms:.2f} ms/msg" if ours_ms else "did not finish",
        comparison=f"{floor_ms:.2f} ms/msg (one post, row 2)" if floor_ms else "—",
        ratio=ratio(ours_ms, floor_ms),
        note=("the same notices as row 2 through a subscriber whose download does nothing and whose after_work "
              f"adds {PIPELINE_POSTS - 1} notices per message (bench/plugins/nullannounce.py): sr3's own cost of "
              "the pipeline's posts (JSON, publish and one `tx_commit` round trip per notice in sr3 3.3.1), no "
              "mailingest plugin at all; row 3b's target is 2× row 2; times, lower is better"
              + ("" if result.elapsed else "; did not finish: " + _tail(result.log))))


def parallel_floor(ctx: BenchContext) -> Row:
    """Row 2c: the floor at :data:`PARALLEL_INSTANCES`, on the notices of row 2, against row 2's
    floor at instances 1 (rates)."""
    n = ctx.messages
    name = f"floor{PARALLEL_INSTANCES}"
    result = run_subscriber(ctx, ctx.sr3_home(name), name, ["nulldownload"], instances=PARALLEL_INSTANCES,
                            preload=ctx.results["floor_notices"], expected=n)
    rate = n / result.elapsed if result.elapsed else None
    ctx.results["floor_rate_parallel"] = (rate, PARALLEL_INSTANCES)
    floor_ms = ctx.results.get("floor_ms")
    one = 1000 / floor_ms if floor_ms else None
    return Row(
        scenario=f"2c. sr3 floor (null download) at instances {PARALLEL_INSTANCES}: the ceiling of any sr3 "
                 f"subscriber on this machine",
        size=f"{n} × {ctx.pool_bytes / n / 1000:.0f} KB",
        ours=f"{rate:.0f} msg/s" if rate else "did not finish",
        comparison=f"{one:.0f} msg/s (instances 1, row 2)" if one else "—",
        ratio=ratio(rate, one),
        note=("the same notices as row 2 through a subscriber whose download does nothing: receive, accept, ack "
              "and one post per message, on cores shared with RabbitMQ (and Dovecot, idle here); no mailingest "
              f"plugin at all. sr3 starts a pass at most every 0.1 s (`sleep`), with up to `batch` notices "
              f"({_batch()}, as in the examples): at most {_batch() * 10} msg/s per instance; rates, higher is better"
              + ("" if result.elapsed else "; did not finish: " + _tail(result.log))))


#: back-to-back pairs of floor and download per row in full mode; the row gives the median pair
PAIRS = 3


def pair(ctx: BenchContext, title: str, variant: str) -> Row:
    """The floor and mailingest.download on the same notices, back to back (*variant* ``-busy``:
    both while :func:`bench.diskload.busy_disk` writes beside them); in full mode :data:`PAIRS`
    such pairs, and the row is the pair with the median ratio (each pair's figures in the note):
    on these shared cores one run moves by a third from one minute to the next."""
    n = ctx.messages
    runs = [_one_pair(ctx, variant, number) for number in range(1 if ctx.quick else PAIRS)]
    finished = [run for run in runs if run[0].elapsed and run[1].elapsed]
    by_ratio = sorted(finished, key=lambda run: (run[1].elapsed or 0) / (run[0].elapsed or 1))
    floor, ours, clocks = by_ratio[len(by_ratio) // 2] if by_ratio else runs[0]
    files = len(list(ours.directory.rglob("*.eml")))
    floor_ms = floor.elapsed / n * 1000 if floor.elapsed else None
    ours_ms = ours.elapsed / n * 1000 if ours.elapsed else None
    ctx.results["floor_ms" + variant.replace("-", "_")] = floor_ms
    ctx.results["download_ms" + variant.replace("-", "_")] = ours_ms
    cost = ours_ms / floor_ms if ours_ms and floor_ms else None
    raw_ms = ctx.results.get("raw_per_message_ms")
    note = (f"{files}/{n} .eml files written; both post every message (the floor commits each notice on its own, as "
            "sr3 does; mailingest's flows one commit per pass, `mailPostBatch`).")
    if len(runs) > 1:
        note += (f" The median of {len(runs)} back-to-back pairs (download / floor, ms/msg: "
                 + ", ".join(f"{_ms(o, n)} / {_ms(f, n)}" for f, o, _c in runs) + ").")
    if variant:
        note += (" A neighbour process writes 1 MiB blocks and fsyncs every 8 MiB throughout both runs "
                 "(bench/diskload.py).")
    if ours_ms and floor_ms:
        note += f" mailingest adds {ours_ms - floor_ms:.2f} ms/msg"
        if raw_ms and not variant:
            note += f" (a bare per-message UID FETCH costs {raw_ms:.2f} ms)"
        note += f"; {mb(ctx.pool_bytes) / ours.elapsed:.1f} MB/s." if ours.elapsed else "."
    note += _passes_note(clocks)
    return Row(
        scenario=title,
        size=f"{n} × {ctx.pool_bytes / n / 1000:.0f} KB",
        ours=_fmt(ours_ms), comparison=_fmt(floor_ms), ratio=ratio(ours_ms, floor_ms),
        target=target_check(cost, TARGET, at_least=False, label="× floor"),
        note=note + ("" if ours.elapsed else " mailingest.download did not finish: " + _tail(ours.log)),
    )


def _one_pair(ctx: BenchContext, variant: str, number: int) -> tuple[SubscriberResult, SubscriberResult, dict[str, Path]]:
    """One floor run and one mailingest.download run on the same notices, back to back."""
    n = ctx.messages
    suffix = variant + (f"-{number}" if number else "")
    account = ctx.loaded_account("download" + suffix)  # downloads mark mail \Seen: its own copy
    bodies = capture_notices(ctx, account, "capture" + suffix)
    if not variant and not number:
        ctx.results["floor_notices"] = bodies  # row 2c replays them
    clocks = {name: ctx.work / f"passclock-{name}{suffix}.jsonl" for name in ("floor", "download")}
    with busy_disk(ctx.work / "diskload") if variant else contextlib.nullcontext():
        floor = run_subscriber(ctx, ctx.sr3_home("floor" + suffix), "floor" + suffix, ["nulldownload", "passclock"],
                               instances=1, preload=bodies, expected=n, extra=passes.clock_to(clocks["floor"]))
        ours = run_subscriber(ctx, ctx.sr3_home("download" + suffix, account), "download" + suffix,
                              ["mailingest.download", "passclock"], instances=1, preload=bodies, expected=n,
                              extra=passes.clock_to(clocks["download"]))
    return floor, ours, clocks


def _ms(result: SubscriberResult, n: int) -> str:
    return f"{result.elapsed / n * 1000:.2f}" if result.elapsed else "did not finish"


def _passes_note(clocks: dict[str, Path]) -> str:
    """Where each subscriber's pass goes (medians of :func:`bench.passes.summary`): the floor works
    part of its ``sleep`` (0.1 s) and sleeps the rest, so waiting for a CPU costs it nothing until
    that slack is gone, where every millisecond of it lengthens a pass that has none."""
    parts = []
    for name, label in (("floor", "floor"), ("download", "mailingest")):
        figures = passes.summary(clocks[name], _batch())
        if figures is None:
            continue
        waited = f", {figures['runqueue']:.0f} ms waiting for a CPU" if "runqueue" in figures else ""
        parts.append(f"{label} {figures['period']:.0f} ms ({figures['cpu']:.0f} ms CPU{waited})")
    return f" Per pass of {_batch()} notices (medians, the flow's thread): " + "; ".join(parts) + "." if parts else ""


def _batch() -> int:
    """The notices per sr3 pass the bench subscribers use (the examples' ``batch``)."""
    return next(int(line.split()[1]) for line in example_settings() if line.startswith("batch "))


def _fmt(ms: float | None) -> str:
    return f"{ms:.2f} ms/msg ({1000 / ms:.0f} msg/s)" if ms else "did not finish"


def _tail(log: str) -> str:
    lines = [line for line in log.splitlines() if "rror" in line]
    return (lines[-1] if lines else log.splitlines()[-1] if log else "")[-200:]
