"""The SMTP sender (watchdog/mail.py) against a real SMTP server (aiosmtpd): plain, STARTTLS with a
throwaway certificate, AUTH, refusals classified, time bounded, headers never injectable."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from appliance.config import ConfigError, from_dict
from tests.support.cli import config_check
from tests.support.config_files import toml_text
from tests.support.gateway import gateway_config
from tests.support.ports import free_port
from tests.support.smtp_server import PASSWORD, USER, smtp_server
from watchdog.mail import MailError, SmtpConfigError, SmtpSettings, compose, mailto_address, send_mail

TO = "oncall@example.test"


def settings(port: int, **kw: Any) -> SmtpSettings:
    base: dict[str, Any] = {"host": "127.0.0.1", "port": port, "starttls": False, "from_": "smsgw@box.lan"}
    return SmtpSettings(**{**base, **kw})


async def test_a_plain_message_arrives_with_its_headers(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as server:
        await send_mail(settings(server.port), TO, "box7: modem silent", "the body\nline 2")
        [(rcpt, msg)] = server.inbox.messages()
    assert rcpt == (TO,)
    assert msg["From"] == "smsgw@box.lan"
    assert msg["To"] == TO
    assert msg["Subject"] == "box7: modem silent"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_payload(decode=True).decode().splitlines() == ["the body", "line 2"]  # type: ignore[union-attr]


async def test_starttls_and_auth_with_a_trusted_certificate(tmp_path: Path) -> None:
    with smtp_server(tmp_path, starttls=True, auth=True) as server:
        assert server.cert is not None
        good = settings(server.port, starttls=True, user=USER, password=PASSWORD, ca_file=str(server.cert))
        await send_mail(good, TO, "subject", "über")
        assert server.inbox.logins == [USER]
        assert len(server.inbox.messages()) == 1
        # A wrong password: the server's 535 is permanent (trying again will not help).
        wrong_password = dataclasses.replace(good, password="nope")  # noqa: S106
        with pytest.raises(MailError) as wrong:
            await send_mail(wrong_password, TO, "s", "b")
        assert (wrong.value.transient, wrong.value.code) == (False, 535)
        # The same server's certificate, not trusted by the system store: refused, permanently.
        with pytest.raises(MailError) as untrusted:
            await send_mail(dataclasses.replace(good, ca_file=""), TO, "s", "b")
        assert not untrusted.value.transient
        assert "certificate" in untrusted.value.reason
        # Without STARTTLS the server (require_starttls) refuses AUTH and MAIL: 530, permanent.
        with pytest.raises(MailError) as plain:
            await send_mail(dataclasses.replace(good, starttls=False), TO, "s", "b")
        assert not plain.value.transient
        assert len(server.inbox.messages()) == 1


async def test_starttls_required_but_not_offered_is_refused(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as server:
        with pytest.raises(MailError) as exc:
            await send_mail(settings(server.port, starttls=True), TO, "s", "b")
        assert not exc.value.transient
        assert server.inbox.messages() == []


@pytest.mark.parametrize(
    ("reply", "transient", "code"),
    [("550 5.1.1 no such user", False, 550), ("450 4.2.1 try later", True, 450)],
)
async def test_a_refused_recipient_is_classified_by_its_reply(
    tmp_path: Path, reply: str, transient: bool, code: int
) -> None:
    with smtp_server(tmp_path) as server:
        server.inbox.refuse[TO] = reply
        with pytest.raises(MailError) as exc:
            await send_mail(settings(server.port), TO, "s", "b")
        await send_mail(settings(server.port), "other@example.test", "s", "b")
        assert [r for r, _ in server.inbox.messages()] == [("other@example.test",)]
    assert (exc.value.transient, exc.value.code) == (transient, code)
    assert reply.split(" ", 1)[1] in exc.value.reason


async def test_no_server_and_a_silent_server_are_transient_and_bounded() -> None:
    with pytest.raises(MailError) as refused:
        await send_mail(settings(free_port()), TO, "s", "b")
    assert refused.value.transient

    async def never_greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()  # accepts, and never says 220; the client hangs up
        finally:
            writer.close()
            hung_up.set()

    hung_up = asyncio.Event()
    silent = await asyncio.start_server(never_greet, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        with pytest.raises(MailError) as timed_out:
            await send_mail(settings(port, timeout_s=0.5), TO, "s", "b")
        await asyncio.wait_for(hung_up.wait(), 5)  # the client closed its connection when it gave up
    finally:
        silent.close()
        await silent.wait_closed()
    # Given up by its own bound: the server never answered, nor closed the connection.
    assert timed_out.value.transient
    assert timed_out.value.reason == "no answer within 0.5s"


@pytest.mark.parametrize(
    ("to", "subject"),
    [
        (TO, "alert\r\nBcc: victim@example.test"),
        (TO, "alert\nX-Injected: 1"),
        ("a@example.test\r\nBcc: victim@example.test", "s"),
        ("a@example.test, b@example.test", "s"),
        ("<a@example.test>", "s"),
        ("not an address", "s"),
    ],
)
async def test_header_injection_is_refused_before_any_connection(to: str, subject: str) -> None:
    port = free_port()  # nothing listens: a refusal that connected first would be a MailError
    with pytest.raises(ValueError, match=r"subject|recipient") as exc:
        await send_mail(settings(port), to, subject, "b")
    assert not isinstance(exc.value, MailError)
    with pytest.raises(ValueError, match=r"subject|recipient"):
        compose(settings(port), to, subject, "b")


@pytest.mark.parametrize(
    ("target", "address"),
    [
        ("mailto:oncall@example.com", "oncall@example.com"),
        ("MAILTO:ops.team+alerts@mail.example.com", "ops.team+alerts@mail.example.com"),
        ("mailto:a@b", "a@b"),
        ("mailto:a@b?subject=x", None),
        ("mailto:a@b?bcc=c@d", None),
        ("mailto:a@b,c@d", None),
        ("mailto:a%40b@c", None),
        ("mailto:", None),
        ("mailto:a@b\r\nBcc: c@d", None),
        ("mailto:<a@b>", None),
        ("a@b", None),
        ("http://a@b", None),
        ("+4915112345678", None),
    ],
)
def test_mailto_targets(target: str, address: str | None) -> None:
    if address is None:
        with pytest.raises(ValueError, match=r"mailto|address"):
            mailto_address(target)
    else:
        assert mailto_address(target) == address


@pytest.mark.parametrize(
    ("smtp", "key"),
    [
        ({"port": 0}, "smtp.port"),
        ({"port": 65536}, "smtp.port"),
        ({"host": "mail.lan\r\nX"}, "smtp.host"),
        ({"host": "mail lan"}, "smtp.host"),
        ({"from": "smsgw"}, "smtp.from"),
        ({"from": "a@b\nBcc: c@d"}, "smtp.from"),
        ({"user": "u"}, "smtp.user and smtp.password"),
        ({"password": "p"}, "smtp.user and smtp.password"),
        (
            {"user": "u", "password": "p", "password_file": "/etc/hostname"},
            "smtp.password and smtp.password_file",
        ),
        ({"user": "u", "password_file": "/nonexistent/pw"}, "smtp.password_file"),
        ({"ca_file": "/nonexistent/ca.pem"}, "smtp.ca_file"),
        ({"timeout_s": 0}, "smtp.timeout_s"),
        ({"tls": True}, "smtp.tls: unknown key"),
    ],
)
def test_smtp_config_errors_name_the_key(tmp_path: Path, smtp: dict[str, Any], key: str) -> None:
    raw = gateway_config(tmp_path, "sim", smtp={"host": "mail.lan", **smtp})
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_dict(raw)


def test_the_contract_keys_and_a_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "smtp.password"
    secret.write_text("from-a-file\n")
    raw = gateway_config(
        tmp_path,
        "sim",
        smtp={
            "host": "mail.lan",
            "port": 587,
            "starttls": True,
            "user": "u",
            "password_file": str(secret),
            "from": "smsgw@box.lan",
        },
    )
    smtp = from_dict(raw).smtp
    assert (smtp.host, smtp.port, smtp.starttls, smtp.sender) == ("mail.lan", 587, True, "smsgw@box.lan")
    assert smtp.secret() == "from-a-file"
    assert "from-a-file" not in repr(smtp)
    assert not from_dict(gateway_config(tmp_path, "sim")).smtp.enabled  # no [smtp]: no e-mail
    with pytest.raises(SmtpConfigError):
        SmtpSettings(port=70000)


@pytest.mark.parametrize(
    ("watchdog", "smtp", "message"),
    [
        ({"escalate_email": ["mailto:a@b"]}, {}, "watchdog.escalate_email: needs [smtp] host"),
        ({"escalate_email": ["a@b"]}, {"host": "mail.lan"}, "watchdog.escalate_email[0]"),
        ({"escalate_email": ["mailto:a@b?cc=c@d"]}, {"host": "mail.lan"}, "watchdog.escalate_email[0]"),
        ({"escalate_after_s": -1}, {}, "watchdog.escalate_after_s"),
    ],
)
def test_escalation_config_errors_name_the_key(
    tmp_path: Path, watchdog: dict[str, Any], smtp: dict[str, Any], message: str
) -> None:
    raw = gateway_config(tmp_path, "sim", watchdog=watchdog, **({"smtp": smtp} if smtp else {}))
    path = tmp_path / "smsgw.toml"
    path.write_text(toml_text(raw))
    done = config_check(str(path))
    assert done.returncode == 2
    assert message in done.stderr
