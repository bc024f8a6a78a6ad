"""System programs the tests drive for real (Prometheus' promtool, Alertmanager, ...)."""

from __future__ import annotations

import shutil

import pytest


def tool(name: str) -> str:
    """The path of a system tool the Makefile's APT_PACKAGES installs; fail (not skip) without it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: run 'make system-deps' (Debian packages in APT_PACKAGES)")
    return path
