"""Where a subscriber's time goes, pass by pass: add ``callback passclock`` after its download.

sr3 runs a subscriber in passes (gather up to ``batch`` notices, download them, post, then sleep
what is left of ``sleep``, 0.1 s).  At the end of each pass's work (``after_work``) this callback
appends one JSON line to the file named by the environment variable :data:`ENV` (the bench sets it
with ``declare env`` in the subscriber's config): the notices of the pass, the wall clock, and
for the flow's own thread (the one that runs every callback) its CPU time and the time it spent
runnable but waiting for a CPU (``/proc/thread-self/schedstat``), all cumulative.  Differences
between consecutive lines give each pass's period, CPU and run-queue wait (``bench.passes``).
Reading one small /proc file per pass is all it costs.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from sarracenia.flowcb import FlowCB

ENV = "MAILINGEST_BENCH_PASSCLOCK"  # bench.passes.ENV: this module is loaded by sr3, without bench
SCHEDSTAT = "/proc/thread-self/schedstat"


class Passclock(FlowCB):
    def __init__(self, options: Any) -> None:
        super().__init__(options)
        path = os.environ.get(ENV)
        self._out = open(path, "a", encoding="utf-8", buffering=1) if path else None  # noqa: SIM115 (open for the flow's life)
        self._notices = 0

    def after_accept(self, worklist: Any) -> None:
        self._notices = len(worklist.incoming)

    def after_work(self, worklist: Any) -> None:
        if self._out is None:
            return
        try:
            with open(SCHEDSTAT, encoding="ascii") as handle:
                on_cpu, waiting, _slices = (int(field) for field in handle.read().split())
        except (OSError, ValueError):  # no schedstat here: wall clock and CPU only
            on_cpu = waiting = -1
        self._out.write(json.dumps({"notices": self._notices, "wall": time.monotonic(),
                                    "cpu": time.thread_time(), "runqueue_ns": waiting, "oncpu_ns": on_cpu}) + "\n")
        self._notices = 0  # a pass that accepts nothing may not call after_accept

    def on_stop(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

