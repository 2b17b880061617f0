"""An after_work callback that posts four more notices per message, as ``mailingest.decode``
does for a message with one attachment (body.txt, body.html, the attachment, metadata.json),
without decoding or writing anything: with ``callback nulldownload`` before it, row 2d of
``bench/run.py``, the sr3 floor of the whole pipeline's five posts per message.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from sarracenia.flowcb import FlowCB

logger = logging.getLogger(__name__)

#: the extra notices per message: the decoded files of the bench's messages
EXTRA_POSTS = 4


class Nullannounce(FlowCB):
    """``after_work``: each notice in ``worklist.ok`` gets :data:`EXTRA_POSTS` shallow copies
    under relPaths of their own (``<relPath>.parts/part-<i>``), posted by sr3 like the decode's."""

    def after_work(self, worklist: Any) -> None:
        extra = []
        for msg in worklist.ok:
            for i in range(EXTRA_POSTS):
                part = copy.copy(msg)
                part["relPath"] = f"{msg['relPath']}.parts/part-{i}"
                part["_deleteOnPost"] = set(msg.get("_deleteOnPost", ()))
                extra.append(part)
        worklist.ok.extend(extra)
