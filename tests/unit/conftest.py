"""Unit-test setup: keep sarracenia away from the real ~/.config/sr3 and ~/.cache/sr3.

sarracenia reads default.conf/admin.conf and the credentials database from the XDG directories
when it is first imported, so they are pointed at a private temporary directory *before* any
test module imports it (conftest.py is imported first).
"""

import gc
import os
import shutil
import tempfile

import pytest

_HOME = tempfile.mkdtemp(prefix="mailingest-unit-")
os.environ["XDG_CONFIG_HOME"] = os.path.join(_HOME, "config")
os.environ["XDG_CACHE_HOME"] = os.path.join(_HOME, "cache")
os.makedirs(os.environ["XDG_CONFIG_HOME"], exist_ok=True)
os.makedirs(os.environ["XDG_CACHE_HOME"], exist_ok=True)


def pytest_unconfigure(config):
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def _unfrozen_heap():
    """A decode worker's ``on_start`` freezes the heap (``gc.freeze``): give it back to the
    collector after each test, so a test process collects as usual."""
    yield
    gc.unfreeze()
