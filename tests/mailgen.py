"""Sample mail for tests, the demo and the benchmarks (generated, never third-party data)."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid


def sample_message(index: int, *, attachments: bool = True, size_hint: int = 0, seed: int = 0) -> bytes:
    """A realistic message: text body, a CSV and a PDF-like binary attachment, CRLF line ends.

    ``size_hint`` pads the binary attachment to make the message roughly that many bytes.
    """
    rng = random.Random(seed * 1_000_003 + index)
    msg = EmailMessage()
    msg["From"] = "Station Météo <obs@example.org>"
    msg["To"] = "ingest@example.net"
    msg["Subject"] = f"Observations {index:05d} – résumé"
    msg["Date"] = format_datetime(datetime(2026, 11, 1, tzinfo=timezone.utc))
    msg["Message-ID"] = make_msgid(idstring=f"m{index}", domain="example.org")
    msg.set_content(f"Hourly observations, batch {index}.\nTempérature: {rng.randint(-30, 40)} °C\n")
    if attachments:
        rows = "\n".join(f"{h:02d}:00,{rng.uniform(-30, 40):.1f},{rng.randint(900, 1050)}" for h in range(24))
        msg.add_attachment(f"time,temp,pressure\n{rows}\n".encode(), maintype="text", subtype="csv",
                           filename=f"obs-{index:05d}.csv")
        blob_size = max(2048, size_hint - 2000) * 3 // 4 if size_hint else 4096
        blob = b"%PDF-1.4\n" + rng.randbytes(blob_size)
        msg.add_attachment(blob, maintype="application", subtype="pdf", filename=f"chart-{index:05d}.pdf")
    return msg.as_bytes(policy=SMTP)


def eight_bit_message(index: int) -> bytes:
    """A message whose body is raw 8-bit UTF-8 and a part with Content-Transfer-Encoding: binary."""
    boundary = f"b{index}"
    high = bytes(range(0x80, 0x100))
    return (
        f"From: obs@example.org\r\nTo: ingest@example.net\r\nSubject: 8bit {index}\r\n"
        f"Date: Sun, 01 Nov 2026 00:00:00 +0000\r\nMessage-ID: <8bit-{index}@example.org>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + "Grüße, 日本語のテキスト\r\n".encode() + (
        f"--{boundary}\r\nContent-Type: application/octet-stream; name=raw.bin\r\n"
        f"Content-Transfer-Encoding: binary\r\n\r\n"
    ).encode() + high + b"\x01\x02\x7f" + high + (f"\r\n--{boundary}--\r\n").encode()
