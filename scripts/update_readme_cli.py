#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Rewrite the DemoServer CLI reference in README.md from the parser itself, so that the
documented flags cannot drift from the real ones (tests/test_readme.py checks it)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- cli:start -->", "<!-- cli:end -->"


def cli_block() -> str:
    from pylibssh_server.demo.__main__ import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps to this: one width, whatever the terminal
    return f"{START}\n```text\n{build_parser().format_help().rstrip()}\n```\n{END}"


def main() -> int:
    text = README.read_text()
    new = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: cli_block(), text,
                 flags=re.S)
    if new == text:
        return 0
    README.write_text(new)
    print("README.md: CLI reference updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
