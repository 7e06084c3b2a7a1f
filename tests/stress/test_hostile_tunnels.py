# SPDX-License-Identifier: MIT
"""Hostile tunnel clients: floods of ``tcpip-forward`` requests, privileged and taken ports,
connections to a listener after its client vanished, and an agent channel nobody serves; all
bounded, refused cleanly, and the server keeps serving."""

from __future__ import annotations

import socket

import paramiko
import pytest

from stress._support import assert_serving, cli_server, paramiko_login, pick, record, settled


def test_tcpip_forward_flood_and_bad_ports() -> None:
    """Thousands of requests get at most --max-remote-forwards listeners; privileged and taken
    ports are refused; once the client is gone its ports refuse connections and the server is
    back to its baseline."""
    tries = pick(300, 3000)
    with socket.socket() as taken, cli_server("--max-remote-forwards", "8") as server:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        baseline = server.stats()
        transport = paramiko_login(server.port)
        granted: list[int] = []
        refused = 0
        try:
            for port in (80, taken.getsockname()[1]):
                with pytest.raises(paramiko.SSHException):
                    transport.request_port_forward("127.0.0.1", port)
            for _ in range(tries):
                try:
                    granted.append(transport.request_port_forward("127.0.0.1", 0))
                except paramiko.SSHException:
                    refused += 1
            during = server.stats()
            assert_serving(server.port)
        finally:
            transport.close()
        after = settled(server, baseline, 15)
        for port in granted:
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert (len(granted), refused) == (8, tries - 8)
    assert during.fds <= baseline.fds + 8 + 4
    record("tcpip-forward flood, bad ports", tried=tries + 2, faults=refused + 2,
           before=baseline, after=after)


@pytest.mark.usefixtures("data_path")
def test_agent_channel_nobody_serves() -> None:
    """A client that asks for agent forwarding but does not serve the agent channels (paramiko
    with a handler that drops them): the command's agent requests fail or time out, never
    hang the server, nothing piles up, other clients are served."""
    with cli_server() as server:
        baseline = server.stats()
        transport = paramiko_login(server.port)
        try:
            chans = []
            # 25 or more: a refusal then comes back within the first poll of some opens,
            # which once freed the channel before its callbacks were set (found at 50).
            for _ in range(pick(25, 50)):
                chan = transport.open_session(timeout=10)
                chan.request_forward_agent(lambda agent_chan: None)  # accepted, never served
                chan.exec_command("timeout 1 ssh-add -l; echo done $?")
                chans.append(chan)
            outputs = [chan.makefile("rb").read() for chan in chans]
            assert_serving(server.port)
        finally:
            transport.close()
        after = settled(server, baseline, 15)
    statuses = {int(out.split()[1]) for out in outputs}
    assert len(outputs) == len(chans) and 0 not in statuses, outputs
    record("agent channel nobody serves", tried=len(chans), faults=len(chans),
           before=baseline, after=after)
