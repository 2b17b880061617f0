"""A download callback that does nothing: the sr3 floor of ``bench/run.py``.

Subscribing with ``callback nulldownload`` (``bench/plugins`` on PYTHONPATH) measures the
per-message cost of sr3 and RabbitMQ themselves: receive, accept, "download", ack, post.
"""

from __future__ import annotations

import logging
from typing import Any

from sarracenia.flowcb import FlowCB

logger = logging.getLogger(__name__)


class Nulldownload(FlowCB):
    """``download(msg)`` succeeds without fetching or writing anything."""

    def download(self, msg: Any, options: Any = None) -> bool:
        return True
