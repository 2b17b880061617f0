"""A test-only sr3 callback that holds a worker at one point of its pass, for a test to kill it there.

Listed between ``callback mailingest.download`` and ``callback mailingest.decode`` (as
``flowCallback tests.sr3hold.HoldBeforeDecode``; sr3 needs the repository on its PYTHONPATH), its
``after_work`` runs once the pass's downloads are durable and before the decode starts.  While the
file named by ``$MAILINGEST_TEST_HOLD`` exists, it creates ``<that file>.reached`` and waits for
the file to go; without it, it does nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from sarracenia.flowcb import FlowCB

HOLD_VARIABLE = "MAILINGEST_TEST_HOLD"


def reached(hold: Path) -> Path:
    """The file a held worker creates once it is held."""
    return hold.with_name(hold.name + ".reached")


class HoldBeforeDecode(FlowCB):  # type: ignore[misc]  # sarracenia has no type hints
    def after_work(self, worklist: Any) -> None:
        hold = os.environ.get(HOLD_VARIABLE)
        if not hold or not worklist.ok or not os.path.exists(hold):
            return
        reached(Path(hold)).touch()
        while os.path.exists(hold):  # until the test kills this worker or lifts the hold
            time.sleep(0.02)
