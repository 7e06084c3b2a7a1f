# SPDX-License-Identifier: MIT
"""What the fuzz harnesses share: the command line, seed writing and failure traps.

Each harness is a script run as
``python fuzz_X.py [--seeds DIR] [libFuzzer flags] CORPUS_DIR``: ``--seeds DIR`` (ours, removed
before libFuzzer sees the arguments) first writes the harness's seed inputs into ``DIR``.
"""

from __future__ import annotations

import logging
import os
import sys
import types
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import atheris


def check(condition: object, message: str) -> None:
    """An invariant of the target: AssertionError (a libFuzzer crash) when it does not hold.

    Not ``assert``, which ``python -O`` would strip, leaving a fuzzer that checks nothing.
    """
    if not condition:
        raise AssertionError(message)


def instrument_module(module: types.ModuleType) -> None:
    """Give libFuzzer coverage feedback from every function and method defined in ``module``.

    ``atheris.instrument_imports()`` only sees modules imported inside its block, and the
    package ``__init__`` imports ``keys``, ``demo.server`` and ``demo.client`` (and the
    interpreter ``ipaddress``) long before a harness starts; patching the code objects in
    place instruments them wherever they are referenced from.
    """
    def functions_of(values: Iterable[Any]) -> Iterable[types.FunctionType]:
        for value in values:
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if isinstance(value, property):
                yield from functions_of([value.fget, value.fset, value.fdel])
                continue
            value = getattr(value, "__wrapped__", value)  # functools.lru_cache and the like
            if isinstance(value, types.FunctionType) and value.__module__ == module.__name__:
                yield value

    for value in list(vars(module).values()):
        if isinstance(value, type) and value.__module__ == module.__name__:
            targets = functions_of(list(vars(value).values()))
        else:
            targets = functions_of([value])
        for function in targets:
            atheris.instrument_func(function)


def main(test_one_input: Callable[[bytes], None], seeds: Callable[[], Iterable[bytes]]) -> None:
    """Write the seeds if ``--seeds DIR`` is given, then run libFuzzer until its limits."""
    argv = list(sys.argv)
    if "--seeds" in argv:
        at = argv.index("--seeds")
        directory = argv[at + 1]
        del argv[at : at + 2]
        os.makedirs(directory, exist_ok=True)
        for number, data in enumerate(seeds()):
            with open(os.path.join(directory, f"seed-{number:03d}"), "wb") as f:
                f.write(data)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


class Traps:
    """Turns failures that Python only reports into exceptions raised after each input.

    * a ``ResourceWarning`` (an object closed by its ``__del__`` safety net, i.e. leaked by
      the target) or any other exception raised in ``__del__`` or a finaliser;
    * a log record at ERROR or above on the given loggers (the targets log, rather than
      raise, the bugs they survive: "internal server error").
    """

    def __init__(self, *loggers: str) -> None:
        self.problems: list[str] = []
        warnings.simplefilter("error", ResourceWarning)
        sys.unraisablehook = self._unraisable
        handler = _ListHandler(self.problems)
        for name in loggers:
            logger = logging.getLogger(name)
            logger.addHandler(handler)
            logger.propagate = False  # recorded here, not printed once per input

    def _unraisable(self, info: Any) -> None:
        self.problems.append(f"unraisable {info.exc_type.__name__}: {info.exc_value} "
                             f"in {info.object!r}")

    def raise_if_any(self) -> None:
        """Raise the first problem recorded since the last call."""
        if self.problems:
            problems, self.problems[:] = list(self.problems), []
            raise AssertionError("; ".join(problems))


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.ERROR)
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self._sink.append(f"logged {record.levelname} on {record.name}: {text}")
