"""Two "hosts" on one machine for the highly available poll specs: network namespaces.

Each :class:`Host` is a network namespace with its own loopback, where a virtual IP can be
added and removed (``ip addr add/del <vip>/32 dev lo``), so sr3's ``vip`` check
(netifaces, per namespace) sees it on one host and not on the other, exactly as on two
machines.  The test servers (Dovecot, RabbitMQ) listen on 127.0.0.1 of the root namespace; a
:class:`Host` makes them reachable at the same 127.0.0.1:port from inside its namespace with a
small in-process forwarder: the listening socket is created inside the namespace (``setns`` on
the forwarder's thread, then back), every accepted connection is relayed to the root
namespace's 127.0.0.1:port.  All traffic stays on loopback.

Needs root (``ip netns``); :func:`netns_available` tells whether this machine allows it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterable

import pytest

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def netns_available() -> bool:
    if os.geteuid() != 0:
        return False
    name = f"mi-probe-{uuid.uuid4().hex[:6]}"
    try:
        created = subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode == 0
    except FileNotFoundError:  # no `ip` (Debian package iproute2)
        return False
    if created:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return created


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


class Host:
    """A network namespace with its loopback up and the given root-namespace ports forwarded."""

    def __init__(self, ports: Iterable[int]) -> None:
        self.name = f"mi-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up"], check=True)
        self._closing = False
        self._listeners: list[socket.socket] = []
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        try:
            for port in ports:
                self._forward(port)
        except BaseException:
            self.close()  # never leave a namespace behind
            raise

    @property
    def prefix(self) -> list[str]:
        """The command prefix that runs a program on this host."""
        return ["ip", "netns", "exec", self.name]

    def add_address(self, address: str) -> None:
        subprocess.run([*self.prefix, "ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True)

    def remove_address(self, address: str) -> None:
        subprocess.run([*self.prefix, "ip", "addr", "del", f"{address}/32", "dev", "lo"], check=True)

    def close(self) -> None:
        self._closing = True
        with self._lock:
            for sock in self._listeners + self._connections:
                with contextlib.suppress(OSError):
                    sock.close()
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    # -- forwarding ----------------------------------------------------------------------------
    def _forward(self, port: int) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []

        def listen() -> None:
            root = os.open("/proc/self/task/%d/ns/net" % threading.get_native_id(), os.O_RDONLY)
            target = os.open(f"/var/run/netns/{self.name}", os.O_RDONLY)
            try:
                _setns(target)
                try:
                    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    listener.bind(("127.0.0.1", port))
                    listener.listen(64)
                finally:
                    _setns(root)  # this thread connects in the root namespace from now on
            except BaseException as exc:  # reported to the constructor
                failure.append(exc)
                ready.set()
                return
            finally:
                os.close(root)
                os.close(target)
            with self._lock:
                self._listeners.append(listener)
            ready.set()
            while not self._closing:
                try:
                    inside, _ = listener.accept()
                except OSError:
                    return
                try:
                    outside = socket.create_connection(("127.0.0.1", port))
                except OSError:
                    inside.close()
                    continue
                with self._lock:
                    self._connections += [inside, outside]
                for a, b in ((inside, outside), (outside, inside)):
                    threading.Thread(target=_pump, args=(a, b), daemon=True).start()

        threading.Thread(target=listen, name=f"netns-forward-{port}", daemon=True).start()
        ready.wait(10)
        if failure:
            raise failure[0]


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def skip_without_netns() -> pytest.MarkDecorator:
    """Skip where network namespaces are not available (not root, no ``ip netns``), except in CI
    (``CI`` set): there the tests run and fail loudly, as every test that cannot start its servers."""
    return pytest.mark.skipif(not netns_available() and not os.environ.get("CI"),
                              reason="needs root and ip netns (network namespaces)")
