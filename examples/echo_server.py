# SPDX-License-Identifier: MIT
"""A minimal password + exec server built only on pylibssh_server's public API.

    python examples/echo_server.py --port 2222 --password secret
    ssh -p 2222 -o StrictHostKeyChecking=no user@127.0.0.1 hello world

It answers every exec request with ``echo: <command>`` and exit status 0, or exit status 3
for the command ``fail``.  One thread per client, each with its own SessionEvent.

``open_echo_channel``, ``drive`` and ``run`` are reused by ``kbdint_server.py``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable

from pylibssh_server import (
    AuthMethod,
    AuthStatus,
    Bind,
    ChannelCallbacks,
    ServerCallbacks,
    Session,
    SessionEvent,
    SshChannel,
    SshKey,
)


def on_exec(sess: Session, channel: SshChannel, command: str, userdata: object) -> bool:
    """Answer an exec request with an echo, the exit status, EOF and CLOSE."""
    channel.write(f"echo: {command}\n".encode())
    channel.send_exit_status(3 if command == "fail" else 0)
    channel.send_eof()
    channel.close()
    return True


def open_echo_channel(sess: Session, userdata: object) -> SshChannel:
    """``on_channel_open_request_session``: a channel whose exec requests are echoed."""
    channel = SshChannel(sess)
    channel.set_callbacks(ChannelCallbacks(on_exec_request=on_exec))
    return channel


def drive(session: Session, callbacks: ServerCallbacks, methods: AuthMethod) -> None:
    """Install ``callbacks``, advertise ``methods``, run the key exchange and poll until
    the client leaves."""
    session.set_server_callbacks(callbacks)
    session.set_auth_methods(methods)
    session.set_blocking(False)
    session.handle_key_exchange(timeout=30)
    event = SessionEvent(session)
    while session.is_connected:
        event.dopoll(1.0)


def serve_client(session: Session, password: str) -> None:
    """Drive one client: key exchange, password auth, exec requests answered with an echo."""
    def on_password(sess: Session, user: str, pw: str, userdata: object) -> AuthStatus:
        return AuthStatus.SUCCESS if pw == password else AuthStatus.DENIED

    drive(session, ServerCallbacks(on_auth_password=on_password,
                                   on_channel_open_request_session=open_echo_channel),
          AuthMethod.PASSWORD)


def run(handler: Callable[[Session], None], port: int) -> int:
    """Listen on 127.0.0.1:``port`` (0: any free port), print ``{"host", "port"}`` as one JSON
    line, and run ``handler`` for each client in its own thread until SIGTERM or Ctrl-C."""
    with SshKey.generate() as key, Bind(port=port, key=key) as bind:
        print(json.dumps({"host": bind.host, "port": bind.port}), flush=True)
        signal.signal(signal.SIGTERM, lambda *_: bind.close())
        thread = threading.Thread(target=bind.listen, args=(handler,))
        thread.start()
        try:
            while thread.is_alive():
                thread.join(0.2)
        except KeyboardInterrupt:
            pass
        bind.close()
        thread.join()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--password", default="secret")
    args = parser.parse_args(argv)
    return run(lambda session: serve_client(session, args.password), args.port)


if __name__ == "__main__":
    sys.exit(main())
