# SPDX-License-Identifier: MIT
"""Hostile clients after authentication: channel floods, window abuse, readers that never
read, env floods and impossible forwards.  The server (a CLI DemoServer, so a crash is an
exit code and its counters are its own) keeps serving with bounded memory and CPU.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import paramiko
import pytest
from conftest import ssh_base_args, stop_process

from stress._support import (
    CliServer,
    ProcStats,
    cli_server,
    cpu_seconds,
    paramiko_login,
    pick,
    record,
    run_command,
    settled,
    wait_until,
)

ROGUE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rogue_client.py")
#: What a hostile connection may cost the server in RSS, whatever it does.
RSS_BOUND_KIB = 64 << 10


def _alive(port: int) -> None:
    transport = paramiko_login(port)
    try:
        assert run_command(transport, "echo alive") == (0, b"alive\n")
    finally:
        transport.close()


def _stalled(server: CliServer, baseline: ProcStats) -> ProcStats:
    """Let a stalled transfer settle, then check the server idles (no spinning) within the
    memory bound; return its counters."""
    time.sleep(1.0)
    cpu0 = cpu_seconds(server.pid)
    time.sleep(1.5)
    stalled = server.stats()
    assert cpu_seconds(server.pid) - cpu0 < 0.3
    assert stalled.rss_kib - baseline.rss_kib < RSS_BOUND_KIB
    return stalled


def _rogue(port: int, mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, ROGUE, str(port), mode], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_thousand_unused_channels_then_a_close_burst() -> None:
    """1000 channels opened and never used, then all closed at once while a command on the
    same connection ends (this crashed the server: a close hook freed a channel libssh was
    still walking).  Everything is released and the server keeps serving."""
    rounds = pick(3, 10)
    start = time.monotonic()
    with cli_server() as server:
        _alive(server.port)
        baseline = server.stats()
        transport = paramiko_login(server.port)
        try:
            for _ in range(rounds):
                chans = [transport.open_session(timeout=10) for _ in range(1000)]
                assert run_command(transport, "echo alive") == (0, b"alive\n")
                for chan in chans:
                    chan.close()
            peak = server.stats()
            assert run_command(transport, "echo still") == (0, b"still\n")
        finally:
            transport.close()
        after = settled(server, baseline)
        _alive(server.port)
        assert peak.rss_kib - baseline.rss_kib < RSS_BOUND_KIB
    record("1000 unused channels x rounds", tried=rounds * 1000, before=baseline, after=after,
           seconds=time.monotonic() - start)


def test_channel_limit_refuses_cleanly() -> None:
    """Beyond ``--max-channels`` an open gets OPEN_FAILURE; closing one makes room again."""
    with cli_server("--max-channels", "20") as server:
        transport = paramiko_login(server.port)
        try:
            chans = [transport.open_session(timeout=10) for _ in range(20)]
            with pytest.raises(paramiko.ChannelException):
                transport.open_session(timeout=10)
            chans.pop().close()
            wait_until(lambda: _can_open(transport), 10, "a free channel slot")
        finally:
            transport.close()


def _can_open(transport: paramiko.Transport) -> bool:
    try:
        transport.open_session(timeout=10).close()
        return True
    except paramiko.ChannelException:
        return False


def _paramiko_session(transport: paramiko.Transport, window: int, packet: int
                      ) -> paramiko.Channel:
    # paramiko clamps windows and packets to sane values; a hostile client does not.
    transport._sanitize_window_size = lambda w: w  # type: ignore[method-assign]
    transport._sanitize_packet_size = lambda p: p  # type: ignore[method-assign]
    return transport.open_session(window_size=window, max_packet_size=packet, timeout=10)


@pytest.mark.usefixtures("data_path")
def test_zero_window_client_costs_no_cpu_and_bounded_memory() -> None:
    """A client that grants a zero window for endless output: the server sends nothing,
    stops reading the command (which blocks), and does not spin."""
    with cli_server() as server:
        baseline = server.stats()
        transport = paramiko_login(server.port)
        try:
            chan = _paramiko_session(transport, 0, 32768)
            chan.exec_command("yes")
            time.sleep(0.5)
            cpu0 = cpu_seconds(server.pid)
            time.sleep(2)
            assert cpu_seconds(server.pid) - cpu0 < 0.3
            assert server.stats().rss_kib - baseline.rss_kib < RSS_BOUND_KIB
            assert not chan.recv_ready()
        finally:
            transport.close()
        after = settled(server, baseline)
    record("zero window, endless output", tried=1, before=baseline, after=after)


@pytest.mark.usefixtures("data_path")
def test_tiny_window_and_packets_still_deliver_every_byte() -> None:
    """A 1-byte window and 1-byte packets: slow, but every byte and the exit status come."""
    with cli_server() as server:
        transport = paramiko_login(server.port)
        try:
            chan = _paramiko_session(transport, 1, 1)
            chan.settimeout(30)
            chan.exec_command("printf '%0500d' 0; echo; exit 3")
            out = bytearray()
            while chunk := chan.recv(100):
                out += chunk
            assert bytes(out) == b"0" * 500 + b"\n"
            assert chan.recv_exit_status() == 3
        finally:
            transport.close()
    record("1-byte window and packets", tried=1, sent=501, received=len(out))


@pytest.mark.usefixtures("data_path")
def test_huge_window_client_that_stops_reading() -> None:
    """A client grants a 4 GiB window for ``cat /dev/zero`` and then stops reading (SIGSTOP):
    server memory stays bounded, and stopping the server still ends at once (its send never
    blocks on that client)."""
    with cli_server() as server:
        baseline = server.stats()
        rogue = _rogue(server.port, "huge-window")
        try:
            time.sleep(0.3)
            os.kill(rogue.pid, signal.SIGSTOP)
            stalled = _stalled(server, baseline)
            _alive(server.port)
            start = time.monotonic()
            server.proc.terminate()
            assert server.proc.wait(15) == 0
            stop_seconds = time.monotonic() - start
        finally:
            os.kill(rogue.pid, signal.SIGKILL)
            stop_process(rogue)
    assert stop_seconds < 10
    record("4 GiB window, stops reading", tried=1, before=baseline, after=stalled,
           seconds=stop_seconds)


@pytest.mark.usefixtures("data_path")
def test_client_sending_beyond_its_window_is_disconnected() -> None:
    """A client that ignores the server's window is cut off before its data can pile up."""
    with cli_server() as server:
        baseline = server.stats()
        rogue = _rogue(server.port, "beyond-window")
        try:
            assert rogue.stdout is not None
            line = rogue.stdout.readline()  # the client's send fails once it is cut off
            assert line.startswith("sent ")
            sent = int(line.split()[1])
            peak = server.stats()
            assert sent < 64 << 20
            assert peak.rss_kib - baseline.rss_kib < RSS_BOUND_KIB
        finally:
            stop_process(rogue)
        after = settled(server, baseline)
        _alive(server.port)
    record("sends beyond the window", tried=1, sent=sent, before=baseline, after=after)


@pytest.mark.usefixtures("data_path")
def test_endless_output_to_an_ssh_client_that_never_reads() -> None:
    """``cat /dev/zero`` to an OpenSSH client whose stdout nobody reads: bounded memory, no
    spinning; killing the client kills the command."""
    with cli_server() as server:
        baseline = server.stats()
        client = subprocess.Popen(
            ["sshpass", "-p", "foo", "ssh", *ssh_base_args(server.port, batch=False),
             "u@127.0.0.1", "cat /dev/zero"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: server.stats().children >= 1, 10, "the command started")
            _stalled(server, baseline)
        finally:
            client.kill()
            stop_process(client)
        after = settled(server, baseline)
        assert after.children == 0
    record("endless output, never read", tried=1, before=baseline, after=after)


def test_env_flood() -> None:
    """Thousands of env requests: the first 1000 per channel are kept, the rest refused; the
    server stays responsive and bounded."""
    count = pick(3000, 20000)
    with cli_server() as server:
        baseline = server.stats()
        transport = paramiko_login(server.port)
        try:
            chan = transport.open_session(timeout=10)
            for i in range(count):
                chan.set_environment_variable(f"V{i}", "x" * 64)
            chan.settimeout(30)
            chan.exec_command("echo ${#V0} ${#V999} ${V1000:-unset}")
            out = chan.makefile("rb").read()
            assert out == b"64 64 unset\n"
            assert server.stats().rss_kib - baseline.rss_kib < RSS_BOUND_KIB
        finally:
            transport.close()
        after = settled(server, baseline)
    record("env flood", tried=count, before=baseline, after=after)


def test_forwards_to_closed_ports_and_unresolvable_names_are_refused(echo_server: int) -> None:
    """direct-tcpip to a closed port, an unresolvable name, port 0 or a non-loopback address
    (with --forward-loopback-only) gets a prompt OPEN_FAILURE; the connection keeps
    forwarding, and nothing leaks."""
    count = pick(30, 300)
    with cli_server("--forward-loopback-only") as server:
        transport = paramiko_login(server.port)
        baseline = server.stats()
        start = time.monotonic()
        try:
            closed = _closed_port()
            targets = [("127.0.0.1", closed), ("no-such-host.invalid", 22), ("127.0.0.1", 0),
                       ("192.0.2.1", 22), ("", 22), ("::1", closed)]
            refused = 0
            for i in range(count):
                target = targets[i % len(targets)]
                with pytest.raises(paramiko.ChannelException):
                    transport.open_channel("direct-tcpip", target, ("127.0.0.1", 1), timeout=10)
                refused += 1
            chan = transport.open_channel("direct-tcpip", ("127.0.0.1", echo_server),
                                          ("127.0.0.1", 1), timeout=10)
            chan.sendall(b"ping")
            chan.settimeout(10)
            assert chan.recv(4) == b"ping"
            chan.close()
        finally:
            transport.close()
        after = settled(server, baseline)
    assert time.monotonic() - start < 60
    record("forwards refused", tried=count, faults=refused, before=baseline, after=after)


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_huge_sftp_reads_and_writes(tmp_path: os.PathLike[str]) -> None:
    """An SFTP read asking for 4 GiB gets a capped reply; a write request over the packet
    limit ends that SFTP channel only; big files go through intact."""
    import hashlib

    from pylibssh_server.demo.sftp import MAX_READ_LENGTH

    size = pick(8, 64) << 20
    blob = os.urandom(1 << 20) * (size >> 20)
    with cli_server("--sftp-root", os.fspath(tmp_path)) as server:
        baseline = server.stats()
        transport = paramiko_login(server.port)
        try:
            sftp = paramiko.SFTPClient.from_transport(transport)
            assert sftp is not None
            with sftp.open("/big", "wb") as f:
                f.set_pipelined(True)
                f.write(blob)
            with sftp.open("/big", "rb") as f:
                t, msg = sftp._request(paramiko.sftp.CMD_READ, f.handle,
                                       paramiko.sftp.int64(0), 2**32 - 1)
                assert t == paramiko.sftp.CMD_DATA
                assert len(msg.get_string()) == MAX_READ_LENGTH
                f.prefetch()
                data = f.read()
            assert hashlib.sha256(data).digest() == hashlib.sha256(blob).digest()
            sftp.close()
            # One request far over the limit: that channel ends, the connection does not.
            chan = transport.open_session(timeout=10)
            chan.invoke_subsystem("sftp")
            chan.sendall((64 << 20).to_bytes(4, "big") + b"\x06" + b"\x00" * 1024)
            chan.settimeout(10)
            while chan.recv(1 << 16):
                pass
            assert run_command(transport, "echo alive") == (0, b"alive\n")
            peak = server.stats()
            assert peak.rss_kib - baseline.rss_kib < RSS_BOUND_KIB + (size >> 10)
        finally:
            transport.close()
        after = settled(server, baseline)
    record("huge SFTP reads/writes", tried=1, sent=size, received=len(data), before=baseline,
           after=after)


@pytest.mark.usefixtures("data_path")
def test_fast_client_into_a_slow_command_is_held_by_the_window() -> None:
    """A well-behaved client uploading into a command that reads slowly: the server buffers
    at most its sink plus one window (libssh 0.10 re-opens the window after every read of
    the backlog, so partial reads let the upload pile up in libssh until the client was cut
    off as a window violator)."""
    size = pick(32, 256) << 20
    with cli_server() as server:
        baseline = server.stats()
        transport = paramiko_login(server.port)
        peak = baseline
        try:
            chan = transport.open_session(timeout=10)
            chan.settimeout(60)
            chan.exec_command(
                "python3 -c 'import sys, time\n"
                "for _ in iter(lambda: sys.stdin.buffer.read1(1 << 16), b\"\"): time.sleep(0.001)'"
                "; echo done")
            block = b"x" * (1 << 20)
            window = 0
            for _ in range(size >> 20):
                for i in range(0, len(block), 1 << 15):
                    chan.sendall(block[i:i + (1 << 15)])
                    window = max(window, chan.out_window_size)  # granted by the server
                now = server.stats()
                peak = now if now.rss_kib > peak.rss_kib else peak
            chan.shutdown_write()
            assert chan.makefile("rb").read() == b"done\n"
            assert chan.recv_exit_status() == 0
        finally:
            transport.close()
        settled(server, baseline)
    assert window <= 4 << 20
    assert peak.rss_kib - baseline.rss_kib < 16 << 10
    record("fast upload, slow reader", tried=1, sent=size, before=baseline, after=peak)
