"""Scenario 2, the sr3 floor: N notices through a real subscriber whose download does nothing,
against the same notices through ``callback mailingest.download`` (instances 1); row 2b does
both again while another process keeps the disk busy (:mod:`bench.diskload`).

Both subscribers get the very notices the mailingest poll published (captured once, queued
with pika before the subscriber starts) and post every message they accept; time runs from the
moment sr3 takes the first notice to the moment the post exchange has carried all N.
"""

from __future__ import annotations

import contextlib
import logging

from bench.context import BenchContext, mb
from bench.diskload import busy_disk
from bench.report import Row, ratio, target_check
from bench.subscriber import capture_notices, run_subscriber

logger = logging.getLogger(__name__)

NAME = "floor"
NUMBER = 2
TITLE = "sr3 floor vs mailingest.download"
TARGET = 1.25


def run(ctx: BenchContext) -> list[Row]:
    return [pair(ctx, "2. per-message cost: mailingest.download vs sr3 floor (null download), instances 1", ""),
            pair(ctx, "2b. per-message cost on a busy disk: mailingest.download vs sr3 floor, instances 1, while "
                      "another process writes and fsyncs", "-busy")]


def pair(ctx: BenchContext, title: str, variant: str) -> Row:
    """The floor and mailingest.download on the same notices, back to back (*variant* ``-busy``:
    both while :func:`bench.diskload.busy_disk` writes beside them)."""
    n = ctx.messages
    account = ctx.loaded_account("download" + variant)  # downloads mark mail \Seen: its own copy
    bodies = capture_notices(ctx, account, "capture" + variant)
    with busy_disk(ctx.work / "diskload") if variant else contextlib.nullcontext():
        floor = run_subscriber(ctx, ctx.sr3_home("floor" + variant), "floor" + variant, ["nulldownload"],
                               instances=1, preload=bodies, expected=n)
        ours = run_subscriber(ctx, ctx.sr3_home("download" + variant, account), "download" + variant,
                              ["mailingest.download"], instances=1, preload=bodies, expected=n)
    files = len(list(ours.directory.rglob("*.eml")))
    floor_ms = floor.elapsed / n * 1000 if floor.elapsed else None
    ours_ms = ours.elapsed / n * 1000 if ours.elapsed else None
    ctx.results["floor_ms" + variant.replace("-", "_")] = floor_ms
    ctx.results["download_ms" + variant.replace("-", "_")] = ours_ms
    cost = ours_ms / floor_ms if ours_ms and floor_ms else None
    raw_ms = ctx.results.get("raw_per_message_ms")
    note = f"{files}/{n} .eml files written; both post every message."
    if variant:
        note += (" A neighbour process writes 1 MiB blocks and fsyncs every 8 MiB throughout both runs "
                 "(bench/diskload.py).")
    if ours_ms and floor_ms:
        note += f" mailingest adds {ours_ms - floor_ms:.2f} ms/msg"
        if raw_ms and not variant:
            note += f" (a bare per-message UID FETCH costs {raw_ms:.2f} ms)"
        note += f"; {mb(ctx.pool_bytes) / ours.elapsed:.1f} MB/s." if ours.elapsed else "."
    return Row(
        scenario=title,
        size=f"{n} × {ctx.pool_bytes / n / 1000:.0f} KB",
        ours=_fmt(ours_ms), comparison=_fmt(floor_ms), ratio=ratio(ours_ms, floor_ms),
        target=target_check(cost, TARGET, at_least=False, label="× floor"),
        note=note + ("" if ours.elapsed else " mailingest.download did not finish: " + _tail(ours.log)),
    )


def _fmt(ms: float | None) -> str:
    return f"{ms:.2f} ms/msg ({1000 / ms:.0f} msg/s)" if ms else "did not finish"


def _tail(log: str) -> str:
    lines = [line for line in log.splitlines() if "rror" in line]
    return (lines[-1] if lines else log.splitlines()[-1] if log else "")[-200:]
