# SPDX-License-Identifier: MIT
"""The DemoServer: a real SSH server for testing SSH clients (see ``DemoServer``)."""

from pylibssh_server.demo.client import DemoClient
from pylibssh_server.demo.commands import CommandTable, Process, Reply
from pylibssh_server.demo.server import DemoServer, DemoServerTimeout

__all__ = ["CommandTable", "DemoClient", "DemoServer", "DemoServerTimeout", "Process", "Reply"]
