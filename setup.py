# SPDX-License-Identifier: MIT
"""setuptools entry: metadata lives in pyproject.toml; this only wires the cffi module."""

from setuptools import setup

setup(
    cffi_modules=["build_libssh.py:ffibuilder"],
    # cffi compiles the module against the stable ABI (_libssh.abi3.so): tag the wheel so
    # that one file installs on every CPython from requires-python up.
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
