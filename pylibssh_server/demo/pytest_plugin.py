# SPDX-License-Identifier: MIT
"""pytest plugin (entry point ``pytest11``): ``demo_server``, ``demo_server_factory`` and
``demo_server_session``.

``demo_server`` is a running :class:`DemoServer` with password ``"foo"`` (any user name);
``demo_server_factory(**options)`` starts servers with other options.  Every server is stopped
after the test, and when a test fails the servers' event timelines are added to its report.
``demo_server_session`` is one server (password ``"foo"``) shared by the whole test session,
for suites that connect many times and do not need a fresh event log per test.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from pylibssh_server.demo.server import DemoServer

_SERVERS = pytest.StashKey[list[DemoServer]]()


@pytest.fixture
def demo_server_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., DemoServer]]:
    """Return ``make(**DemoServer options) -> started DemoServer``; all stopped at teardown."""
    servers: list[DemoServer] = []
    request.node.stash[_SERVERS] = servers

    def make(**options: Any) -> DemoServer:
        server = DemoServer(**options)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def demo_server(demo_server_factory: Callable[..., DemoServer]) -> DemoServer:
    """A running DemoServer accepting password ``"foo"`` for any user."""
    return demo_server_factory(password="foo")


@pytest.fixture(scope="session")
def demo_server_session() -> Iterator[DemoServer]:
    """One running DemoServer (password ``"foo"``) for the whole test session."""
    with DemoServer(password="foo") as server:
        yield server


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[Any]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    servers = item.stash.get(_SERVERS, None)
    if report.failed and servers:
        for i, server in enumerate(servers, 1):
            report.sections.append(
                (f"DemoServer {i} timeline (port {server.port})", server.timeline_text()))
