# SPDX-License-Identifier: MIT
"""Fuzz harness: what the DemoServer decides from client strings (``pylibssh_server/demo``).

Strings reach the DemoServer as libssh hands them over: NUL-terminated bytes, decoded by the
trampolines' ``_str`` (UTF-8 with ``surrogateescape``); this harness makes them the same way.
The first byte of an input picks the target:

* ``0``: a direct-tcpip request. Bytes 1-4 are the port (signed, so negative and huge ones
  come up), the rest is the host. ``DemoServer.loopback_only`` and ``forward_allowed`` (with
  no policy, and with ``loopback_only`` as the policy) must never raise; a port outside
  1..65535 is refused whatever the policy; and a host ``loopback_only`` accepts is
  ``localhost`` or a numeric address that ``getaddrinfo(AI_NUMERICHOST)`` either cannot use
  (so no connection is made) or resolves to loopback addresses only. ``connect_target``
  itself is not called: a host could make it resolve names or connect off the machine.
* ``1``: a password authentication (``AuthPolicy.on_auth_password``): accepted exactly when
  password authentication is enabled and the client's bytes are the server password in UTF-8;
  a refusal counts as a failed attempt; the user name is recorded as given.
* ``2``: environment requests (``SessionChannel.on_env_request``): at most ``MAX_ENV_PER_CHANNEL``
  variables are kept per channel, each exactly as sent, and a request is refused exactly when
  the channel is full.

The seeds are the host spellings that matter (loopback in every notation, zones, names,
addresses just outside 127/8) and one input for each other target.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import struct
import types
from collections.abc import Iterator

import atheris
from _common import Traps, check, instrument_module, main

from pylibssh_server import AuthMethod, AuthStatus, _trampolines
from pylibssh_server._ffi import ffi
from pylibssh_server.demo import authpolicy, channels, client, config, server

for _module in (server, config, client, authpolicy, channels, _trampolines, ipaddress):
    instrument_module(_module)

_SERVERS = {
    "any": server.DemoServer(password="x"),
    "loopback": server.DemoServer(password="x", forward_allow=server.DemoServer.loopback_only),
}
_METHODS = [AuthMethod.PASSWORD, AuthMethod.PUBLICKEY, AuthMethod.PASSWORD | AuthMethod.NONE,
            AuthMethod.INTERACTIVE | AuthMethod.PUBLICKEY]
_TRAPS = Traps("pylibssh_server")


def from_c(raw: bytes) -> str:
    """``raw`` as a callback receives it: cut at the first NUL, decoded by the trampolines."""
    return _trampolines._str(ffi.new("char[]", raw.split(b"\0", 1)[0]))


def _loopback_addresses(host: str, port: int) -> list[str] | None:
    """The addresses ``host`` names as a numeric address, or None if it names none."""
    try:
        infos = socket.getaddrinfo(host, port & 0xFFFF, type=socket.SOCK_STREAM,
                                   flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError, ValueError):
        return None
    return [str(info[4][0]) for info in infos]


def _forwarding(data: bytes) -> None:
    (port,) = struct.unpack(">i", data[1:5].ljust(4, b"\0"))
    host = from_c(data[5:])
    loopback = server.DemoServer.loopback_only(host, port)
    check(isinstance(loopback, bool), f"loopback_only returned {loopback!r}")
    if loopback and host != "localhost":
        addresses = _loopback_addresses(host, port) or []
        check(all(ipaddress.ip_address(a.partition("%")[0]).is_loopback for a in addresses),
              f"loopback_only accepts {host!r}, which is {addresses}")
    in_range = 0 < port < 65536
    for name, expected in (("any", in_range), ("loopback", in_range and loopback)):
        allowed = _SERVERS[name].forward_allowed(host, port)
        check(allowed is expected,
              f"forward_allowed({host!r}, {port}) with policy {name}: {allowed}")


def _new_client(settings: config.DemoConfig | None = None) -> client.DemoClient:
    session = types.SimpleNamespace(peer=("127.0.0.1", 50000))
    return client.DemoClient(settings or _SERVERS["any"].config, session,  # type: ignore[arg-type]
                             1)


def _password(fdp: atheris.FuzzedDataProvider) -> None:
    # Made as argv makes a --password: any bytes, decoded with surrogateescape.
    password = bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 24))).decode(
        "utf-8", "surrogateescape")
    secret = password.encode("utf-8", "surrogateescape")
    demo = dataclasses.replace(_SERVERS["any"].config, password=password,
                               auth_methods=fdp.PickValueInList(_METHODS))
    choice = fdp.ConsumeIntInRange(0, 3)
    if choice == 0:
        raw = secret
    elif choice == 1:
        raw = secret + bytes(fdp.ConsumeBytes(2))
    else:
        raw = bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 24)))
    raw = raw.split(b"\0", 1)[0]
    user = from_c(bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 16))))
    demo_client = _new_client(demo)
    status = demo_client.auth.on_auth_password(None, user, from_c(raw),  # type: ignore[arg-type]
                                               None)
    accept = bool(demo.auth_methods & AuthMethod.PASSWORD) and raw == secret
    check(status == (AuthStatus.SUCCESS if accept else AuthStatus.DENIED),
          f"password {raw!r} against {demo.password!r}: {status!r}")
    check((demo_client.authenticated, demo_client.auth.failed) == (accept, int(not accept)),
          "authenticated/failure count do not match the answer")
    check(demo_client.user == user, f"user {demo_client.user!r} recorded for {user!r}")


def _environment(fdp: atheris.FuzzedDataProvider) -> None:
    demo_client = _new_client()
    state = channels.SessionChannel(demo_client, None)  # type: ignore[arg-type]
    requests = fdp.ConsumeIntInRange(0, channels.MAX_ENV_PER_CHANNEL + 50)
    sent: dict[str, str] = {}
    for number in range(requests):
        name = from_c(bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 6)))) or f"V{number}"
        value = from_c(bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 6))))
        full = len(state.env) >= channels.MAX_ENV_PER_CHANNEL
        accepted = state.on_env_request(None, None, name, value, None)  # type: ignore[arg-type]
        check(accepted is not full, f"env request {number} with {len(state.env)} set: {accepted}")
        if accepted:
            sent[name] = value
    check(state.env == sent, "the environment kept is not what was accepted")


def test_one_input(data: bytes) -> None:
    target = data[0] % 3 if data else 0
    if target == 0:
        _forwarding(data)
    elif target == 1:
        _password(atheris.FuzzedDataProvider(data[1:]))
    else:
        _environment(atheris.FuzzedDataProvider(data[1:]))
    _TRAPS.raise_if_any()


def seeds() -> Iterator[bytes]:
    """Hosts in the spellings that matter, and one input for each other target."""
    hosts = ["127.0.0.1", "127.255.255.254", "128.0.0.1", "126.255.255.255", "localhost",
             "LOCALHOST", "localhost.", "::1", "0:0:0:0:0:0:0:1", "::1%lo", "::1%1",
             "::ffff:127.0.0.1", "::127.0.0.1", "127.1", "0x7f.1", "2130706433",
             "0177.0.0.1", "[::1]", "fe80::1%lo", "example.com", "127.0.0.1 ", "\udcff"]
    for port in (22, 0, 65535, 65536, -1):
        for host in hosts:
            yield b"\0" + struct.pack(">i", port) + host.encode("utf-8", "surrogateescape")
    yield b"\1" + b"secret" * 4
    yield b"\2" + bytes(range(64))


if __name__ == "__main__":
    main(test_one_input, seeds)
