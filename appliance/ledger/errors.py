"""What the ledger refuses, as exceptions the front doors map to their replies."""

from __future__ import annotations


class StoreError(Exception):
    """Base of ledger errors the API maps to responses."""


class StorageFull(StoreError):
    """The disk is full: nothing new can be accepted (HTTP 507)."""


class QueueFull(StoreError):
    """More messages wait than the configured maximum (HTTP 503)."""


class NotFound(StoreError):
    """No such message."""


class Conflict(StoreError):
    """The request conflicts with the message's state (e.g. cancel after sending)."""


class IdempotencyMismatch(StoreError):
    """An idempotency key was reused with a different request."""


class OptedOut(StoreError):
    """The recipient sent STOP."""


class QuotaExceeded(StoreError):
    """The key used its messages for this hour or day (HTTP 429 with Retry-After)."""

    def __init__(self, window: str, limit: int, retry_after_s: int) -> None:
        super().__init__(f"{limit} messages per {window}")
        self.window = window
        self.limit = limit
        self.retry_after_s = retry_after_s


class KeyConflict(StoreError):
    """An imported key is already in the ledger as a revoked key."""


class LedgerUnreachable(StoreError):
    """The ledger's PostgreSQL server cannot be reached (refused, reset, timed out, shutting down):
    nothing was written by the statement that met it, except a COMMIT cut off on its way (see
    spool.py: ids chosen before the accept make even that one safe to write again)."""
