# SPDX-License-Identifier: MIT
"""Listeners the DemoServer opens for a client: a TCP port for each granted ``tcpip-forward``
(``ssh -R``) and a Unix socket for its forwarded agent (``ssh -A``).  Each connection to one
becomes a channel the server opens to the client (see ``OpenedForwardHandler``)."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import Callable

from pylibssh_server import POLLIN, SessionEvent

__all__ = ["LOOPBACK_NAMES", "Listener", "bind_address"]

#: Bind addresses a client may name for a loopback listener (sshd's ``GatewayPorts no``).
LOOPBACK_NAMES = ("", "localhost", "127.0.0.1", "::1")
#: Connections accepted per readiness of one listener: a flood waits in the kernel's backlog.
ACCEPT_BATCH = 16


def bind_address(address: str) -> str:
    """Where a listener for ``address`` binds: ``""`` and ``localhost`` mean IPv4 loopback."""
    return "127.0.0.1" if address in ("", "localhost") else address


OnConnection = Callable[["Listener", socket.socket, tuple[str, int]], None]


class Listener:
    """A listening socket polled with the client's session; accepted connections are handed
    to ``on_connection(listener, sock, peer)`` (from the poll, so the handler only queues
    them).  ``address`` is the bind address the client asked for (``""`` for the agent)."""

    def __init__(self, sock: socket.socket, event: SessionEvent, on_connection: OnConnection,
                 *, address: str = "", path: str | None = None,
                 directory: str | None = None) -> None:
        self.address = address
        self.sock = sock
        self.event = event
        self.on_connection = on_connection
        self.path = path
        self.directory = directory
        sock.setblocking(False)
        self.fd: int = sock.fileno()
        event.add_fd(self.fd, self._ready, POLLIN)
        self.closed: bool = False

    @classmethod
    def tcp(cls, address: str, port: int, event: SessionEvent,
            on_connection: OnConnection) -> Listener:
        """Listen on ``address:port`` (0: a free port); OSError if it cannot be bound."""
        host = bind_address(address)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(64)
            return cls(sock, event, on_connection, address=address)
        except BaseException:
            sock.close()
            raise

    @classmethod
    def agent(cls, event: SessionEvent, on_connection: OnConnection) -> Listener:
        """A Unix socket for ``SSH_AUTH_SOCK``: mode 0600 in a private (0700) temporary
        directory, both removed by :meth:`close`."""
        directory = tempfile.mkdtemp(prefix="demo-server-agent-")
        path = os.path.join(directory, "agent.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            os.chmod(path, 0o600)
            sock.listen(16)
            return cls(sock, event, on_connection, path=path, directory=directory)
        except BaseException:
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(path)
            os.rmdir(directory)
            raise

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1]) if self.path is None else 0

    def _ready(self, fd: int, revents: int) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # out of fds: the connection waits in the backlog for the next poll
            if self.path is not None:
                peer = ("", 0)  # a Unix socket peer has no address
            self.on_connection(self, conn, (str(peer[0]), int(peer[1])))

    def close(self) -> None:
        """Stop listening; idempotent.  Connections already accepted go on."""
        if self.closed:
            return
        self.closed = True
        if not self.event.closed:
            self.event.remove_fd(self.fd)
        self.sock.close()
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        if self.directory is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self.directory)
