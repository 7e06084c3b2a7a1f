# SPDX-License-Identifier: MIT
"""Fuzz harness: the DemoServer's configuration input and its auth-chain decisions.

The first byte of an input picks the target:

* ``0``: a ``--kbdint FILE`` (the rest is the file's bytes): ``Kbdint.from_file`` returns a
  Kbdint of 1 to 32 rounds of 1 to 32 prompts, or raises ValueError naming the file; nothing
  else.  A loaded Kbdint accepts exactly its own answers round by round.
* ``1``: a ``--commands FILE``: ``CommandTable.from_file`` returns a table or raises
  ValueError naming the file.
* ``2``: ``--fault`` and ``--auth-chain`` text (the rest, split at newlines):
  ``Faults.parse`` either refuses with ValueError or gives values inside the documented
  ranges; ``AuthChains`` either refuses or offers, after every prefix of a chain, that
  chain's next method, and calls exactly its chains complete.
* ``3``: a sequence of authentication results against ``AuthPolicy.result`` with two
  chains: the client is authenticated exactly when one user passed every method of one chain
  in order (a model written here), every step before is a partial success, and the methods
  the client is told are left are those the model expects.
"""

from __future__ import annotations

import math
import os
import tempfile
import types
from collections.abc import Iterator

import atheris
from _common import Traps, check, instrument_module, main

from pylibssh_server import AuthMethod, AuthStatus
from pylibssh_server.demo import auth, authpolicy, client, commands, faults, server

for _module in (auth, faults, commands, client, authpolicy):
    instrument_module(_module)

_TRAPS = Traps("pylibssh_server")
_DIR = tempfile.mkdtemp(prefix="fuzz-demo-config-")
_PATH = os.path.join(_DIR, "input.json")
_CHAINS = ["publickey,password", "keyboard-interactive"]
_CHAIN_SERVER = server.DemoServer(password="x", auth_methods="password,publickey,"
                                  "keyboard-interactive", authorized_keys=[
                                      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6Uo"
                                      "iqKMEr0hy9AgCbp+aq0ZYjP+/D"], auth_chains=_CHAINS)
_METHODS = ["password", "publickey", "keyboard-interactive"]


def _file(data: bytes) -> str:
    with open(_PATH, "wb") as f:
        f.write(data)
    return _PATH


def _kbdint(data: bytes) -> None:
    try:
        loaded = auth.Kbdint.from_file(_file(data))
    except ValueError as exc:
        check(_PATH in str(exc), f"error does not name the file: {exc}")
        return
    check(1 <= len(loaded.rounds) <= auth.MAX_ROUNDS, "round count out of bounds")
    for number, prompts in enumerate(loaded.rounds):
        check(1 <= len(prompts) <= auth.MAX_PROMPTS, "prompt count out of bounds")
        answers = [p.answer for p in prompts]
        check(loaded.matches(number, answers), "its own answers do not match")
        check(not loaded.matches(number, [*answers, ""]), "an extra answer matches")


def _commands(data: bytes) -> None:
    try:
        commands.CommandTable.from_file(_file(data))
    except ValueError as exc:
        check(_PATH in str(exc), f"error does not name the file: {exc}")


def _texts(data: bytes) -> None:
    lines = data.decode("utf-8", "surrogateescape").split("\n")
    try:
        parsed = faults.Faults.parse(lines[: len(lines) // 2 + 1])
    except ValueError:
        parsed = None
    if parsed is not None:
        for name, value in parsed.values.items():
            kind = faults.FAULT_NAMES[name]
            if kind == "seconds":
                check(math.isfinite(value) and 0 < value <= faults.MAX_DELAY, f"{name}={value}")
            elif kind in ("count", "rate"):
                check(isinstance(value, int) and value >= 1, f"{name}={value}")
            elif kind == "bytes":
                check(isinstance(value, int) and value >= 0, f"{name}={value}")
            elif kind == "channel":
                check(set(value) <= set(faults.REFUSABLE_CHANNELS), f"{name}={value}")
            else:
                check(value is None, f"flag {name}={value}")
    try:
        chains = auth.AuthChains(lines[len(lines) // 2 + 1:] or [""])
    except ValueError:
        return
    for chain in chains.chains:
        for step in range(len(chain)):
            check(chains.next_methods(chain[:step]) & auth.METHOD_FLAGS[chain[step]],
                  f"{chain[step]} not offered after {chain[:step]}")
        check(chains.complete(chain), f"{chain} not complete")
        check(not chains.complete(chain[:-1]) or chain[:-1] in chains.chains,
              f"a prefix of {chain} counts as complete")


def _chain_results(fdp: atheris.FuzzedDataProvider) -> None:
    told: list[int] = []
    session = types.SimpleNamespace(peer=("127.0.0.1", 50000), set_auth_methods=told.append,
                                    disconnect=lambda: None)
    demo_client = client.DemoClient(_CHAIN_SERVER.config, session, 1)  # type: ignore[arg-type]
    chains = [tuple(c.split(",")) for c in _CHAINS]
    passed: list[str] = []
    model_user: str | None = None
    for _ in range(fdp.ConsumeIntInRange(0, 12)):
        user = fdp.PickValueInList(["alice", "bob"])
        method = fdp.PickValueInList(_METHODS)
        ok = fdp.ConsumeBool()
        offered = demo_client.auth.method_allowed(method, user)
        expect_passed = passed if user == model_user else []
        check(offered == any(len(c) > len(expect_passed) and
                             c[:len(expect_passed)] == tuple(expect_passed) and
                             c[len(expect_passed)] == method for c in chains),
              f"{method} for {user} offered={offered} after {passed} by {model_user}")
        if not offered:
            continue  # the hooks deny a method that is not offered before asking here
        told.clear()
        status = demo_client.auth.result(ok, user, method)
        if not ok:
            check(status == AuthStatus.DENIED, f"a failed check gave {status!r}")
            continue
        if user != model_user:
            passed, model_user = [], user
        passed.append(method)
        if tuple(passed) in chains:
            check(status == AuthStatus.SUCCESS and demo_client.authenticated,
                  f"{passed} is a chain: {status!r}")
            return
        check(status == AuthStatus.PARTIAL and not demo_client.authenticated,
              f"{passed} is a step: {status!r}")
        left = AuthMethod.UNKNOWN
        for chain in chains:
            if len(chain) > len(passed) and chain[:len(passed)] == tuple(passed):
                left |= auth.METHOD_FLAGS[chain[len(passed)]]
        check(told == [left], f"told {told} after {passed}, expected {left!r}")
    check(not demo_client.authenticated, "authenticated without a whole chain")


def test_one_input(data: bytes) -> None:
    target = data[0] % 4 if data else 0
    rest = data[1:]
    if target == 0:
        _kbdint(rest)
    elif target == 1:
        _commands(rest)
    elif target == 2:
        _texts(rest)
    else:
        _chain_results(atheris.FuzzedDataProvider(rest))
    _TRAPS.raise_if_any()


def seeds() -> Iterator[bytes]:
    """A valid file of each kind, fault and chain texts, and an auth sequence."""
    yield (b'\0{"name": "n", "instruction": "i", "rounds": [[{"prompt": "P: ", "echo": false, '
           b'"answer": "a"}], [{"prompt": "Q: ", "answer": "b"}]]}')
    yield b'\1{"commands": {"show version": "IOS", "x": {"stdout": "o", "exit_status": 3}}}'
    yield (b"\2throttle=100\ndelay-auth=0.5\nrefuse-channel=session\nno-exit-status\n"
           b"publickey,password\nkeyboard-interactive")
    yield b"\2fail-auth=0\nthrottle=1e3\npassword,password"
    yield b"\3" + bytes(range(40))


if __name__ == "__main__":
    main(test_one_input, seeds)
