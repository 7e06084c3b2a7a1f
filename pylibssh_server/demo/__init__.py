# SPDX-License-Identifier: MIT
"""The DemoServer: a real SSH server for testing SSH clients (see ``DemoServer``).

Built on the public API of ``pylibssh_server`` only, in layers (each module imports only
those above it in this list, so the demo has no import cycle):

- ``files``, ``faults``, ``commands``, ``certs``, ``tunnels``: leaf helpers (JSON files, the
  faults and their gates, command tables, certificates, the listeners of ``-R`` and ``-A``);
- ``auth``, ``keyrules``: pure login rules (passwords, kbdint rounds, chains; keys, options);
- ``config``: ``DemoConfig``, every setting checked and loaded once;
- ``authpolicy``: ``AuthPolicy``, one connection's login, answering the auth hooks;
- ``sftp``, ``handlers``: what runs on a channel (the ``Handler`` protocol and its kinds);
- ``channels``: ``SessionChannel`` and ``ForwardChannel``, one object per channel that owns
  its hooks and its handler;
- ``client``: ``DemoClient``, one connection's poll loop, event log, message routing, forwards;
- ``server``: ``DemoServer``, the listener, its clients and the ready client settings;
- ``__main__`` (the CLI) and ``pytest_plugin`` (the fixtures).
"""

from pylibssh_server.demo.client import DemoClient
from pylibssh_server.demo.commands import CommandTable, Process, Reply
from pylibssh_server.demo.config import DemoConfig
from pylibssh_server.demo.server import DemoServer, DemoServerTimeout

__all__ = ["CommandTable", "DemoClient", "DemoConfig", "DemoServer", "DemoServerTimeout",
           "Process", "Reply"]
