"""Private, throw-away servers for integration tests and benchmarks.

Plain classes, no pytest dependency: ``tests/conftest.py`` wraps them in fixtures and
``bench/`` scripts use them directly (with the repository root on ``sys.path``)::

    from tests.servers import DovecotServer, RabbitMQServer

Each server binds free ports on 127.0.0.1 only, keeps every file under its own base
directory, installs its Debian packages when missing (as root), and is stopped at
interpreter exit if the caller forgot.
"""

from .dovecot import DovecotAccount, DovecotServer
from .ports import free_port
from .rabbitmq import RabbitMQServer

__all__ = ["DovecotAccount", "DovecotServer", "RabbitMQServer", "free_port"]
