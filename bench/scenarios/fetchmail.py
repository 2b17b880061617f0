"""Scenario 4a, what users run today: fetchmail (Debian package) over the same mailbox.

``keep fetchall`` over imaps (server certificate pinned by fingerprint) with an MDA that
appends each message to one file (``cat >> FILE``).  The row compares fetchmail's messages per
second with mailingest end to end (scenario 3, best instance count, with decode and
announcements); the target is mailingest ≥ 2× fetchmail.
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
from typing import List, Optional

from bench.context import BenchContext, mb
from bench.report import Row, ratio, target_check

logger = logging.getLogger(__name__)

NAME = "fetchmail"
NUMBER = 4
TITLE = "fetchmail"
TARGET = 2.0


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


def rc_text(ctx: BenchContext, account, mbox: Path) -> str:
    server = account.server
    return (
        "set no syslog\n"
        f"poll {server.host} with protocol IMAP service {server.imaps_port}\n"
        f"  user \"{account.user}\" there with password \"{account.password}\" is \"root\" here\n"
        f"  options keep fetchall ssl no sslcertck sslfingerprint \"{fingerprint(server.server_pem)}\"\n"
        f"  mda \"cat >> {mbox}\"\n"
    )


def fetch_all(ctx: BenchContext, account, work: Path) -> tuple:
    """Run fetchmail once; returns (seconds, bytes appended, exit status, last output lines)."""
    work.mkdir(parents=True, exist_ok=True)
    mbox = work / "mbox"
    rc = work / "fetchmailrc"
    rc.write_text(rc_text(ctx, account, mbox))
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


def run(ctx: BenchContext) -> List[Row]:
    if shutil.which("fetchmail") is None:
        return [Row("4a. fetchmail, keep fetchall, MDA appends to a file", "—", "—", "not installed", "—",
                    "", "apt-get install fetchmail")]
    n = ctx.messages
    account = ctx.loaded_account("fetchmail")  # its own copy: fetchmail marks mail \Seen
    elapsed, size, status, tail = fetch_all(ctx, account, ctx.work / "fetchmail")
    theirs = n / elapsed
    best = ctx.results.get("e2e_best")
    ours_rate: Optional[float] = best[0] if best else None
    decode = ctx.results.get("e2e_decode")
    ours = (f"{ours_rate:.0f} msg/s (end to end, instances {best[1]}"
            f"{'' if decode else ', no decode yet'})") if best else "run scenario e2e for our figure"
    value = ours_rate / theirs if ours_rate else None
    note = (f"fetchmail exit {status}, {mb(size):.0f} MB appended in {elapsed:.1f} s "
            f"({mb(size) / elapsed:.1f} MB/s); it only fetches and appends: no decode, no announcement.")
    if status not in (0, 1):  # 1 = no new mail
        note += f" fetchmail said: {tail[:200]}"
    size = f"{n} × {ctx.pool_bytes / n / 1000:.0f} KB"
    return [Row("4a. vs fetchmail (keep fetchall, imaps, MDA `cat >> file`)", size, ours, f"{theirs:.0f} msg/s",
                ratio(ours_rate, theirs), target_check(value, TARGET, at_least=True, label="× fetchmail"), note)]
