"""Scenario 3c, subscriber memory over many messages (issue 18): a download + decode subscriber
(``instances 1``, its decode process included) works through 10,000 messages (quick: 100), one
of them much larger than the rest (10 MB; quick: 1 MB) half way through, while its resident
memory is sampled.

Reported: the RSS once a tenth of the messages is done (before the large one), the RSS at the
end, the steady peak (``VmHWM`` before the large message: what the subscriber needs for the
ordinary ones, its working buffers included, the constant of the target) and the peak.  Targets:
flat (the end within 20 MB of the RSS after a tenth) and a peak within the steady peak plus 1.5×
the largest message.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from bench.context import BenchContext, mb
from bench.report import Row
from bench.sr3run import Sr3Instances
from bench.subscriber import exchange_for, poll_feed, run_subscriber
from tests.mailgen import sample_message

logger = logging.getLogger(__name__)

NAME = "memory"
NUMBER = 3
TITLE = "subscriber memory over many messages"
MESSAGES, QUICK_MESSAGES = 10_000, 100
LARGEST, QUICK_LARGEST = 10_000_000, 1_000_000
#: files announced per sample message: the .eml, body.txt, the CSV, the PDF, metadata.json
ANNOUNCED_PER_MESSAGE = 5
#: the end may be this much above the baseline and still count as flat
FLAT_MB = 20.0
PEAK_FACTOR = 1.5
#: the steady peak is read this many messages before the large one (sr3 passes of up to `batch`)
STEADY_MARGIN = 500


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of *pid* in kB ({} once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            return {line.split(":")[0]: int(line.split()[1]) for line in status
                    if line.startswith(("VmRSS:", "VmHWM:"))}
    except (OSError, ValueError, IndexError):
        return {}


def _children(pid: int) -> list[int]:
    """The child processes of *pid* (a worker's decode process, ``mailDecodeProcess``)."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as children:
                found.extend(int(child) for child in children.read().split())
    except (OSError, ValueError):
        pass
    return found


def _worker_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a worker *pid* and its children, summed (the sum of the peaks bounds
    the peak of the sum: the figure is never lower than the real one)."""
    total: dict[str, int] = {}
    for process in (pid, *_children(pid)):
        for key, value in _status(process).items():
            total[key] = total.get(key, 0) + value
    return total


def _emls(directory: Path) -> int:
    """.eml files written so far (the relPath layout puts them three levels down)."""
    count = 0
    for _root, dirs, names in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".") and not d.endswith(".parts")]
        count += sum(name.endswith(".eml") for name in names)
    return count


class Sampler(threading.Thread):
    """Samples (messages written, RSS kB, HWM kB) of the instances of one subscriber every
    *every* seconds, each worker's processes summed; and the summed RSS alone every *fast*
    seconds (two small /proc reads), its highest value kept with the messages written then
    (:attr:`rss_peaks`): a worker with a decode process has no kernel counter for the peak of
    the sum, and the sum of the two peaks (``VmHWM``) counts twice a message that the worker
    holds for its download and the process a pass later for its decode."""

    def __init__(self, instances: Sr3Instances, directory: Path, every: float = 0.5, fast: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.instances, self.directory, self.every, self.fast = instances, directory, every, fast
        self.samples: list[tuple[int, int, int]] = []
        #: (messages written at the last slow sample, summed RSS kB) at each new high
        self.rss_peaks: list[tuple[int, int]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        done, next_slow = 0, time.monotonic() + self.every
        while not self.stopping.wait(self.fast):
            pids = self.instances.pids()
            if time.monotonic() >= next_slow:
                next_slow += self.every
                status = [s for s in (_worker_status(pid) for pid in pids) if s]
                if status:
                    done = _emls(self.directory)
                    self.samples.append((done, max(s.get("VmRSS", 0) for s in status),
                                         max(s.get("VmHWM", 0) for s in status)))
            rss = max((_worker_status(pid).get("VmRSS", 0) for pid in pids), default=0)
            if rss and (not self.rss_peaks or rss > self.rss_peaks[-1][1]):
                self.rss_peaks.append((done, rss))

    def stop(self) -> None:
        self.stopping.set()
        self.join()


def run(ctx: BenchContext) -> list[Row]:
    n = QUICK_MESSAGES if ctx.quick else MESSAGES
    largest_size = QUICK_LARGEST if ctx.quick else LARGEST
    pool = ctx.pool()
    account = ctx.dovecot.new_account(prefix="memory")
    ctx.dovecot.deliver_many(account.user, (pool[i % len(pool)] for i in range(n // 2)))
    largest = sample_message(n, size_hint=largest_size)
    ctx.dovecot.deliver_many(account.user, [largest])
    ctx.dovecot.deliver_many(account.user, (pool[i % len(pool)] for i in range(n // 2, n)))
    total = n + 1
    name = "memory"
    home = ctx.sr3_home(name, account)
    directory = ctx.work / "out" / name
    sampler = Sampler(Sr3Instances(home, f"subscribe/{name}", home.env), directory)
    sampler.start()
    try:
        result = run_subscriber(ctx, home, name, ["mailingest.download", "mailingest.decode"], instances=1,
                                feed=poll_feed(ctx, home, exchange_for(name), "mailAnnounceMax 0"), notices=total,
                                expected=total * ANNOUNCED_PER_MESSAGE, timeout=max(600.0, total * 0.5))
    finally:
        sampler.stop()
    size = f"{total} msgs ({n} × {ctx.pool_bytes / len(pool) / 1000:.0f} KB, 1 × {mb(len(largest)):.0f} MB)"
    title = f"3c. subscriber memory: download + decode of {total:,} messages, instances 1"
    samples = sampler.samples
    if not samples or result.elapsed is None:
        return [Row(title, size, "did not finish" if result.elapsed is None else "no samples", "—", "—", "", "")]
    base = next((rss for done, rss, _hwm in samples if done >= n // 10), samples[0][1]) / 1024
    end = samples[-1][1] / 1024
    before_large = n // 2 - min(STEADY_MARGIN, n // 10)
    # the peaks of the summed RSS sampled every 20 ms; the summed VmHWM as an upper bound
    peak = max(rss for _done, rss in sampler.rss_peaks) / 1024
    steady = max((rss for done, rss in sampler.rss_peaks if done < before_large),
                 default=sampler.rss_peaks[0][1]) / 1024
    bound = max(hwm for _done, _rss, hwm in samples) / 1024
    bound_steady = max((hwm for done, _rss, hwm in samples if done < before_large), default=samples[0][2]) / 1024
    allowed = steady + PEAK_FACTOR * mb(len(largest))
    flat = end <= base + FLAT_MB
    target = ("flat: met" if flat else "flat: **missed**") + (
        f"; peak ≤ {steady:.0f} + {PEAK_FACTOR:g} × {mb(len(largest)):.0f} MB: "
        + ("met" if peak <= allowed else f"**missed by {peak - allowed:.0f} MB**"))
    return [Row(title, size,
                f"peak {peak:.0f} MB, {steady:.0f} MB before the large message; {base:.0f} MB after {n // 10:,} "
                f"messages, {end:.0f} MB at the end",
                f"largest message {mb(len(largest)):.1f} MB", f"{(peak - steady) / mb(len(largest)):.1f}× largest",
                target, f"the worker and its decode process (`mailDecodeProcess`) summed: peak = highest summed "
                f"VmRSS, sampled every 20 ms; the steady peak is the same {before_large:,} messages in (the constant: "
                f"the working buffers of ordinary passes, e.g. a pass's prefetched small messages and a second "
                f"interpreter); ratio = (peak − steady peak) / largest message; the sum of each process's VmHWM, "
                f"which counts the large message twice (the worker downloads it, the process decodes it a pass "
                f"later), reads {bound:.0f} MB against {bound_steady:.0f} MB ({(bound - bound_steady) / mb(len(largest)):.1f}× "
                f"largest); flat = end − RSS after a tenth ({len(samples)} samples every 0.5 s); "
                f"{total / result.elapsed:.0f} msg/s.")]
