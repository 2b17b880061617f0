"""One module per scenario; each has ``NAME``, ``TITLE`` and ``run(ctx) -> list[Row]``."""

from __future__ import annotations

from types import ModuleType

from bench.scenarios import (
    decode,
    end_to_end,
    fetchmail,
    idle_latency,
    memory,
    poll_scale,
    raw_imap,
    sr3_builtin,
    sr3_floor,
)

#: in run order: later scenarios reuse figures of earlier ones (ctx.results)
ALL: list[ModuleType] = [raw_imap, sr3_floor, end_to_end, memory, fetchmail, sr3_builtin, poll_scale, idle_latency,
                         decode]
BY_NAME: dict[str, ModuleType] = {m.NAME: m for m in ALL}
