# SPDX-License-Identifier: MIT
"""How a DemoServer decides logins: per-user passwords, keyboard-interactive rounds, and
authentication chains (OpenSSH's ``AuthenticationMethods``).  Pure policy: nothing here talks
to libssh; :class:`~pylibssh_server.demo.client.DemoClient` asks it and answers the client."""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from pylibssh_server import AuthMethod
from pylibssh_server.demo.files import load_json

__all__ = ["AuthChains", "Kbdint", "KbdintPrompt", "check_users", "method_mask", "password_ok"]

#: Method names as the SSH protocol (and OpenSSH's ``AuthenticationMethods``) spells them.
METHOD_FLAGS = {
    "none": AuthMethod.NONE,
    "password": AuthMethod.PASSWORD,
    "publickey": AuthMethod.PUBLICKEY,
    "keyboard-interactive": AuthMethod.INTERACTIVE,
}
#: Bounds on configuration read from files: a typo must not become a huge allocation.
MAX_ROUNDS = 32
MAX_PROMPTS = 32
MAX_CHAINS = 32
MAX_CHAIN_LENGTH = 8


def method_mask(names: Iterable[str]) -> AuthMethod:
    """The :class:`AuthMethod` mask advertising ``names`` (protocol spellings)."""
    mask = AuthMethod.UNKNOWN
    for name in names:
        mask |= METHOD_FLAGS[name]
    return mask


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                               expected.encode("utf-8", "surrogateescape"))


def check_users(users: Any) -> dict[str, str]:
    """``users=`` checked: a mapping of non-empty str user names to str passwords.

    Raises:
        TypeError: not such a mapping.
        ValueError: an empty user name.
    """
    if users is None:
        return {}
    if not isinstance(users, Mapping):
        raise TypeError(f"users must map user names to passwords, not {type(users).__name__}")
    checked = dict(users)
    for user, secret in checked.items():
        if not isinstance(user, str) or not isinstance(secret, str):
            raise TypeError("users must map str user names to str passwords")
        if not user:
            raise ValueError("users: a user name cannot be empty")
    return checked


def password_ok(users: Mapping[str, str], password: str | None, user: str,
                given: str) -> bool:
    """Whether ``given`` lets ``user`` in: a user listed in ``users`` needs that user's
    password; any other user gets in with ``password`` when one is set."""
    expected = users.get(user, password)
    return expected is not None and _equal(given, expected)


@dataclass(frozen=True)
class KbdintPrompt:
    """One keyboard-interactive prompt, whether the client echoes the answer, and the answer
    that must be given."""

    prompt: str
    echo: bool
    answer: str

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not isinstance(self.answer, str):
            raise TypeError("a kbdint prompt and its answer must be str")
        if not isinstance(self.echo, bool):
            raise TypeError("a kbdint prompt's echo must be true or false")


_PromptLike = Union[KbdintPrompt, Mapping[str, Any]]


@dataclass(frozen=True)
class Kbdint:
    """Keyboard-interactive: ``name`` and ``instruction`` shown to the user, then one or more
    rounds of prompts.  All answers of all rounds must match; the first wrong round denies.

    The default is the contract's single round: ``Password: `` then ``Token: `` (both
    echoed), answered ``foo`` and ``bar``.
    """

    name: str = "Demo server login"
    instruction: str = "Enter your details."
    rounds: tuple[tuple[KbdintPrompt, ...], ...] = (
        (KbdintPrompt("Password: ", True, "foo"), KbdintPrompt("Token: ", True, "bar")),)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not isinstance(self.instruction, str):
            raise TypeError("kbdint name and instruction must be str")
        if not 1 <= len(self.rounds) <= MAX_ROUNDS:
            raise ValueError(f"kbdint needs 1 to {MAX_ROUNDS} rounds, not {len(self.rounds)}")
        for number, prompts in enumerate(self.rounds, 1):
            if not 1 <= len(prompts) <= MAX_PROMPTS:
                raise ValueError(f"kbdint round {number} needs 1 to {MAX_PROMPTS} prompts")
            if not all(isinstance(p, KbdintPrompt) for p in prompts):
                raise TypeError(f"kbdint round {number}: prompts must be KbdintPrompt")

    @classmethod
    def from_data(cls, data: Any, where: str = "kbdint") -> Kbdint:
        """Build from the JSON form ``{"name", "instruction", "rounds": [[{"prompt", "echo",
        "answer"}, ...], ...]}`` (``echo`` defaults to false, as for a password).

        Raises:
            ValueError: anything else (the message says what and where).
        """
        if isinstance(data, Kbdint):
            return data
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: expected an object with \"rounds\"")
        unknown = set(data) - {"name", "instruction", "rounds"}
        if unknown:
            raise ValueError(f"{where}: unknown fields {sorted(unknown)}; use name, "
                             "instruction, rounds")
        rounds = data.get("rounds")
        if not isinstance(rounds, Sequence) or isinstance(rounds, str) or not rounds:
            raise ValueError(f"{where}: \"rounds\" must be a non-empty list of rounds")
        parsed = tuple(tuple(cls._prompt(p, f"{where}: round {i}")
                             for p in cls._round(r, f"{where}: round {i}"))
                       for i, r in enumerate(rounds, 1))
        try:
            return cls(name=data.get("name", cls.name),
                       instruction=data.get("instruction", cls.instruction), rounds=parsed)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None

    @staticmethod
    def _round(value: Any, where: str) -> Sequence[Any]:
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ValueError(f"{where}: a round is a list of prompts")
        return value

    @staticmethod
    def _prompt(value: _PromptLike, where: str) -> KbdintPrompt:
        if isinstance(value, KbdintPrompt):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: a prompt is an object with prompt, echo, answer")
        unknown = set(value) - {"prompt", "echo", "answer"}
        missing = {"prompt", "answer"} - set(value)
        if unknown or missing:
            raise ValueError(f"{where}: a prompt has \"prompt\", \"answer\" and optionally "
                             f"\"echo\" (unknown {sorted(unknown)}, missing {sorted(missing)})")
        try:
            return KbdintPrompt(value["prompt"], value.get("echo", False), value["answer"])
        except TypeError as exc:
            raise ValueError(f"{where}: {exc}") from None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Kbdint:
        """Load the JSON form from a file (the CLI's ``--kbdint FILE``).

        Raises:
            ValueError: the file is not such a JSON object (the message names the file).
            OSError: the file cannot be read.
        """
        data = load_json(path)
        return cls.from_data(data, os.fspath(path))

    def matches(self, round_index: int, answers: Sequence[str]) -> bool:
        """Whether ``answers`` are exactly those of round ``round_index``."""
        prompts = self.rounds[round_index]
        return len(answers) == len(prompts) and all(
            _equal(a, p.answer) for a, p in zip(answers, prompts))

    def accepted_text(self) -> str:
        """The ``auth_kbdint`` event of a success: ``accepted with 'foo' and 'bar'``."""
        answers = [p.answer for prompts in self.rounds for p in prompts]
        return "accepted with " + " and ".join(f"'{a}'" for a in answers)


class AuthChains:
    """OpenSSH's ``AuthenticationMethods``: a client is in once it passed every method of
    one chain, in order.  Each step but the last is a partial success, after which only the
    methods that come next in a chain still consistent with the steps passed are offered.

    Args:
        chains: each a comma list (``"publickey,password"``) or a sequence of method names.

    Raises:
        ValueError: an unknown or unserved method, ``none`` in a chain, an empty chain, a
            method twice in one chain, or too many chains.
    """

    chains: tuple[tuple[str, ...], ...]

    def __init__(self, chains: Iterable[str | Iterable[str]]) -> None:
        if isinstance(chains, str):
            chains = [chains]
        parsed: list[tuple[str, ...]] = []
        for chain in chains:
            if isinstance(chain, str):
                chain = chain.split(",")
            if not isinstance(chain, Iterable):
                raise TypeError(f"an auth chain is a comma list or a sequence of method "
                                f"names, not {type(chain).__name__}")
            names = tuple(str(name).strip() for name in chain)
            text = ",".join(names)
            if not names or not all(names):
                raise ValueError(f"auth chain {text!r}: empty method name")
            for name in names:
                if name not in METHOD_FLAGS:
                    raise ValueError(f"auth chain {text!r}: unknown method {name!r}; use "
                                     "password, publickey, keyboard-interactive")
                if name == "none":
                    raise ValueError(f"auth chain {text!r}: \"none\" cannot be a step")
            if len(set(names)) != len(names):
                raise ValueError(f"auth chain {text!r}: a method appears twice")
            if len(names) > MAX_CHAIN_LENGTH:
                raise ValueError(f"auth chain {text!r}: more than {MAX_CHAIN_LENGTH} steps")
            parsed.append(names)
        if not parsed:
            raise ValueError("auth_chains is empty")
        if len(parsed) > MAX_CHAINS:
            raise ValueError(f"more than {MAX_CHAINS} auth chains")
        self.chains = tuple(parsed)

    def methods(self) -> AuthMethod:
        """Every method any chain uses."""
        return method_mask(name for chain in self.chains for name in chain)

    def next_methods(self, passed: Sequence[str]) -> AuthMethod:
        """The methods offered after the steps ``passed``."""
        n = len(passed)
        return method_mask(chain[n] for chain in self.chains
                           if len(chain) > n and chain[:n] == tuple(passed))

    def complete(self, passed: Sequence[str]) -> bool:
        """Whether ``passed`` is a whole chain."""
        return tuple(passed) in self.chains

    def __repr__(self) -> str:
        return f"AuthChains({[','.join(c) for c in self.chains]!r})"
