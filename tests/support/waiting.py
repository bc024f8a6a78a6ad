"""Waiting on a condition with a deadline, never on the clock alone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def eventually(predicate: Callable[[], Any], timeout_s: float = 10.0, interval_s: float = 0.02) -> Any:
    """Poll an async or sync predicate until truthy; fail at the deadline."""
    async with asyncio.timeout(timeout_s):
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(interval_s)
