"""Status-page sessions: signed cookies holding a random id, admin sessions kept in the ledger.

A session cookie exists for every visitor (anonymous until login), so every form, the
login form included, carries a CSRF token tied to it. The cookie holds only a random id
and its issue time, signed (HMAC-SHA256); who is logged in is known only server-side
(`web_sessions` in the ledger, keyed by the id's SHA-256). Logout ends that row, and a
session opened with an admin API key ends the moment the key is revoked or loses the
admin scope. Login rotates the session id.

The admin password is stored as a PBKDF2-SHA256 string in `[web] admin_password_hash`;
make one with:

    python3 -c 'import getpass,hashlib,os,base64 as b;s=os.urandom(16);n=600000;print("pbkdf2_sha256$%d$%s$%s"%(n,b.b64encode(s).decode(),b.b64encode(hashlib.pbkdf2_hmac("sha256",getpass.getpass().encode(),s,n)).decode()))'

(`hash_password()` below produces the same format.) Checking it costs ~0.4 s of CPU, so it
runs on `HashPool`'s threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from appliance import auth
from appliance.ledger import Store
from watchdog.keyfile import load_or_make

COOKIE = "smsgw_session"
SESSION_TTL_S = 12 * 3600  # a working day at the box; then log in again
PBKDF2_ITERATIONS = 600_000  # OWASP 2023 figure for PBKDF2-HMAC-SHA256
KEY_FILE = "session.key"
KEY_BYTES = 32
MAX_COOKIE_CHARS = 512  # ours are ~110; longer is not ours and is not worth a MAC
HASH_WORKERS = 2  # concurrent PBKDF2 jobs; a third login attempt meanwhile is refused (429)
HASH_NICE = 19  # the hashing threads' nice value: the lowest priority


class BadPasswordHash(ValueError):
    """`[web] admin_password_hash` is not a pbkdf2_sha256$iterations$salt$hash string."""


class HashPoolBusy(Exception):
    """Every password-hashing thread is busy: refuse the attempt instead of queueing it."""


@dataclass(frozen=True)
class Session:
    sid: str  # random; the CSRF token is derived from it
    admin: str  # who logged in ("password" or "API key <name>"); "" when anonymous
    issued_at: float
    key_id: int | None = None  # the admin API key this session was opened with

    @property
    def is_admin(self) -> bool:
        return bool(self.admin)


class Signer:
    """Signs and verifies session cookies and derives CSRF tokens with one secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def new(self) -> Session:
        return Session(secrets.token_urlsafe(18), "", time.time())

    def dump(self, session: Session) -> str:
        body = json.dumps({"sid": session.sid, "iat": session.issued_at})
        payload = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
        return f"{payload}.{self._mac(payload)}"

    def load(self, cookie: str | None, *, now: float | None = None) -> Session | None:
        """The (anonymous) session in a cookie, or None when absent, malformed, forged or expired."""
        if not cookie or len(cookie) > MAX_COOKIE_CHARS or not cookie.isascii() or "." not in cookie:
            return None  # a cookie from a hostile client may hold any bytes: none of that is ours
        payload, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            return None
        try:
            doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            session = Session(str(doc["sid"]), "", float(doc["iat"]))
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        now = time.time() if now is None else now
        if not 0 <= now - session.issued_at <= SESSION_TTL_S:
            return None
        return session

    def csrf_token(self, session: Session) -> str:
        return hmac.new(self._secret, f"csrf|{session.sid}".encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session | None, token: str | None) -> bool:
        if session is None or not token:
            return False
        # Bytes, not str: compare_digest raises on non-ASCII text, and the token comes from a form.
        return hmac.compare_digest(token.encode(), self.csrf_token(session).encode())

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class Sessions:
    """Admin sessions in the ledger: the cookie names one, the ledger says whether it still lives."""

    def __init__(self, store: Store, signer: Signer) -> None:
        self.store = store
        self.signer = signer

    async def resolve(self, session: Session) -> Session:
        """The cookie's session as admin when its ledger row lives; as it came (anonymous) otherwise."""
        row = await self.store.live_web_session(_digest(session.sid), time.time())
        if row is None:
            return session  # anonymous, or logged out / expired: a visitor like any other
        actor, key_id = row
        if key_id is not None:
            key = await self.store.get_key(key_id)
            if key is None or key.revoked_at is not None or not auth.allows(key, "admin"):
                return session  # the key was revoked (or lost admin): the session ended with it
        return Session(session.sid, actor, session.issued_at, key_id)

    async def start(self, actor: str, *, key_id: int | None, address: str) -> Session:
        """A new admin session under a fresh id (no session fixation)."""
        fresh = self.signer.new()
        await self.store.start_web_session(
            _digest(fresh.sid),
            actor,
            key_id=key_id,
            address=address,
            created_at=fresh.issued_at,
            expires_at=fresh.issued_at + SESSION_TTL_S,
        )
        return Session(fresh.sid, actor, fresh.issued_at, key_id)

    async def end(self, session: Session) -> None:
        """Logout: the id is dead server-side, whatever copy of the cookie survives."""
        await self.store.end_web_session(_digest(session.sid), time.time())


class HashPool:
    """PBKDF2 checks on a few threads (hashlib releases the GIL); more at once are refused, not queued."""

    def __init__(self, workers: int = HASH_WORKERS) -> None:
        self.workers = workers
        self._executor = ThreadPoolExecutor(
            workers, thread_name_prefix="pbkdf2", initializer=_lowest_priority
        )
        self._busy = 0

    @property
    def busy(self) -> int:
        return self._busy

    async def check(self, password: str, stored: str) -> bool:
        """check_password on a pool thread; HashPoolBusy when every thread is taken."""
        if self._busy >= self.workers:
            raise HashPoolBusy
        self._busy += 1
        job = asyncio.get_running_loop().run_in_executor(self._executor, check_password, password, stored)
        # The slot is freed when the hash finishes, not when a disconnecting client stops waiting.
        job.add_done_callback(self._release)
        return await asyncio.shield(job)

    def _release(self, _job: asyncio.Future[bool]) -> None:
        self._busy -= 1


def _lowest_priority() -> None:
    """Hashing threads yield the CPU to the event loop (Linux nice is per thread): a login may
    take longer while the box is busy, /healthz and the dispatcher do not."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_NICE)


def _digest(sid: str) -> str:
    """The ledger keeps the id's SHA-256: reading the ledger does not hand out live sessions."""
    return hashlib.sha256(sid.encode()).hexdigest()


def load_secret(configured: str, directory: Path | None) -> bytes:
    """The configured secret, else `session.key` next to the ledger (created 0600), else a random one."""
    if configured:
        return configured.encode()
    if directory is None:
        return secrets.token_bytes(KEY_BYTES)  # an in-memory ledger: sessions end with the process
    return load_or_make(directory / KEY_FILE, lambda: secrets.token_bytes(KEY_BYTES), _valid_secret)


def _valid_secret(data: bytes) -> bool:
    """32 random bytes; fewer, or only zeros (a block a power cut left unwritten), are damage."""
    return len(data) >= KEY_BYTES and data.strip(b"\0") != b""


def hash_password(password: str, *, iterations: int = PBKDF2_ITERATIONS) -> str:
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def parse_password_hash(stored: str) -> tuple[int, bytes, bytes]:
    """(iterations, salt, digest); BadPasswordHash names what is wrong."""
    parts = stored.split("$")
    if len(parts) != 4 or parts[0] != "pbkdf2_sha256":
        raise BadPasswordHash("expected pbkdf2_sha256$<iterations>$<salt base64>$<hash base64>")
    try:
        iterations = int(parts[1])
        salt = base64.b64decode(parts[2], validate=True)
        digest = base64.b64decode(parts[3], validate=True)
    except ValueError:
        raise BadPasswordHash("iterations must be an integer and salt/hash base64") from None
    if iterations < 1 or not salt or len(digest) != 32:
        raise BadPasswordHash("iterations must be positive, the salt non-empty and the hash 32 bytes")
    return iterations, salt, digest


def check_password(password: str, stored: str) -> bool:
    """Whether `password` matches the stored PBKDF2 string (constant-time comparison)."""
    if not stored or not password:
        return False
    iterations, salt, digest = parse_password_hash(stored)
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return hmac.compare_digest(candidate, digest)
