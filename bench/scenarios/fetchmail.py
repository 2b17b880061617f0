"""Scenario 4a/4d, what users run today: fetchmail (Debian package) over the same mailbox.

``keep fetchall`` over imaps (server certificate pinned by fingerprint), twice, each on its own
copy of the end-to-end mailbox (fetchmail marks mail ``\\Seen``):

* 4a, bare: an MDA that appends each message to one file (``cat >> FILE``): fetchmail's floor,
  no fsync, no decode;
* 4d, the same work as mailingest end to end (issue 18): an MDA (:data:`MDA_SCRIPT`) that
  writes each message to a file of its own, fsyncs it and its directory, and runs ripmime into
  a directory per message, as operators wire fetchmail today.

Both rows compare with mailingest end to end (scenario 3, best instance count, with decode
and announcements); targets: ≥ 1× bare fetchmail and ≥ 3× the fetchmail + ripmime pipeline.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import ssl
import subprocess
import time
from pathlib import Path

from bench.context import BenchContext, mb
from bench.report import Row, ratio, target_check
from bench.scenarios import end_to_end

logger = logging.getLogger(__name__)

NAME = "fetchmail"
NUMBER = 4
TITLE = "fetchmail"
TARGET = 1.0
#: mailingest end to end against fetchmail + an MDA doing the same work (4d)
SAME_WORK_TARGET = 3.0

#: the MDA of row 4d: each message durably in a file of its own, then ripmime into a directory
#: per message (``sync FILE`` is coreutils' fsync of that file or directory)
MDA_SCRIPT = """#!/bin/sh
set -eu
store="$1"
name=$(date +%s%N).$$
cat > "$store/.$name.tmp"
sync "$store/.$name.tmp"
mv "$store/.$name.tmp" "$store/$name.eml"
sync "$store"
mkdir "$store/$name.parts"
exec ripmime -i "$store/$name.eml" -d "$store/$name.parts"
"""


def fingerprint(server_pem: Path) -> str:
    """MD5 fingerprint of the server certificate, as fetchmail's ``sslfingerprint`` wants it.

    fetchmail 6.4 does not match the IP/DNS subjectAltNames of the test certificate (it has no
    CN), so the certificate is pinned instead of checked against the CA.
    """
    pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", server_pem.read_text(), re.S)
    if pem is None:
        raise RuntimeError(f"no certificate in {server_pem}")
    digest = hashlib.md5(ssl.PEM_cert_to_DER_cert(pem.group(0))).hexdigest().upper()  # noqa: S324 - fetchmail's format
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def rc_text(ctx: BenchContext, account, mda: str) -> str:
    server = account.server
    return (
        "set no syslog\n"
        f"poll {server.host} with protocol IMAP service {server.imaps_port}\n"
        f"  user \"{account.user}\" there with password \"{account.password}\" is \"root\" here\n"
        f"  options keep fetchall ssl no sslcertck sslfingerprint \"{fingerprint(server.server_pem)}\"\n"
        f"  mda \"{mda}\"\n"
    )


def fetch_all(ctx: BenchContext, account, work: Path, mda: str | None = None) -> tuple:
    """Run fetchmail once, with *mda* (default: append to ``work/mbox``); returns (seconds,
    bytes appended to the mbox, exit status, last output lines)."""
    work.mkdir(parents=True, exist_ok=True)
    mbox = work / "mbox"
    rc = work / "fetchmailrc"
    rc.write_text(rc_text(ctx, account, mda or f"cat >> {mbox}"))
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(work), FETCHMAILHOME=str(work))
    command = [shutil.which("fetchmail") or "fetchmail", "-f", str(rc), "--nodetach", "--nosyslog",
               "--pidfile", str(work / "fetchmail.pid"), "-i", str(work / "fetchids")]
    try:
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600, check=False)
        elapsed = time.perf_counter() - started
    finally:
        rc.unlink()  # it holds the password in clear

    size = mbox.stat().st_size if mbox.exists() else 0
    tail = " / ".join((done.stdout + done.stderr).strip().splitlines()[-2:])
    return elapsed, size, done.returncode, tail


def same_work(ctx: BenchContext) -> tuple:
    """Row 4d's run: (seconds, messages stored, files ripmime wrote, exit status, output tail)."""
    work = ctx.work / "fetchmail-mda"
    store = work / "store"
    store.mkdir(parents=True, exist_ok=True)
    script = work / "store-and-rip.sh"
    script.write_text(MDA_SCRIPT)
    script.chmod(0o755)
    account = ctx.loaded_account("fetchmail-mda")  # its own copy: fetchmail marks mail \Seen
    elapsed, _size, status, tail = fetch_all(ctx, account, work, mda=f"{script} {store}")
    stored = sum(1 for p in store.glob("*.eml"))
    extracted = sum(1 for p in store.glob("*.parts/*") if p.is_file())
    return elapsed, stored, extracted, status, tail


def run(ctx: BenchContext) -> list[Row]:
    if shutil.which("fetchmail") is None:
        return [Row("4a. fetchmail, keep fetchall, MDA appends to a file", "—", "—", "not installed", "—",
                    "", "apt-get install fetchmail")]
    n = ctx.messages
    size = f"{n} × {ctx.pool_bytes / n / 1000:.0f} KB"
    # in full mode the median of as many runs as the end-to-end row at instances 1 has (each on its
    # own copy: fetchmail marks mail \Seen)
    runs = sorted((fetch_all(ctx, ctx.loaded_account("fetchmail" + (f"-{k}" if k else "")),
                             ctx.work / f"fetchmail{k or ''}")
                   for k in range(1 if ctx.quick else end_to_end.REPEATS)), key=lambda run: run[0])
    elapsed, appended, status, tail = runs[len(runs) // 2]
    theirs = n / elapsed
    best = ctx.results.get("e2e_best")
    ours_rate: float | None = best[0] if best else None
    decode = ctx.results.get("e2e_decode")
    ours = (f"{ours_rate:.0f} msg/s (end to end, instances {best[1]}"
            f"{'' if decode else ', no decode yet'})") if best else "run scenario e2e for our figure"
    one = ctx.results.get("e2e_rate_1")
    if best and one and best[1] != 1:
        ours += f"; {one:.0f} msg/s at instances 1"
    note = (f"fetchmail exit {status}, {mb(appended):.0f} MB appended in {elapsed:.1f} s "
            f"({mb(appended) / elapsed:.1f} MB/s); it only fetches and appends: no fsync, no decode, "
            f"no announcement.")
    floor = ctx.results.get("floor_rate_parallel")
    if floor and floor[0]:
        note += (f" sr3 itself, with a download that does nothing and one post per message, does {floor[0]:.0f} "
                 f"msg/s at instances {floor[1]} (row 2c): {floor[0] / theirs:.2f}× fetchmail.")
    if len(runs) > 1:
        note += " The median of %d runs (%s)." % (len(runs), ", ".join(f"{run[0]:.1f} s" for run in runs))
    if status not in (0, 1):  # 1 = no new mail
        note += f" fetchmail said: {tail[:200]}"
    rows = [Row("4a. vs bare fetchmail (keep fetchall, imaps, MDA `cat >> file`)", size, ours, f"{theirs:.0f} msg/s",
                ratio(ours_rate, theirs), target_check(ours_rate / theirs if ours_rate else None, TARGET,
                                                       at_least=True, label="× fetchmail"), note)]
    if shutil.which("ripmime") is None:
        return rows + [Row("4d. same work: fetchmail + MDA (own file, fsync, ripmime)", size, ours, "ripmime not "
                           "installed", "—", "", "apt-get install ripmime")]
    elapsed, stored, extracted, status, tail = same_work(ctx)
    theirs = n / elapsed
    note = (f"fetchmail exit {status}; {stored} messages stored, {extracted} files extracted by ripmime in "
            f"{elapsed:.1f} s; MDA per message: write its own file, fsync it and the directory, ripmime into a "
            f"directory of its own (bench/scenarios/fetchmail.py, MDA_SCRIPT); no announcement.")
    if status not in (0, 1):
        note += f" fetchmail said: {tail[:200]}"
    rows.append(Row("4d. same work: vs fetchmail + MDA (own file, fsync, ripmime per message)", size, ours,
                    f"{theirs:.0f} msg/s", ratio(ours_rate, theirs),
                    target_check(ours_rate / theirs if ours_rate else None, SAME_WORK_TARGET, at_least=True,
                                 label="× fetchmail + ripmime"), note))
    return rows
