"""Where the shared corpus is (``../shared/corpus`` beside the checkout, or ``$MAILINGEST_CORPUS``,
as in the fuzz suite) and how the decode rows hand its messages to one ``mailingest decode``.

Kept free of the servers' imports: ``bench/decodespeed.py`` loads it in the processes it measures.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("MAILINGEST_CORPUS") or REPO.parent / "shared" / "corpus")
MESSAGES = CORPUS / "messages"


def linked(files: Iterable[Path], inbox: Path) -> list[str]:
    """Symbolic links in *inbox* to corpus *files*, named after their corpus path (``a__b.eml``) so
    that one ``mailingest decode -o DIR`` over all of them gives each message its own output."""
    inbox.mkdir(parents=True, exist_ok=True)
    links = []
    for f in files:
        link = inbox / str(f.relative_to(MESSAGES)).replace("/", "__")
        if not link.exists():
            link.symlink_to(f)
        links.append(str(link))
    return links
