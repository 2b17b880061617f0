"""A private RabbitMQ broker on loopback, for integration tests and benchmarks.

Modelled on pytest-rabbitmq's process fixture: each instance has its own *base_dir*
(``HOME`` with the Erlang cookie, mnesia, logs, config), free ports for AMQP, Erlang
distribution and a private ``epmd``, and a node name derived from the AMQP port, so
several instances (parallel test sessions, a benchmark) run side by side without touching
a system broker.  ``guest``/``guest`` works because clients connect over loopback.

Example::

    with RabbitMQServer(tmp / "rabbitmq") as broker:
        connection = pika.BlockingConnection(pika.URLParameters(broker.url))

Start-up takes about 5-10 seconds (Erlang boot); share one broker per test session.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from pathlib import Path

from . import process
from .debian import ensure_packages, find_binary
from .ports import LOOPBACK, free_ports

logger = logging.getLogger(__name__)

PACKAGES = {"rabbitmq-server": "rabbitmq-server", "epmd": "erlang-base"}
#: Debian's /usr/sbin/rabbitmq-* wrappers switch to the rabbitmq user; call the real scripts.
DEBIAN_SCRIPTS = Path("/usr/lib/rabbitmq/bin")
_AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
_LOOPBACK_ERL = "-kernel inet_dist_use_interface {127,0,0,1}"
#: No scheduler busy-waiting: an idle Erlang VM otherwise spins on every core, and the test suite
#: runs one broker per pytest-xdist worker next to the tests themselves.
_NO_BUSY_WAIT_ERL = "+sbwt none +sbwtdcpu none +sbwtdio none"


class RabbitMQServer(process.ManagedServer):
    """A private RabbitMQ node; see the module docstring.

    :param base_dir: directory for HOME, config, mnesia and logs; created if needed.
    """

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.host = LOOPBACK
        self.port, self.dist_port, self.epmd_port = free_ports(3, self.host)
        self.user = "guest"
        self.password = "guest"
        self.node = f"mailingest{self.port}@localhost"
        self.log_dir = self.base_dir / "log"
        self.log_path = self.log_dir / f"{self.node}.log"
        self.console_path = self.base_dir / "rabbitmq.console.log"
        self._process: process.ServerProcess | None = None
        process.register(self)

    @property
    def url(self) -> str:
        return f"amqp://{self.user}:{self.password}@{self.host}:{self.port}/"

    def __repr__(self) -> str:
        return f"RabbitMQServer(node={self.node!r}, port={self.port}, base_dir={str(self.base_dir)!r})"

    def start(self, timeout: float = 90) -> None:
        """Start the broker and wait until a pika client can connect.

        :raises RuntimeError: naming the port, the log directory and the last log lines.
        """
        if self._process is not None and self._process.running():
            return
        self._prepare()
        self._process = process.ServerProcess(
            "RabbitMQ", [self._script("rabbitmq-server")], console_path=self.console_path,
            env=self._env(), cwd=self.base_dir)
        started = time.monotonic()
        self._process.start()
        why = process.wait_for(self._amqp_answers, self._process, timeout, interval=0.25)
        if why is None:
            why = self._pika_check()
        if why is not None:
            self.stop()
            raise RuntimeError(
                f"RabbitMQ node {self.node} did not start on {self.host}:{self.port}: {why}. "
                f"Logs in {self.log_dir}; last lines of {self.log_path}:\n{process.tail(self.log_path)}\n"
                f"Console output ({self.console_path}):\n{process.tail(self.console_path)}")
        logger.info("RabbitMQ ready in %.1fs: %r", time.monotonic() - started, self)

    def stop(self) -> None:
        """Stop the node, its child processes and its private epmd (idempotent)."""
        if self._process is None:
            return
        self._process.stop(grace=30)
        self._process = None
        epmd = find_binary("epmd")
        if epmd is not None:
            subprocess.run([epmd, "-kill"], env=self._env(), capture_output=True, timeout=30, check=False)

    def rabbitmqctl(self, *args: str) -> str:
        """Run ``rabbitmqctl -n <this node> ARGS`` and return its output.

        :raises RuntimeError: on a non-zero exit, with rabbitmqctl's output.
        """
        command = [self._script("rabbitmqctl"), "-n", self.node, *args]
        done = subprocess.run(command, env=self._env(), capture_output=True, text=True,
                              timeout=120, check=False, cwd=self.base_dir)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed with exit code {done.returncode} "
                               f"for node {self.node}: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    # -- internals -------------------------------------------------------------------------

    def _prepare(self) -> None:
        for name in ("home", "mnesia", "log"):
            (self.base_dir / name).mkdir(exist_ok=True)
        (self.base_dir / "enabled_plugins").write_text("[].\n")
        (self.base_dir / "rabbitmq-env.conf").write_text("# private instance: no settings\n")
        (self.base_dir / "rabbitmq.conf").write_text(
            "# Generated by tests/servers/rabbitmq.py for one private test instance.\n"
            f"listeners.tcp.default = {self.host}:{self.port}\n"
            "loopback_users.guest = true\n"
            "log.file.level = info\n"
            "log.console = false\n"
            "disk_free_limit.absolute = 1MB\n")

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RABBITMQ_", "ERL_EPMD_"))}
        env.update({
            "HOME": str(self.base_dir / "home"),  # the Erlang cookie lives here
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_USE_LONGNAME": "false",
            "RABBITMQ_NODE_IP_ADDRESS": self.host,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),  # a private epmd, killed on stop
            "ERL_EPMD_ADDRESS": self.host,
            "RABBITMQ_CONF_ENV_FILE": str(self.base_dir / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.base_dir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base_dir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base_dir / "enabled_plugins"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.base_dir / "plugins-expand"),
            "RABBITMQ_MNESIA_BASE": str(self.base_dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.log_dir),
            "RABBITMQ_PID_FILE": str(self.base_dir / "rabbitmq.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": f"{_LOOPBACK_ERL} {_NO_BUSY_WAIT_ERL}",
            "RABBITMQ_CTL_ERL_ARGS": _LOOPBACK_ERL,
        })
        return env

    def _script(self, name: str) -> str:
        ensure_packages(PACKAGES)
        debian = DEBIAN_SCRIPTS / name
        if debian.exists():
            return str(debian)
        return ensure_packages({name: PACKAGES["rabbitmq-server"]})[name]

    def _amqp_answers(self) -> bool:
        """True once the AMQP listener answers a protocol header with Connection.Start."""
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as sock:
                sock.sendall(_AMQP_HEADER)
                frame_type = sock.recv(1)
        except OSError:
            return False
        return frame_type == b"\x01"  # a METHOD frame: Connection.Start

    def _pika_check(self) -> str | None:
        import pika  # test dependency, imported only when a broker is started
        import pika.exceptions

        try:
            connection = pika.BlockingConnection(pika.URLParameters(self.url + "?socket_timeout=5"))
        except pika.exceptions.AMQPError as exc:
            return f"the AMQP port answers but a pika connection as {self.user} fails ({exc!r})"
        connection.close()
        return None
