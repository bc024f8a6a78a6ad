"""Webhook relay: delivers the ledger's outbox with Standard Webhooks signatures.

An outbox row is written in the same transaction as the state change it reports,
and marked delivered only after a 2xx: at-least-once, receivers dedupe on the
`webhook-id` header (the same across retries). A target that is down is retried
with exponential backoff and jitter until the retention window ends.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import random
import time
import urllib.parse

import httpx

from appliance import twilio
from appliance.metrics import Metrics
from appliance.store import OutboxItem, Store

_LOGGER = logging.getLogger(__name__)

# Standard Webhooks: "timeout 15-30 s"; a LAN receiver that needs longer is broken.
REQUEST_TIMEOUT_S = 15.0
BACKOFF_BASE_S = 5.0
BACKOFF_MAX_S = 3600.0
CONCURRENCY = 4


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
    """Drains the outbox while the daemon runs."""

    def __init__(
        self, store: Store, metrics: Metrics, *, retention_s: float, callback_secret: str = ""
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.retention_s = retention_s
        self.callback_secret = callback_secret
        self.rng = random.Random()  # noqa: S311  (jitter)
        self._client: httpx.AsyncClient | None = None

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, follow_redirects=False) as client:
            self._client = client
            sem = asyncio.Semaphore(CONCURRENCY)
            while True:
                # Full disk: a delivery could not be marked done and would go out again and again.
                await self.store.writable.wait()
                now = time.time()
                items = await self.store.due_webhooks(now, limit=CONCURRENCY * 4)
                if items:

                    async def one(item: OutboxItem) -> None:
                        async with sem:
                            await self._deliver(item)

                    await asyncio.gather(*(one(i) for i in items))
                    continue
                due = await self.store.next_webhook_due()
                timeout = 30.0 if due is None else max(0.0, min(30.0, due - time.time()))
                self.store.outbox_changed.clear()
                try:
                    async with asyncio.timeout(timeout):
                        await self.store.outbox_changed.wait()
                except TimeoutError:
                    pass

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

    async def _deliver(self, item: OutboxItem) -> None:
        assert self._client is not None  # noqa: S101
        timestamp = int(time.time())
        url, content = item.url, item.payload.encode()
        if url.startswith(twilio.CALLBACK_MARKER):
            # A Twilio-style StatusCallback: Twilio's form fields, signed with X-Twilio-Signature.
            url = url[len(twilio.CALLBACK_MARKER) :]
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
            response = await self._client.post(url, content=content, headers=headers)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            if 200 <= response.status_code < 300:
                await self.store.webhook_result(item.id, ok=True)
                self.metrics.webhook_deliveries_total.labels(result="ok").inc()
                return
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
            return
        delay = retry_delay_s(item.attempts, self.rng)
        _LOGGER.info("webhook %s to %s failed (%s); retry in %.0f s", item.webhook_id, item.url, error, delay)
        await self.store.webhook_result(item.id, ok=False, error=error, next_at=time.time() + delay)
        self.metrics.webhook_deliveries_total.labels(result="retry").inc()
