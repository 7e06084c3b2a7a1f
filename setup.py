# SPDX-License-Identifier: MIT
"""setuptools entry: metadata lives in pyproject.toml; this only wires the cffi module."""

from setuptools import setup

setup(cffi_modules=["build_libssh.py:ffibuilder"])
