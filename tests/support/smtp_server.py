"""A real SMTP server for the e-mail tests: aiosmtpd in its own thread, on a free local port."""

from __future__ import annotations

import contextlib
import email
import email.policy
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support.certificates import self_signed
from tests.support.ports import free_port

USER = "watchdog"
PASSWORD = "s3cret-pass"  # noqa: S105  (the test server's own credential)


@dataclass
class Inbox:
    """What the server accepted, and how it answers RCPT (`refuse`: address -> reply line)."""

    refuse: dict[str, str] = field(default_factory=dict)
    received: list[tuple[tuple[str, ...], Message]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def messages(self) -> list[tuple[tuple[str, ...], Message]]:
        with self.lock:
            return list(self.received)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        # Read as a mail client does: folded header lines unfolded, encoded words decoded.
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        with self.lock:
            self.received.append((tuple(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        if ok:
            with self.lock:
                self.logins.append(USER)
        return AuthResult(success=ok, handled=False)


@dataclass
class Server:
    host: str
    port: int
    inbox: Inbox
    cert: Path | None


@contextlib.contextmanager
def smtp_server(tmp: Path, *, starttls: bool = False, auth: bool = False) -> Iterator[Server]:
    """aiosmtpd on 127.0.0.1; with `starttls` a throwaway certificate (openssl), with `auth` USER/PASSWORD."""
    inbox = Inbox()
    kwargs: dict[str, Any] = {}
    cert: Path | None = None
    if starttls:
        cert, key = self_signed(tmp)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        kwargs.update(tls_context=context, require_starttls=True)
    if auth:
        kwargs.update(authenticator=inbox.authenticate, auth_required=True, auth_require_tls=starttls)
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield Server("127.0.0.1", port, inbox, cert)
    finally:
        controller.stop()
