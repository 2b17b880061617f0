"""Child process of the poll-scale scenario: drive ``mailingest.poll.Poll`` cycle by cycle.

    python -m bench.pollcycle URL_WITH_PASSWORD CA_FILE STATE_DIR MAILDIR UID:GID NEW

Loads the callback the way sr3 does (``load_library`` on finalized options; no broker is
contacted), then prints one JSON line per cycle: first cycle (``mailAnnounceMax 0``: the whole mailbox), a
cycle with nothing new, a cycle after NEW messages were written into MAILDIR, and a first cycle
with a fresh state and the default ``mailAnnounceMax``.  Each line has the seconds poll() took
(plus after_post, which saves the state), the notices returned and the peak RSS of the cycle
(VmHWM, reset before each cycle through /proc/self/clear_refs).  The cycle with nothing new runs
IDLE_REPEAT times and reports the median: a single idle cycle takes a few milliseconds, within
this machine's noise.
"""

from __future__ import annotations

import json
import sys
import time
import types
import urllib.parse
from pathlib import Path
from statistics import median
from typing import Any

REPO = Path(__file__).resolve().parent.parent
#: idle cycles measured; their median is the figure (each takes milliseconds)
IDLE_REPEAT = 9
sys.path.insert(0, str(REPO))


def peak_rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        pass


def make_plugin(url: str, ca_file: str, state_dir: str, announce_max: int | None = None) -> Any:
    import sarracenia.config
    import sarracenia.flowcb
    from sarracenia.config.credentials import CredentialDB

    parts = urllib.parse.urlsplit(url)
    public = f"{parts.scheme}://{parts.username}@{parts.hostname}:{parts.port}/"
    o = sarracenia.config.no_file_config()
    o.component, o.config, o.action, o.no = "poll", "bench", "foreground", 0
    o.pollUrl = public
    o.post_broker = "amqp://guest@127.0.0.1/"
    o.post_exchange = "xs_bench_pollcycle"
    o.finalize("poll", "bench")
    o.credentials = CredentialDB()
    o.credentials._parse(url)
    o.mailCaFile = ca_file
    o.cfg_run_dir = state_dir
    if announce_max is not None:
        o.mailAnnounceMax = announce_max
    return sarracenia.flowcb.load_library("mailingest.poll", o)


def cycle(plugin: Any, label: str) -> dict[str, Any]:
    reset_peak()
    started = time.perf_counter()
    notices: list[Any] = plugin.poll()
    worklist = types.SimpleNamespace(ok=notices, incoming=[], rejected=[], failed=[], directories_ok=[])
    plugin.after_post(worklist)
    seconds = time.perf_counter() - started
    return {"cycle": label, "seconds": seconds, "notices": len(notices), "peak_rss_mb": peak_rss_mb()}


def idle_cycles(plugin: Any) -> dict[str, Any]:
    """IDLE_REPEAT cycles with nothing new: the median time, the highest notice count and peak."""
    runs = [cycle(plugin, "later, nothing new") for _ in range(IDLE_REPEAT)]
    return {"cycle": f"later, nothing new (median of {IDLE_REPEAT})",
            "seconds": median(r["seconds"] for r in runs),
            "notices": max(r["notices"] for r in runs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


def main(argv: list[str]) -> int:
    url, ca_file, state_dir, maildir, owner, new = argv
    from tests.mailgen import sample_message
    from tests.servers.maildir import write_message

    uid, gid = (int(x) for x in owner.split(":"))
    plugin = make_plugin(url, ca_file, state_dir, announce_max=0)  # the whole mailbox in one cycle
    print(json.dumps(cycle(plugin, "first")), flush=True)
    print(json.dumps(idle_cycles(plugin)), flush=True)
    for i in range(int(new)):
        write_message(Path(maildir), sample_message(900_000 + i, attachments=False), owner=(uid, gid))
    print(json.dumps(cycle(plugin, f"later, {new} new")), flush=True)
    plugin.on_stop()
    fresh = Path(state_dir) / "default-limit"
    fresh.mkdir(exist_ok=True)
    capped = make_plugin(url, ca_file, str(fresh))  # mailAnnounceMax left at its default
    print(json.dumps(cycle(capped, "first, default mailAnnounceMax")), flush=True)
    capped.on_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
