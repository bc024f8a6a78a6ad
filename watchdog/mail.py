"""E-mail through the operator's `[smtp]` server: the last step of an escalation chain.

Here, not in appliance/, because the watchdog mails too and never imports appliance/; the daemon
reuses it (appliance/config.py takes `SmtpSettings` as its `[smtp]` section). One message per
target, so a target never learns the others and each gets its own outcome. Every header value is
checked for CR/LF (a subject built from modem or SMS text must not add headers), the whole
exchange is bounded by `timeout_s`, and a failure says whether trying again later can help: a 4xx
reply, a refused or dropped connection, a timeout are transient; a 5xx reply, a certificate the
box does not trust, a server without the STARTTLS it was told to use are permanent.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

import aiosmtplib

MAX_SUBJECT_CHARS = 200
MAX_TIMEOUT_S = 300.0
# A conservative address: dot-atom local part, host name domain; nothing a header could be bent with.
_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_HOST = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
MAX_ADDRESS_CHARS = 254


class SmtpConfigError(ValueError):
    """An `[smtp]` value is invalid; the message names the key."""


class MailError(Exception):
    """A message was not accepted; `transient` says whether a later try may succeed."""

    def __init__(self, reason: str, *, transient: bool, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.code = code


@dataclass(frozen=True)
class SmtpSettings:
    """`[smtp]`: validated when made, so a bad value fails `config check`, not the first alert."""

    host: str = ""  # empty: no e-mail (a chain's mailto: steps are refused at config check)
    port: int = 587
    starttls: bool = True  # required when true: a server that does not offer it is refused
    user: str = ""  # with password: AUTH after STARTTLS
    password: str = ""
    password_file: str = ""  # instead of password: a file holding it (systemd credentials, 0600)
    from_: str = ""  # the `from` key; default: smsgw@<this host's name>
    timeout_s: float = 20.0  # the whole exchange, connect to QUIT
    ca_file: str = ""  # PEM bundle trusted for STARTTLS instead of the system's (a LAN CA)

    def __post_init__(self) -> None:
        if self.host and not (_HOST.fullmatch(self.host) or _ip(self.host)):
            raise SmtpConfigError(f"smtp.host: {self.host!r} is not a host name or address")
        if not 1 <= self.port <= 65535:
            raise SmtpConfigError(f"smtp.port: must be 1 to 65535, got {self.port}")
        if not 0 < self.timeout_s <= MAX_TIMEOUT_S:
            raise SmtpConfigError(f"smtp.timeout_s: must be above 0 and at most {MAX_TIMEOUT_S:.0f}")
        if self.from_ and not valid_address(self.from_):
            raise SmtpConfigError(f"smtp.from: {self.from_!r} is not an e-mail address such as smsgw@box.lan")
        if self.password and self.password_file:
            raise SmtpConfigError("smtp.password and smtp.password_file: set one, not both")
        has_password = bool(self.password or self.password_file)
        if bool(self.user) != has_password:
            raise SmtpConfigError("smtp.user and smtp.password: set both (AUTH) or neither")
        if "\r" in self.user or "\n" in self.user:
            raise SmtpConfigError("smtp.user: must be one line")
        if self.password_file and not _readable(self.password_file):
            raise SmtpConfigError(f"smtp.password_file: cannot read {self.password_file} (or it is empty)")
        if self.ca_file and not _readable(self.ca_file):
            raise SmtpConfigError(f"smtp.ca_file: cannot read {self.ca_file} (or it is empty)")

    def __repr__(self) -> str:  # never the password
        return f"SmtpSettings({self.host!r}:{self.port}, starttls={self.starttls}, user={self.user!r})"

    @property
    def enabled(self) -> bool:
        return bool(self.host)

    @property
    def sender(self) -> str:
        return self.from_ or f"smsgw@{socket.gethostname()}"

    def secret(self) -> str:
        """The password, read from its file at each use (a rotated credential needs no restart)."""
        if self.password_file:
            return Path(self.password_file).read_text(encoding="utf-8").strip()
        return self.password


def valid_address(address: str) -> bool:
    return len(address) <= MAX_ADDRESS_CHARS and _ADDRESS.fullmatch(address) is not None


def is_mailto(target: str) -> bool:
    return target[:7].lower() == "mailto:"


def mailto_address(target: str) -> str:
    """`mailto:a@b` → `a@b`; ValueError for anything else (headers, several addresses, other schemes)."""
    if not is_mailto(target):
        raise ValueError(f"{target[:40]!r} is not a mailto: target such as mailto:oncall@example.com")
    address = target[7:]
    if "?" in address or "," in address or "%" in address:
        raise ValueError("a mailto: target is one plain address (no ?headers, commas or %-escapes)")
    if not valid_address(address):
        raise ValueError(f"{address[:60]!r} is not an e-mail address")
    return address


def compose(settings: SmtpSettings, to: str, subject: str, body: str) -> EmailMessage:
    """The message; ValueError for a recipient or subject that could smuggle headers in."""
    if not valid_address(to):
        raise ValueError(f"recipient {to[:60]!r} is not an e-mail address")
    if "\r" in subject or "\n" in subject:
        raise ValueError("subject must be one line (CR/LF refused)")
    msg = EmailMessage()
    msg["From"] = settings.sender
    msg["To"] = to
    msg["Subject"] = subject[:MAX_SUBJECT_CHARS]
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=settings.sender.rpartition("@")[2])
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to an alert
    msg.set_content(body)
    return msg


async def send_mail(settings: SmtpSettings, to: str, subject: str, body: str) -> None:
    """Deliver one message to `to` within `settings.timeout_s`; MailError says why not."""
    if not settings.enabled:
        raise MailError("no [smtp] host configured", transient=False)
    msg = compose(settings, to, subject, body)
    try:
        async with asyncio.timeout(settings.timeout_s):
            await _exchange(settings, msg)
    except TimeoutError:
        raise MailError(f"no answer within {settings.timeout_s:g}s", transient=True) from None
    except aiosmtplib.SMTPRecipientsRefused as exc:
        worst = max((e.code for e in exc.recipients), default=550)
        raise MailError(
            _reply("recipient refused", exc.recipients[0]), transient=worst < 500, code=worst
        ) from None
    except aiosmtplib.SMTPResponseException as exc:
        raise MailError(_reply("refused", exc), transient=exc.code < 500, code=exc.code) from None
    except ssl.SSLCertVerificationError as exc:
        raise MailError(f"certificate not trusted: {exc.verify_message}", transient=False) from None
    except (
        aiosmtplib.SMTPConnectError,
        aiosmtplib.SMTPServerDisconnected,
        aiosmtplib.SMTPTimeoutError,
    ) as exc:
        if isinstance(exc.__cause__, ssl.SSLCertVerificationError):
            raise MailError(
                f"certificate not trusted: {exc.__cause__.verify_message}", transient=False
            ) from None
        raise MailError(f"connection: {exc}", transient=True) from None
    except aiosmtplib.SMTPException as exc:
        # No STARTTLS or AUTH offered where the settings require it: a configuration mismatch.
        raise MailError(str(exc), transient=False) from None
    except OSError as exc:
        raise MailError(f"connection: {exc.strerror or exc}", transient=True) from None


async def _exchange(settings: SmtpSettings, msg: EmailMessage) -> None:
    context = ssl.create_default_context(cafile=settings.ca_file or None)
    client = aiosmtplib.SMTP(
        hostname=settings.host,
        port=settings.port,
        timeout=settings.timeout_s,
        use_tls=False,
        start_tls=settings.starttls,
        tls_context=context,
    )
    try:
        await client.connect()
        if settings.user:
            await client.login(settings.user, settings.secret())
        errors, _ = await client.send_message(msg)
        if errors:  # one recipient per message: any refusal is the whole answer
            raise aiosmtplib.SMTPRecipientsRefused(list(errors.values()))  # type: ignore[arg-type]
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await client.quit()  # accepted already: a QUIT that fails changes nothing
    finally:
        client.close()  # a failed, timed-out or cancelled exchange leaves no socket behind


def _reply(what: str, exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{what}: {exc.code} {exc.message.strip()[:120]}"


def _ip(host: str) -> bool:
    import ipaddress  # noqa: PLC0415

    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _readable(path: str) -> bool:
    try:
        with Path(path).open("rb") as fh:
            return bool(fh.read(1))
    except OSError:
        return False
