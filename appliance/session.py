"""Status-page sessions: HMAC-SHA256 signed cookies, CSRF synchronizer tokens, the admin password.

A session cookie exists for every visitor (anonymous until login), so every form, the
login form included, carries a CSRF token tied to it. Login rotates the session id.

The admin password is stored as a PBKDF2-SHA256 string in `[web] admin_password_hash`;
make one with:

    python3 -c 'import getpass,hashlib,os,base64 as b;s=os.urandom(16);n=600000;print("pbkdf2_sha256$%d$%s$%s"%(n,b.b64encode(s).decode(),b.b64encode(hashlib.pbkdf2_hmac("sha256",getpass.getpass().encode(),s,n)).decode()))'

(`hash_password()` below produces the same format.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

COOKIE = "smsgw_session"
SESSION_TTL_S = 12 * 3600  # a working day at the box; then log in again
PBKDF2_ITERATIONS = 600_000  # OWASP 2023 figure for PBKDF2-HMAC-SHA256
KEY_FILE = "session.key"


class BadPasswordHash(ValueError):
    """`[web] admin_password_hash` is not a pbkdf2_sha256$iterations$salt$hash string."""


@dataclass(frozen=True)
class Session:
    sid: str  # random; the CSRF token is derived from it
    admin: str  # who logged in ("password" or "key <name>"); "" when anonymous
    issued_at: float

    @property
    def is_admin(self) -> bool:
        return bool(self.admin)


class Signer:
    """Signs and verifies session cookies and derives CSRF tokens with one secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def new(self, admin: str = "") -> Session:
        return Session(secrets.token_urlsafe(18), admin, time.time())

    def dump(self, session: Session) -> str:
        body = json.dumps({"sid": session.sid, "admin": session.admin, "iat": session.issued_at})
        payload = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
        return f"{payload}.{self._mac(payload)}"

    def load(self, cookie: str | None, *, now: float | None = None) -> Session | None:
        """The session in a cookie, or None when absent, forged or expired."""
        if not cookie or "." not in cookie:
            return None
        payload, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            session = Session(str(doc["sid"]), str(doc["admin"]), float(doc["iat"]))
        except (ValueError, KeyError, TypeError):
            return None
        now = time.time() if now is None else now
        if not 0 <= now - session.issued_at <= SESSION_TTL_S:
            return None
        return session

    def csrf_token(self, session: Session) -> str:
        return hmac.new(self._secret, f"csrf|{session.sid}".encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session | None, token: str | None) -> bool:
        return (
            session is not None and bool(token) and hmac.compare_digest(str(token), self.csrf_token(session))
        )

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def load_secret(configured: str, directory: Path | None) -> bytes:
    """The configured secret, else `session.key` next to the ledger (created 0600), else a random one."""
    if configured:
        return configured.encode()
    if directory is None:
        return secrets.token_bytes(32)  # an in-memory ledger: sessions end with the process
    path = directory / KEY_FILE
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    data = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return data


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
