"""The key files next to the ledger (command.key, session.key, callback.key) on a real filesystem:
private, made once and then read, a damaged one refused by name, a full disk survived."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.session import load_secret
from appliance.webhooks import load_callback_secret
from tests.system.test_disk_full import fill, tmpfs
from watchdog.commands import load_key
from watchdog.keyfile import DamagedKey

LOADERS: dict[str, Callable[[Path], object]] = {
    "command.key": load_key,
    "session.key": lambda d: load_secret("", d),
    "callback.key": lambda d: load_callback_secret("", str(d / "ledger.sqlite3")),
}


@pytest.mark.parametrize("name", LOADERS)
def test_a_key_is_made_private_once_and_then_read(tmp_path: Path, name: str) -> None:
    load = LOADERS[name]
    key = load(tmp_path)
    assert (tmp_path / name).stat().st_mode & 0o777 == 0o600
    assert load(tmp_path) == key
    assert sorted(p.name for p in tmp_path.iterdir()) == [name], "no temp file left behind"


@pytest.mark.parametrize("name", LOADERS)
@pytest.mark.parametrize("damage", [b"", b"\0" * 64], ids=["empty", "zeros"])
def test_a_damaged_key_file_is_an_error_naming_it_not_a_new_key(
    tmp_path: Path, name: str, damage: bytes
) -> None:
    (tmp_path / name).write_bytes(damage)
    with pytest.raises(DamagedKey) as refused:
        LOADERS[name](tmp_path)
    assert str(tmp_path / name) in str(refused.value)
    assert "empty or damaged" in str(refused.value)
    assert (tmp_path / name).read_bytes() == damage, "left for the admin to restore"


def test_on_a_full_disk_the_key_lives_in_memory_for_the_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with tmpfs(tmp_path / "disk", 1024 * 1024) as disk:
        fill(disk, "filler")
        with caplog.at_level(logging.WARNING, logger="watchdog.keyfile"):
            first = load_callback_secret("", str(disk / "ledger.sqlite3"))
            again = load_callback_secret("", str(disk / "ledger.sqlite3"))
        assert first == again, "one secret for the whole run"
        assert first.startswith("whsec_")
        assert not (disk / "callback.key").exists()
        assert sorted(p.name for p in disk.iterdir()) == ["filler"], "no temp file left behind"
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot save {disk / 'callback.key'} (disk full): using a key for this run only"
    ]
