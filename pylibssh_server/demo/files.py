# SPDX-License-Identifier: MIT
"""Reading the DemoServer's configuration files (``--kbdint FILE``, ``--commands FILE``)."""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["load_json"]


def load_json(path: str | os.PathLike[str]) -> Any:
    """The JSON value in the UTF-8 file ``path``.

    Raises:
        ValueError: the file is not UTF-8 JSON (the message names the file).
        OSError: the file cannot be read.
    """
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{os.fspath(path)}: not UTF-8 JSON: {exc}") from None
