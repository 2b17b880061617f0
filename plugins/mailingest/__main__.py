"""``python -m mailingest``: the same as the ``mailingest`` command (see :py:mod:`mailingest.cli`)."""
import sys

from .cli import main

sys.exit(main())
