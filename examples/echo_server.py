# SPDX-License-Identifier: MIT
"""A minimal password + exec server built only on pylibssh_server's public API.

    python examples/echo_server.py --port 2222 --password secret
    ssh -p 2222 -o StrictHostKeyChecking=no user@127.0.0.1 hello world

It answers every exec request with ``echo: <command>`` and exit status 0, or exit status 3
for the command ``fail``.  One thread per client, each with its own SessionEvent.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

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


def serve_client(session: Session, password: str) -> None:
    """Drive one client: key exchange, password auth, exec requests answered with an echo."""
    done = threading.Event()

    def on_exec(sess: Session, channel: SshChannel, command: str, userdata: object) -> bool:
        channel.write(f"echo: {command}\n".encode())
        channel.send_exit_status(3 if command == "fail" else 0)
        channel.send_eof()
        channel.close()
        return True

    def on_open(sess: Session, userdata: object) -> SshChannel:
        channel = SshChannel(sess)
        channel.set_callbacks(ChannelCallbacks(on_exec_request=on_exec))
        return channel

    def on_password(sess: Session, user: str, pw: str, userdata: object) -> AuthStatus:
        return AuthStatus.SUCCESS if pw == password else AuthStatus.DENIED

    session.set_server_callbacks(ServerCallbacks(
        on_auth_password=on_password, on_channel_open_request_session=on_open))
    session.set_auth_methods(AuthMethod.PASSWORD)
    session.set_blocking(False)
    session.handle_key_exchange(timeout=30)
    event = SessionEvent(session)
    while session.is_connected and not done.is_set():
        event.dopoll(1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--password", default="secret")
    args = parser.parse_args(argv)
    with SshKey.generate() as key, Bind(port=args.port, key=key) as bind:
        print(json.dumps({"host": bind.host, "port": bind.port}), flush=True)
        signal.signal(signal.SIGTERM, lambda *_: bind.close())
        thread = threading.Thread(target=bind.listen,
                                  args=(lambda s: serve_client(s, args.password),))
        thread.start()
        try:
            while thread.is_alive():
                thread.join(0.2)
        except KeyboardInterrupt:
            pass
        bind.close()
        thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
