# SPDX-License-Identifier: MIT
"""Commands that never touch the host: the ``commands=`` table, its JSON form, and what a
reply is (a string, a :class:`Reply`, or a callable that gets a :class:`Process`)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Union

from pylibssh_server.demo.files import load_json

__all__ = ["CommandTable", "Process", "Reply"]


@dataclass(frozen=True)
class Reply:
    """A canned answer: ``stdout`` and ``stderr`` after ``delay`` seconds, then the exit
    status."""

    stdout: str = ""
    stderr: str = ""
    exit_status: int = 0
    delay: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.stdout, str) or not isinstance(self.stderr, str):
            raise TypeError("Reply stdout and stderr must be str")
        if isinstance(self.exit_status, bool) or not isinstance(self.exit_status, int) or \
                not 0 <= self.exit_status <= 255:
            raise ValueError(f"exit_status must be an int from 0 to 255, not "
                             f"{self.exit_status!r}")
        if not isinstance(self.delay, (int, float)) or not 0 <= self.delay <= 3600:
            raise ValueError(f"delay must be 0 to 3600 seconds, not {self.delay!r}")


@dataclass
class Process:
    """What a callable reply gets: the command, its environment and terminal, and the
    client's stdin (with EOF) and stdout/stderr as binary files.  It runs in a thread of
    its own, so it may block; its return value (an int, None for 0) is the exit status."""

    command: str
    env: dict[str, str]
    term: str | None
    size: tuple[int, int] | None  # (columns, rows) of the pty, None without one
    stdin: BinaryIO
    stdout: BinaryIO
    stderr: BinaryIO


Handler = Callable[[Process], Union[int, None]]
ReplyLike = Union[str, Reply, Mapping[str, Any], Handler]


def _reply(value: Any, where: str) -> Reply | Handler:
    if isinstance(value, Reply) or callable(value):
        return value  # type: ignore[no-any-return]  # a callable of the user's table
    if isinstance(value, str):
        return Reply(stdout=value)
    if isinstance(value, Mapping):
        unknown = set(value) - {"stdout", "stderr", "exit_status", "delay"}
        if unknown:
            raise ValueError(f"{where}: unknown reply fields {sorted(unknown)}; use stdout, "
                             "stderr, exit_status, delay")
        try:
            return Reply(**dict(value))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None
    raise TypeError(f"{where}: a reply is a str, a Reply, a mapping or a callable, not "
                    f"{type(value).__name__}")


class CommandTable:
    """Exact command lines, then regular expressions (``re.Pattern`` keys, tried in order
    with ``fullmatch``), to replies; plus the scripted shell's ``prompt`` and ``banner``.

    Raises:
        TypeError, ValueError: a key or reply that is not of the documented form.
    """

    def __init__(self, commands: Mapping[str | re.Pattern[str], ReplyLike] | None = None,
                 *, prompt: str = "demo$ ", banner: str = "") -> None:
        if not isinstance(prompt, str) or not isinstance(banner, str):
            raise TypeError("prompt and banner must be str")
        self.prompt = prompt
        self.banner = banner
        self.exact: dict[str, Reply | Handler] = {}
        self.patterns: list[tuple[re.Pattern[str], Reply | Handler]] = []
        for key, value in (commands or {}).items():
            reply = _reply(value, f"command {key!r}")
            if isinstance(key, str):
                self.exact[key] = reply
            elif isinstance(key, re.Pattern):
                self.patterns.append((key, reply))
            else:
                raise TypeError(f"a command is a str or a compiled regular expression, not "
                                f"{type(key).__name__}")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> CommandTable:
        """Load ``{"commands": {...}, "prompt": ..., "banner": ...}`` (the CLI's
        ``--commands FILE``).

        Raises:
            ValueError: the file is not such a JSON object (the message names the file).
            OSError: the file cannot be read.
        """
        data = load_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("commands", {}), dict):
            raise ValueError(f"{os.fspath(path)}: expected an object with a \"commands\" object")
        unknown = set(data) - {"commands", "prompt", "banner"}
        if unknown:
            raise ValueError(f"{os.fspath(path)}: unknown fields {sorted(unknown)}")
        try:
            for value in data.get("commands", {}).values():
                if callable(value) or not isinstance(value, (str, dict)):
                    raise ValueError(f"a reply is a string or an object, not {value!r}")
            return cls(data.get("commands", {}), prompt=data.get("prompt", "demo$ "),
                       banner=data.get("banner", ""))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{os.fspath(path)}: {exc}") from None

    def lookup(self, command: str) -> Reply | Handler | None:
        """The reply for ``command``: an exact entry first, then the first matching pattern."""
        reply = self.exact.get(command)
        if reply is not None:
            return reply
        for pattern, value in self.patterns:
            if pattern.fullmatch(command):
                return value
        return None

    def __bool__(self) -> bool:
        return bool(self.exact or self.patterns)
