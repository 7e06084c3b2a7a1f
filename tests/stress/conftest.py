# SPDX-License-Identifier: MIT
"""The stress suite's report: every test adds rows; the table is printed at the end."""

from __future__ import annotations

import os

import pytest

from stress import _support


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _support.ROWS:
        return
    text = _support.table()
    terminalreporter.write_sep("=", f"stress summary (STRESS_SCALE={_support.SCALE})")
    terminalreporter.write_line(text)
    out = os.environ.get("STRESS_REPORT")
    if out:
        # make stress runs several pytest sessions: each appends its rows to one table.
        lines = text.splitlines()
        with open(out, "a") as f:
            if f.tell() > 0:
                lines = lines[2:]
            f.write("\n".join(lines) + "\n")
