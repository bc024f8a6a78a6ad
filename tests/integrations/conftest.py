"""Integration tests reuse the whole-gateway fixtures: real daemon, simulator on ptys, real HTTP."""

from __future__ import annotations

import shutil

import pytest

from tests.system.conftest import fast_webhooks, gw, sim  # noqa: F401  (fixtures)


def tool(name: str) -> str:
    """The path of a system tool the Makefile's APT_PACKAGES installs; fail (not skip) without it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: run 'make system-deps' (Debian packages in APT_PACKAGES)")
    return path
