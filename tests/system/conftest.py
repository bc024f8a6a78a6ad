"""The `box` fixture of the CLI tests (test_cli, test_windows): a running gateway and its config file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from modem.simulator import Simulator
from tests.support.cli import Box
from tests.support.config_files import toml_text
from tests.support.gateway import gateway_config, run_gateway


@pytest.fixture
async def box(tmp_path: Path, sim: Simulator) -> AsyncIterator[Box]:
    raw = gateway_config(tmp_path, str(sim.primary_path))
    config = tmp_path / "smsgw.toml"
    config.write_text(toml_text(raw))
    async with run_gateway(raw, sim) as gw:
        await gw.gateway.modem_list[0][2].wait_ready(10)
        yield Box(gw, str(config))
