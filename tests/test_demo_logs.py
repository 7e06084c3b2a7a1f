"""DemoServer logs and runner: the timeline, verbose mode, the timeout-guarded ``run`` and the
pytest plugin's failure report."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import paramiko
import pytest

from pylibssh_server.demo import DemoServer, DemoServerTimeout


def _login(port: int, user: str, command: str = "true") -> None:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect("127.0.0.1", port, username=user, password="foo", timeout=10,
                       allow_agent=False, look_for_keys=False)
        _, stdout, _ = client.exec_command(command, timeout=10)
        stdout.channel.recv_exit_status()
    finally:
        client.close()


def test_print_timeline_merges_clients_in_time_order(capsys: pytest.CaptureFixture[str]) -> None:
    """print_timeline() shows every client's events, one per line, ordered by time."""
    with DemoServer(password="foo") as server:
        _login(server.port, "first")
        _login(server.port, "second")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(c.finished.is_set() for c in server.clients):
            time.sleep(0.02)
    server.print_timeline()
    lines = capsys.readouterr().out.splitlines()
    times = [float(line.split("s ", 1)[0]) for line in lines]
    assert times == sorted(times)
    def position(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    first = position("client 1: auth_password ('first', 'foo')")
    second = position("client 2: auth_password ('second', 'foo')")
    assert first < second
    assert sum(len(c.timeline) for c in server.clients) == len(lines)


def test_verbose_prints_each_event_as_it_happens(capsys: pytest.CaptureFixture[str]) -> None:
    """verbose=True prints a line per event with the client number, on stderr (stdout is
    the CLI's JSON readiness line alone)."""
    with DemoServer(password="foo", verbose=True) as server:
        _login(server.port, "alice", "echo hi")
    captured = capsys.readouterr()
    assert "[demo-server] client 1 auth_password: ('alice', 'foo')" in captured.err
    assert "[demo-server] client 1 channel_exec_request: \"'echo hi'\"" in captured.err
    assert captured.out == ""


def test_run_returns_the_result_and_stops_the_server() -> None:
    """run(func) returns func's result; the server is stopped and its logs stay readable."""
    server = DemoServer(password="foo")
    try:
        result = server.run(lambda: _login(server.port, "bob") or 42, timeout=30)
        assert result == 42
        assert server.is_running is False
        assert server.clients[0].callback_log["auth_password"] == [("bob", "foo")]
    finally:
        server.close()


def test_run_reraises_the_function_error() -> None:
    """An exception in func comes out of run() unchanged."""
    server = DemoServer(password="foo")
    try:
        with pytest.raises(KeyError, match="boom"):
            server.run(lambda: {}["boom"], timeout=10)
        assert server.is_running is False
    finally:
        server.close()


def test_run_interrupts_a_function_that_overruns() -> None:
    """A function running past ``timeout`` is interrupted inside its thread, the server is
    stopped, and DemoServerTimeout is raised promptly."""
    interrupted = []

    def slow() -> None:
        try:
            for _ in range(600):  # 30 s at most
                time.sleep(0.05)
        except BaseException:
            interrupted.append(True)
            raise

    server = DemoServer(password="foo")
    try:
        start = time.monotonic()
        with pytest.raises(DemoServerTimeout, match=r"did not finish within 0\.5 s"):
            server.run(slow, timeout=0.5, kill_timeout=5)
        assert time.monotonic() - start < 5
        assert interrupted == [True]
        assert server.is_running is False
    finally:
        server.close()


def test_plugin_adds_the_timeline_to_a_failing_test_report(tmp_path: Path) -> None:
    """The pytest plugin's fixtures are available without configuration, and a failing test's
    report has a section with the DemoServer's timeline."""
    test_file = tmp_path / "test_inner.py"
    test_file.write_text(textwrap.dedent("""
        import paramiko

        def test_fails(demo_server):
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
            client.connect("127.0.0.1", demo_server.port, username="carol", password="foo",
                           allow_agent=False, look_for_keys=False, timeout=10)
            client.close()
            assert False, "deliberate"

        def test_passes(demo_server_factory):
            server = demo_server_factory(password="x", sftp_root=".")
            assert server.is_running
    """))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert "1 failed, 1 passed" in result.stdout
    assert "DemoServer 1 timeline (port" in result.stdout
    assert "client 1: auth_password ('carol', 'foo')" in result.stdout
