# SPDX-License-Identifier: MIT
"""A small threaded paramiko server equivalent to the DemoServer, for benchmarks only.

One thread per connection (paramiko's Transport thread, plus the accept thread), password auth
(any user, one password), "exec" through ``/bin/sh -c`` with stdout/stderr streamed to the
channel and channel data streamed to stdin (one thread per direction), exit status, and
direct-tcpip to loopback targets (one thread per direction, half-close relayed).

    python benchmarks/paramiko_server.py --port 0 --hostkey KEY --password PW

prints one JSON line ``{"port": N, "pid": P}`` when listening; runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading

import paramiko
from paramiko.common import MSG_CHANNEL_FAILURE, MSG_CHANNEL_SUCCESS

CHUNK = 32768
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _thread(target, *args) -> threading.Thread:  # type: ignore[no-untyped-def]
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    return t


class _Server(paramiko.ServerInterface):
    def __init__(self, password: str) -> None:
        self.password = password
        self.forwards: dict[int, tuple[str, int]] = {}
        # paramiko sends the exec request's CHANNEL_SUCCESS only after check_channel_exec_request
        # returns: a fast command (``true``) could otherwise close the channel before it, and
        # the client would see the request fail.  The exec thread waits for that reply.
        self.replied: dict[int, threading.Event] = {}

    def watch_replies(self, transport: paramiko.Transport) -> None:
        send = transport._send_user_message

        def send_and_note(m: paramiko.Message) -> None:
            send(m)
            raw = m.asbytes()
            if raw[:1] in (bytes([MSG_CHANNEL_SUCCESS]), bytes([MSG_CHANNEL_FAILURE])):
                event = self.replied.get(int.from_bytes(raw[1:5], "big"))
                if event is not None:
                    event.set()

        transport._send_user_message = send_and_note  # type: ignore[method-assign]

    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_auth_password(self, username: str, password: str) -> int:
        if password == self.password:
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_direct_tcpip_request(self, chanid: int, origin: tuple[str, int],
                                           destination: tuple[str, int]) -> int:
        if destination[0] not in LOOPBACK:
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        self.forwards[chanid] = destination
        return paramiko.OPEN_SUCCEEDED

    @staticmethod
    def forward(channel: paramiko.Channel, host: str, port: int) -> None:
        try:
            sock = socket.create_connection((host, port), timeout=5)
        except OSError:
            channel.close()
            return
        sock.settimeout(None)

        def up() -> None:  # channel -> socket
            try:
                while True:
                    data = channel.recv(CHUNK)
                    if not data:
                        break
                    sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        t = _thread(up)
        try:
            while True:  # socket -> channel
                data = sock.recv(CHUNK)
                if not data:
                    break
                channel.sendall(data)
            channel.shutdown_write()
        except OSError:
            pass
        t.join()
        channel.close()
        sock.close()

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        replied = self.replied[channel.remote_chanid] = threading.Event()
        _thread(self._exec, channel, command.decode("utf-8", "replace"), replied)
        return True

    def _exec(self, channel: paramiko.Channel, command: str, replied: threading.Event) -> None:
        try:
            self._run(channel, command, replied)
        finally:
            self.replied.pop(channel.remote_chanid, None)

    def _run(self, channel: paramiko.Channel, command: str, replied: threading.Event) -> None:
        try:
            proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    bufsize=0, start_new_session=True)
        except OSError as exc:
            replied.wait(10)
            channel.sendall_stderr(f"cannot run command: {exc}\n".encode())
            channel.send_exit_status(127)
            channel.close()
            return
        assert proc.stdin and proc.stdout and proc.stderr
        stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr

        def feed() -> None:  # channel -> stdin
            try:
                while True:
                    data = channel.recv(CHUNK)
                    if not data:
                        break
                    stdin.write(data)
            except OSError:
                pass
            with contextlib.suppress(OSError):
                stdin.close()

        def errors() -> None:
            try:
                while True:
                    data = stderr.read(CHUNK)
                    if not data:
                        break
                    channel.sendall_stderr(data)
            except OSError:
                pass

        threads = [_thread(feed), _thread(errors)]
        try:
            while True:
                data = stdout.read(CHUNK)
                if not data:
                    break
                channel.sendall(data)
        except OSError:
            pass
        threads[1].join()
        status = proc.wait()
        replied.wait(10)  # the exec request's reply goes out before exit-status and close
        with contextlib.suppress(OSError, EOFError):
            channel.send_exit_status(status if status >= 0 else 128 - status)
            channel.shutdown_write()
        channel.close()
        stdout.close()
        stderr.close()


def _serve(sock: socket.socket, key: paramiko.PKey, password: str) -> None:
    transport = paramiko.Transport(sock)
    transport.add_server_key(key)
    server = _Server(password)
    server.watch_replies(transport)
    try:
        transport.start_server(server=server)
    except (paramiko.SSHException, EOFError, OSError):
        transport.close()
        return
    # Every opened channel is queued for accept(): take them all; direct-tcpip ones get their
    # relay here, session ones are served by check_channel_exec_request.
    while transport.is_active():
        channel = transport.accept(timeout=1.0)
        if channel is None:
            continue
        destination = server.forwards.pop(channel.get_id(), None)
        if destination is not None:
            _thread(_Server.forward, channel, destination[0], destination[1])

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--hostkey", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--backlog", type=int, default=128)
    args = parser.parse_args()
    key = paramiko.Ed25519Key.from_private_key_file(args.hostkey)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.host, args.port))
    listener.listen(args.backlog)
    listener.settimeout(0.5)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(json.dumps({"port": listener.getsockname()[1], "pid": os.getpid()}), flush=True)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except (socket.timeout, InterruptedError):
            continue
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _thread(_serve, conn, key, args.password)
    listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
