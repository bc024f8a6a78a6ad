"""The API on its own (tests/appliance): its test config, the keys a test holds, and
`FakeGateway`, which stands in for the running daemon's view of its modems (the modem side
is tested against the simulator elsewhere); the API's job is HTTP and the ledger.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
from starlette.applications import Starlette

from appliance.config import ApiConfig, Config, GatewayConfig, StoreConfig
from appliance.status import GatewayView

# The box's own files (the page's session key) when the ledger is on PostgreSQL: a directory of
# this test process, never /var/lib/smsgw (a SQLite ledger keeps them beside its file).
_BOX_DIR = Path(tempfile.mkdtemp(prefix="smsgw-box-"))
atexit.register(shutil.rmtree, _BOX_DIR, True)

TEST_CONFIG = Config(
    gateway=GatewayConfig(name="test-gw", default_region="DE"),
    api=ApiConfig(max_body_bytes=16384, max_text_chars=500, queue_max=50),
    store=StoreConfig(path=str(_BOX_DIR / "ledger.sqlite3")),
)


def ready_modem(name: str = "gsm0", **overrides: Any) -> dict[str, Any]:
    """A modem as the daemon reports it when all is well."""
    modem: dict[str, Any] = {
        "name": name,
        "port": f"/dev/{name}",
        "state": "ready",
        "manufacturer": "Quectel",
        "model": "EC25",
        "revision": "EC25EFAR06A03M4G",
        "imei": "866758040000000",
        "sim": "ready",
        "iccid": "8949000000000000000",
        "operator": "Telekom.de",
        "registration": {"status": 1, "text": "registered, home network", "technology": "LTE"},
        "signal": {"dbm": -71, "bars": 4},
        "storage": {"memory": "ME", "used": 0, "total": 255},
        "last_error": None,
        "reopens": 0,
        "resets": 0,
    }
    modem.update(overrides)
    return modem


@dataclass
class FakeGateway:
    """The daemon's side of `GatewayView`, with facts a test sets directly."""

    modem_list: list[dict[str, Any]] = field(default_factory=lambda: [ready_modem()])
    is_ready: tuple[bool, str] = (True, "modem gsm0 registered; ledger writable")
    wakes: int = 0
    start: float = field(default_factory=lambda: time.time() - 120)
    fail_with: Exception | None = None

    def modems(self) -> list[dict[str, Any]]:
        if self.fail_with is not None:
            raise self.fail_with
        return [dict(m) for m in self.modem_list]

    def ready(self) -> tuple[bool, str]:
        return self.is_ready

    def wake(self, *, chains: bool = True) -> None:
        self.wakes += 1

    def started_at(self) -> float:
        return self.start


def as_view(gateway: FakeGateway) -> GatewayView:
    """A FakeGateway as the app's `GatewayView`. It has no `reset_modem` on purpose (the view's
    optional member): the page then says resets are unavailable; `ResettableGateway` adds it."""
    return cast("GatewayView", gateway)


ClientFactory = Callable[[Starlette], Awaitable[httpx.AsyncClient]]


@dataclass(frozen=True)
class Keys:
    send: str
    read: str
    admin: str
    send_read: str
    revoked: str

    def auth(self, which: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {getattr(self, which)}"}
