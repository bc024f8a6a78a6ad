"""Webhook relay: delivers the ledger's outbox with Standard Webhooks signatures.

An outbox row is written in the same transaction as the state change it reports,
and marked delivered only after a 2xx: at-least-once, receivers dedupe on the
`webhook-id` header (the same across retries). A target that is down is retried
with exponential backoff and jitter until the retention window ends.

Each target (scheme, host, port) has its own queue, delivered in order by its own
worker; a failure defers that target's whole queue, so a dead receiver delays only
itself. Per-message callbacks (any key holder names them) go through the address
policy (appliance/addrpolicy.py); configured [[webhooks]] targets are the admin's.
Every webhook is signed: without `[api] callback_secret`, with a secret generated
at first start and kept in `callback.key` (0600) next to the ledger.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

import httpx

from appliance import twilio
from appliance.addrpolicy import AddressPolicy, ForbiddenAddress, PinnedTransport
from appliance.ledger import LedgerUnreachable, OutboxItem, StorageFull, Store, StoreError
from appliance.metrics import Metrics
from watchdog.keyfile import load_or_make

_LOGGER = logging.getLogger(__name__)

# Standard Webhooks: "timeout 15-30 s"; a LAN receiver that needs longer is broken.
REQUEST_TIMEOUT_S = 15.0
CONNECT_TIMEOUT_S = 5.0  # a LAN host answers a SYN in milliseconds; a dead one should cost little
BACKOFF_BASE_S = 5.0
BACKOFF_MAX_S = 3600.0
CONCURRENCY = 8  # targets delivered to at once; each target's own queue is serial
BATCH = 16  # webhooks a target's worker reads at a time
ERROR_PAUSE_S = 5.0  # after the ledger failed a target's worker
SECRET_FILE = "callback.key"  # noqa: S105  (a file name)


def load_callback_secret(configured: str, ledger_path: str) -> str:
    """`[api] callback_secret`, else `callback.key` next to the ledger (made 0600 at first start;
    an empty or damaged one is an error: receivers hold the secret it had)."""
    if configured:
        return configured
    if ledger_path == ":memory:":
        return _new_callback_secret().decode()
    path = Path(ledger_path).parent / SECRET_FILE
    made = False

    def make() -> bytes:
        nonlocal made
        made = True
        return _new_callback_secret() + b"\n"

    text = load_or_make(path, make, _valid_callback_secret).decode("ascii").strip()
    if made and path.exists():  # else it is this run's only (keyfile said so)
        _LOGGER.info(
            "generated a webhook signing secret in %s (set [api] callback_secret to choose one)", path
        )
    return text


def _new_callback_secret() -> bytes:
    return b"whsec_" + base64.b64encode(secrets.token_bytes(32))


def _valid_callback_secret(data: bytes) -> bool:
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        return False
    return bool(text) and text.isprintable()


def secret_bytes(secret: str) -> bytes:
    """A `whsec_<base64>` secret decodes to its bytes; any other text is used as UTF-8."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[len("whsec_") :], validate=True)
        except ValueError:
            pass
    return secret.encode()


def sign(secret: str, webhook_id: str, timestamp: int, payload: str) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{payload}">` (Standard Webhooks 1.0)."""
    mac = hmac.new(secret_bytes(secret), f"{webhook_id}.{timestamp}.{payload}".encode(), hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def retry_delay_s(attempts: int, rng: random.Random) -> float:
    """5 s, 10 s, 20 s ... capped at an hour, with jitter so targets coming back are not stampeded."""
    raw: float = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** max(0, attempts))
    return raw * rng.uniform(0.5, 1.0)


class Relay:
    """Drains the outbox while the daemon runs: one worker per target with webhooks due."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        retention_s: float,
        callback_secret: str = "",
        policy: AddressPolicy | None = None,
        configured: Iterable[str] = (),
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.retention_s = retention_s
        self.callback_secret = callback_secret
        self.policy = policy or AddressPolicy()
        self.configured = frozenset(configured)  # the admin's [[webhooks]] URLs: not policed
        self.rng = random.Random()  # noqa: S311  (jitter)
        self._client: httpx.AsyncClient | None = None
        self._guarded: httpx.AsyncClient | None = None
        self._workers: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        timeout = httpx.Timeout(REQUEST_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        async with (
            httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client,
            httpx.AsyncClient(
                timeout=timeout, follow_redirects=False, transport=PinnedTransport(self.policy)
            ) as guarded,
        ):
            self._client, self._guarded = client, guarded
            try:
                await self._dispatch()
            finally:
                for task in self._workers.values():
                    task.cancel()
                await asyncio.gather(*self._workers.values(), return_exceptions=True)

    async def _dispatch(self) -> None:
        while True:
            # Full disk: a delivery could not be marked done and would go out again and again.
            await self.store.writable.wait()
            self.store.outbox_changed.clear()  # before looking: a commit after this wakes us
            now = time.time()
            free = CONCURRENCY - len(self._workers)
            if free > 0:
                for target in await self.store.due_webhook_targets(now, busy=self._workers, limit=free):
                    task = asyncio.create_task(self._work(target), name=f"webhooks {target}")
                    self._workers[target] = task
                    task.add_done_callback(functools.partial(self._done, target))
            timeout = 30.0
            if len(self._workers) < CONCURRENCY:
                due = await self.store.next_webhook_due(busy=self._workers)
                if due is not None:
                    timeout = max(0.0, min(30.0, due - time.time()))
            if timeout == 0.0:
                continue
            try:
                async with asyncio.timeout(timeout):
                    await self.store.outbox_changed.wait()
            except TimeoutError:
                pass

    def _done(self, target: str, _task: asyncio.Task[None]) -> None:
        self._workers.pop(target, None)
        self.store.outbox_changed.set()  # a slot is free: look again

    async def _work(self, target: str) -> None:
        """Deliver the target's due webhooks in order; on a failure its whole queue waits."""
        try:
            await self._drain(target)
        except (StorageFull, LedgerUnreachable):  # said once by the ledger
            pass  # said once by the store; `_dispatch` waits until the disk has room again
        except StoreError as exc:
            _LOGGER.error("webhooks to %s: %s", target, exc)  # noqa: TRY400  (the ledger said it all)
            await asyncio.sleep(ERROR_PAUSE_S)  # hold the slot: no retry loop while the ledger fails
        except Exception:
            _LOGGER.exception("webhooks to %s failed", target)
            await asyncio.sleep(ERROR_PAUSE_S)

    async def _drain(self, target: str) -> None:
        while True:
            items = await self.store.due_webhooks(time.time(), limit=BATCH, target=target)
            if not items:
                return
            for item in items:
                if not self.store.writable.is_set():
                    return  # full disk: a delivery might not be marked done and go out again later
                delay = await self._deliver(item)
                if delay is not None:
                    await self.store.defer_webhook_target(
                        target, time.time() + delay, abandon_before=time.time() - self.retention_s
                    )
                    return

    def _standard_headers(self, item: OutboxItem, timestamp: int) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "user-agent": "smsgw-webhooks",
            "webhook-id": item.webhook_id,
            "webhook-timestamp": str(timestamp),
        }
        secret = item.secret or self.callback_secret
        if secret:
            headers["webhook-signature"] = sign(secret, item.webhook_id, timestamp, item.payload)
        return headers

    async def _deliver(self, item: OutboxItem) -> float | None:
        """One attempt; the delay before the target's next attempt if it failed, else None."""
        client = self._client if item.url in self.configured else self._guarded
        assert client is not None  # noqa: S101
        timestamp = int(time.time())
        url, content = item.url, item.payload.encode()
        if item.format == "twilio":
            # A Twilio-style StatusCallback: Twilio's form fields, signed with X-Twilio-Signature.
            form = twilio.callback_form(json.loads(item.payload)["data"])
            content = urllib.parse.urlencode(form).encode()
            headers = {
                "content-type": "application/x-www-form-urlencoded",
                "user-agent": "smsgw-webhooks",
                "i-twilio-idempotency-token": item.webhook_id,
            }
            if self.callback_secret:
                headers["x-twilio-signature"] = twilio.signature(self.callback_secret, url, form)
        else:
            headers = self._standard_headers(item, timestamp)
        error = ""
        gone = False
        try:
            response = await client.post(url, content=content, headers=headers)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
            gone = isinstance(exc.__cause__, ForbiddenAddress)  # the policy says never: no retry
        else:
            if 200 <= response.status_code < 300:
                await self.store.webhook_result(item.id, ok=True)
                self.metrics.webhook_deliveries_total.labels(result="ok").inc()
                return None
            error = f"HTTP {response.status_code}"
            gone = response.status_code == 410  # Standard Webhooks: 410 Gone disables the endpoint
        if gone or time.time() - item.created_at > self.retention_s:
            _LOGGER.error(
                "webhook %s to %s abandoned after %d attempts: %s",
                item.webhook_id,
                item.url,
                item.attempts + 1,
                error,
            )
            await self.store.webhook_result(item.id, ok=False, error=error, next_at=None)
            self.metrics.webhook_deliveries_total.labels(result="abandoned").inc()
            return None
        delay = retry_delay_s(item.attempts, self.rng)
        _LOGGER.info("webhook %s to %s failed (%s); retry in %.0f s", item.webhook_id, item.url, error, delay)
        await self.store.webhook_result(item.id, ok=False, error=error, next_at=time.time() + delay)
        self.metrics.webhook_deliveries_total.labels(result="retry").inc()
        return delay
