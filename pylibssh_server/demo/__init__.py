# SPDX-License-Identifier: MIT
"""The DemoServer: a real SSH server for testing SSH clients (see ``DemoServer``)."""

from pylibssh_server.demo.client import DemoClient
from pylibssh_server.demo.server import DemoServer, DemoServerTimeout

__all__ = ["DemoClient", "DemoServer", "DemoServerTimeout"]
