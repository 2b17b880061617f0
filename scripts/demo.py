"""The main job, end to end, against private local servers.

Starts a private Dovecot and RabbitMQ on free loopback ports, delivers sample mail with
attachments, runs the example poll (examples/poll/mail.conf) and the example subscriber that
downloads and decodes (examples/subscribe/decodeemail.conf) with real `sr3 foreground`, and
prints where the files landed.  Everything lives under ./demo-output (or --output DIR); the
servers stop when the demo ends.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.helpers import eml_files, make_home, wait_until  # noqa: E402
from tests.mailgen import sample_message  # noqa: E402
from tests.servers import DovecotServer, RabbitMQServer  # noqa: E402
from tests.sr3env import NoticeCollector  # noqa: E402

logger = logging.getLogger("demo")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20, help="sample messages to deliver (default 20)")
    parser.add_argument("--output", type=Path, default=REPO / "demo-output", help="work directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="demo: %(message)s")
    logging.getLogger("pika").setLevel(logging.WARNING)
    out = args.output.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    with DovecotServer(out / "dovecot") as dovecot, RabbitMQServer(out / "rabbitmq") as rabbitmq:
        account = dovecot.new_account("alice")
        logger.info("Dovecot on %s (imaps %d), RabbitMQ on %s:%d", dovecot.host, dovecot.imaps_port,
                    rabbitmq.host, rabbitmq.port)
        for i in range(args.messages):
            account.deliver(sample_message(i))
        logger.info("delivered %d messages (each with a CSV and a PDF attachment) to %s", args.messages, account.user)

        home = make_home(out, rabbitmq, account)
        home.add_example("examples/poll/mail.conf")
        home.add_example("examples/subscribe/decodeemail.conf")
        # The README's order: the poll's exchange, then the subscriber's queue bound to it.
        home.run("declare", "poll/mail")
        home.run("declare", "subscribe/decodeemail")
        parts = NoticeCollector(rabbitmq.url, "xs_mail_parts")
        mail_dir = out / "mail"
        started = time.monotonic()
        with home.foreground("subscribe/decodeemail"):
            with home.foreground("poll/mail"):
                wait_until(lambda: len(eml_files(mail_dir)) >= args.messages, timeout=120, what="downloads")
            wait_until(lambda: len(parts.drain(settle=0.3)) >= args.messages * 5, timeout=120,
                       what="decoded files announced")
        elapsed = time.monotonic() - started
        parts.close()

    messages = eml_files(mail_dir)
    csvs = sorted(mail_dir.rglob("*.parts/*.csv"))
    # <host>+<port>/<user>/<folder>/ (the relPath's directories, docs/design.md#message-identity)
    folder = messages[0].parent if messages else mail_dir
    print()
    print(f"Done in {elapsed:.1f} s: {len(messages)} messages downloaded and decoded.")
    print(f"  raw messages     {folder}/<UIDVALIDITY>.<UID>.eml  (<host>+<port>/<user>/<folder>/)")
    print(f"  decoded parts    {folder}/<UIDVALIDITY>.<UID>.parts/  e.g. {csvs[0].relative_to(out) if csvs else '-'}")
    print(f"  notices          {len(parts.notices)} on exchange xs_mail_parts (one per file written)")
    print(f"  sr3 configs      {home.config_dir}")
    print(f"  logs             {home.logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
