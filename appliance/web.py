"""The field engineer's status page: overview, messages, modem diagnostics, and admin actions.

Server-rendered (Jinja2), no asset from outside the box. Every figure comes from
`build_status`, the document behind `/api/v1/status`. The page refreshes its live
part every 5 s by fetching itself with `X-Smsgw-Fragment: 1` and swapping it in.

Access: read-only views are public on the LAN unless `[web] public = false` (or
`[api] status_page_public = false`); full numbers, texts, the number filter, IMEI and
ICCID only for an admin session (the password in `[web] admin_password_hash`, or an
API key with the admin scope; sessions live in the ledger, see session.py). Every POST
needs the session's CSRF token and, when the browser sends one, a same-origin Origin.
Logins are rate limited (login.py) and the password is hashed off the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import re
import secrets
import time
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from appliance import auth, charts, validation
from appliance.bodies import BadContentLength, BodyTooLarge, form_fields, read_body
from appliance.config import Config, ConfigError
from appliance.intake import Intake, refusal
from appliance.ledger import Actor, Inbound, Message, Store, StoreError, rfc3339
from appliance.login import LoginThrottle, retry_after
from appliance.session import (
    COOKIE,
    SESSION_TTL_S,
    BadPasswordHash,
    HashPool,
    HashPoolBusy,
    Session,
    Sessions,
    Signer,
    load_secret,
    parse_password_hash,
)
from appliance.states import State
from appliance.status import GatewayView, acknowledge_incident, build_status
from appliance.validation import ApiError
from appliance.web_filters import (
    ago,
    bytes_size,
    duration,
    error_meaning,
    mask_number,
    threadable,
    unix,
    when,
)

_LOGGER = logging.getLogger(__name__)

FRAGMENT_HEADER = "x-smsgw-fragment"
MAX_FORM_BYTES = 16384  # a test SMS of 1600 characters, percent-encoded, fits
PAGE_ROWS = 50  # newest messages shown per list; filters narrow them
MAX_SECRET_CHARS = 1024  # a password or key longer than this is refused unhashed
REFUSAL_LOG_S = 60.0  # refused login attempts are summed into one log line per minute
# A refused or failed login is answered no sooner than this after it arrived: a guesser waiting
# for its answer sends fewer, so 100 of them cost the loop little. At most TARPIT_MAX are held.
TARPIT_S = 1.0
TARPIT_REFUSED_MAX_S = 5.0  # a refusal (429) is held until its Retry-After, at most this long
TARPIT_MAX = 256
BUSY_RETRY_S = 2.0  # Retry-After when every hashing thread is busy (a check takes ~0.4 s, more under load)
RECENT_EVENTS = 5000  # diagnostics scan at most this many newest events for errors
CONVERSATION_ROWS = 100  # newest messages and texts each shown on /conversation
QUARANTINE_SHOWN = 20  # newest quarantined PDUs on /modem; GET /api/v1/quarantine has them all
_ERROR_KINDS = ("retry", "failed", "outcome_unknown", "released")
_NOTICES = {
    "login": "Logged in as admin.",
    "logout": "Logged out.",
    "reset": "Modem reset started: it re-initialises in a few seconds.",
    "ack": "Incident acknowledged.",
}


def routes(*, store: Store, config: Config, gateway: GatewayView, intake: Intake) -> list[BaseRoute]:
    """The page's routes, mounted next to the API by `create_app`."""
    web = Web(store, config, gateway, intake)
    pages: list[BaseRoute] = [
        Route("/", web.overview, methods=["GET"]),
        Route("/messages", web.messages, methods=["GET"]),
        Route("/modem", web.modem, methods=["GET"]),
        Route("/audit", web.audit, methods=["GET"]),
        Route("/conversation", web.conversation, methods=["GET"]),
        Route("/templates", web.templates, methods=["GET"]),
        Route("/login", web.login_form, methods=["GET"]),
        Route("/login", web.login, methods=["POST"]),
        Route("/logout", web.logout, methods=["POST"]),
        Route("/actions/test-sms", web.test_sms, methods=["POST"]),
        Route("/actions/reset-modem", web.reset_modem, methods=["POST"]),
        Route("/actions/ack-incident", web.ack_incident, methods=["POST"]),
    ]
    # A full disk met on these is answered with a page (api.py): keep PAGE_PATHS in step.
    assert {r.path for r in pages if isinstance(r, Route)} <= PAGE_PATHS  # noqa: S101
    return pages


# The page's paths: a full disk met there is answered with a page, not the API's JSON.
PAGE_PATHS = frozenset(
    {"/", "/messages", "/modem", "/audit", "/conversation", "/templates", "/login", "/logout"}
    | {"/actions/test-sms", "/actions/reset-modem", "/actions/ack-incident"}
)


def storage_full_page(reason: str) -> HTMLResponse:
    """507 with the store's reason, from a fixed text (no template, no session: no ledger needed)."""
    html = _DISK_FULL.replace("{reason}", escape(reason))
    return HTMLResponse(html, status_code=507, headers=_headers(""))


def web_actor(admin: str, request: Request) -> Actor:
    """The audit actor of a page session: `web:admin` (the password) or `web:<key name>`."""
    user = "admin" if admin == "password" else admin.removeprefix("API key ")
    return Actor(f"web:{user}", request.client.host if request.client else "?")


class Web:
    def __init__(self, store: Store, config: Config, gateway: GatewayView, intake: Intake) -> None:
        self.store = store
        self.config = config
        self.gateway = gateway
        self.intake = intake
        self.min_free_bytes = intake.min_free_bytes
        web = config.web
        if web.admin_password_hash:
            try:
                parse_password_hash(web.admin_password_hash)
            except BadPasswordHash as exc:
                raise ConfigError(f"web.admin_password_hash: {exc}") from None
        # Beside the ledger file; a PostgreSQL ledger: in the box's own directory ([store] directory).
        directory = (
            None
            if store.path == ":memory:"
            else Path(config.store.path if store.postgres else store.path).parent
        )
        self.signer = Signer(load_secret(web.session_secret, directory))
        self.sessions = Sessions(store, self.signer)
        self.throttle = LoginThrottle()
        self.hashes = HashPool()
        self.tls = bool(config.api.tls_cert)
        self._refused = 0  # login attempts refused by the rate limits since the last log line
        self._refused_logged_at = 0.0
        self._held = 0  # refused logins being held (tarpit)
        self.public = web.public and config.api.status_page_public
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("appliance", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters["mask"] = mask_number
        self.env.filters["ago"] = ago
        self.env.filters["duration"] = duration
        self.env.filters["when"] = when
        self.env.filters["unix"] = unix
        self.env.filters["bytes"] = bytes_size
        self.env.tests["threadable"] = threadable
        self.env.globals["meaning"] = error_meaning

    # ------------------------------------------------------------------ pages
    async def overview(self, request: Request) -> Response:
        session, refuse = await self._read_access(request)
        if refuse is not None:
            return refuse
        doc = await self._status()
        hist = doc["history"]
        now = time.time()
        signal_charts = {
            name: charts.signal_history(
                [(p["t"], p["dbm"]) for p in points], start=now - hist["window_s"], end=now
            )
            for name, points in hist["signal"].items()
        }
        context = {
            "doc": doc,
            "signal_charts": signal_charts,
            "bars": charts.signal_bars,
            "throughput_chart": charts.hourly_bars(
                [("sent", hist["sent_per_hour"]), ("delivered", hist["delivered_per_hour"])]
            ),
            "can_reset": hasattr(self.gateway, "reset_modem"),
        }
        return self._render(request, session, "overview.html", context)

    async def messages(self, request: Request) -> Response:
        session, refuse = await self._read_access(request)
        if refuse is not None:
            return refuse
        q = request.query_params
        status = q.get("status") or None
        if status is not None and status not in {s.value for s in State}:
            status = None
        # The number filter is for admins only: on masked rows it is an oracle that un-masks them.
        number = (q.get("number") or "").strip() if session.is_admin else ""
        direction = q.get("direction") or "both"
        outbound = [] if direction == "in" else await self._outbound(status, number)
        inbound = [] if direction == "out" or status is not None else await self._inbound(number)
        timelines = {m.id: m.events for m in outbound}
        context = {
            "doc": await self._status(),
            "outbound": outbound,
            "inbound": inbound,
            "timelines": timelines,
            "statuses": [s.value for s in State],
            "filter": {"status": status or "", "number": number, "direction": direction},
        }
        return self._render(request, session, "messages.html", context)

    async def modem(self, request: Request) -> Response:
        session, refuse = await self._read_access(request)
        if refuse is not None:
            return refuse
        doc = await self._status()
        context = {
            "doc": doc,
            "errors": await self._recent_errors(),
            "quarantine": await self.store.list_quarantine(limit=QUARANTINE_SHOWN),
            "can_reset": hasattr(self.gateway, "reset_modem"),
        }
        return self._render(request, session, "modem.html", context)

    async def login_form(self, request: Request) -> Response:
        session = await self._session(request)
        return self._render(request, session, "login.html", {"error": ""})

    # ---------------------------------------------------------------- actions
    async def login(self, request: Request) -> Response:
        arrived = time.monotonic()
        address = _client(request)
        wait = self.throttle.wait_s(address)
        if wait > 0:  # before anything else: a refusal must cost next to nothing
            return await self._too_many(request, wait, arrived)
        session = self._visitor(request)  # no ledger look-up until the secret proved right
        form = await _form(request)
        refused = self._check_post(request, session, form)
        if refused is not None:
            return refused
        self.throttle.begin(address)
        try:
            verdict = await self._verify(str(form.get("password") or ""))
        except BaseException:
            self.throttle.abandoned(address)
            raise
        if verdict.retry_s > 0:
            self.throttle.abandoned(address)
            return await self._too_many(request, verdict.retry_s, arrived)
        if not verdict.actor:
            lock_s = self.throttle.failed(address)
            try:
                await self._login_event(
                    request, "login_failed", "", f"locked out {lock_s:.0f} s" if lock_s else ""
                )
            finally:  # held even when the audit row finds no room (StorageFull: 507)
                await self._tarpit(arrived)
            return self._render(
                request,
                session,
                "login.html",
                {"error": "Wrong password, or not an API key with the admin scope."},
                status=403,
            )
        self.throttle.succeeded(address)
        await self.sessions.end(session)  # a login over a live one ends it: one session per cookie
        fresh = await self.sessions.start(verdict.actor, key_id=verdict.key_id, address=address)
        await self._login_event(request, "login", verdict.actor)
        return self._redirect(request, "/?notice=login", fresh)

    async def logout(self, request: Request) -> Response:
        session = await self._session(request)
        form = await _form(request)
        refused = self._check_post(request, session, form)
        if refused is not None:
            return refused
        if session.is_admin:
            await self.sessions.end(session)
            await self._login_event(request, "logout", session.admin)
        return self._redirect(request, "/?notice=logout", self.signer.new())

    async def _verify(self, secret: str) -> _Verdict:
        """Who this secret logs in as: an admin API key (one SHA-256) or the password (PBKDF2 on a
        pool thread, within the box-wide budget); `retry_s` > 0 when the check was refused."""
        if not secret or len(secret) > MAX_SECRET_CHARS:
            return _Verdict()
        key = await self.store.verify_key(secret) if len(secret) <= auth.MAX_KEY_CHARS else None
        if key is not None:
            return _Verdict(f"API key {key.name}", key.id) if auth.allows(key, "admin") else _Verdict()
        stored = self.config.web.admin_password_hash
        if not stored:
            return _Verdict()
        if self.hashes.busy >= self.hashes.workers:
            return _Verdict(retry_s=BUSY_RETRY_S)  # every hashing thread is taken: refuse, do not queue
        wait = self.throttle.take_check()
        if wait > 0:
            return _Verdict(retry_s=wait)
        try:
            ok = await self.hashes.check(secret, stored)
        except HashPoolBusy:  # not reached (nothing awaited since the test above); kept for safety
            return _Verdict(retry_s=BUSY_RETRY_S)
        return _Verdict("password") if ok else _Verdict()

    async def _tarpit(self, arrived: float, hold_s: float = TARPIT_S) -> None:
        if self._held >= TARPIT_MAX:
            return  # holding more would tie up connections: answer at once
        # Jittered: guessers that arrived together would otherwise come back together, as a burst.
        hold_s = max(TARPIT_S, hold_s) * random.uniform(1.0, 1.5)  # noqa: S311  (not a secret)
        delay = arrived + hold_s - time.monotonic()
        if delay <= 0:
            return
        self._held += 1
        try:
            await asyncio.sleep(delay)
        finally:
            self._held -= 1

    async def _login_event(self, request: Request, kind: str, actor: str, detail: str = "") -> None:
        """The one place a login succeeds ("login"), fails ("login_failed") or ends ("logout").

        Logged here; the audit trail records the same events from here (actor `web:<who>`).
        """
        client = _client(request)
        if kind == "login":
            _LOGGER.info("status page: admin login (%s) from %s", actor, client)
        elif kind == "logout":
            _LOGGER.info("status page: %s logged out from %s", actor, client)
        else:
            _LOGGER.warning("status page: failed login from %s%s", client, f" ({detail})" if detail else "")
        if kind == "login_failed":
            await self.store.audit(
                Actor("web:?", client), kind, None, detail or "wrong password or key", critical=True
            )
        else:
            await self.store.audit(web_actor(actor, request), kind, None, actor, critical=True)

    async def _too_many(self, request: Request, wait_s: float, arrived: float) -> Response:
        """429 with Retry-After, tarpitted, from a fixed text (no template, no session: refusals
        must stay cheap under a flood); summed into one log line a minute, not one per attempt."""
        await self._tarpit(arrived, min(wait_s, TARPIT_REFUSED_MAX_S))
        self._refused += 1
        now = time.monotonic()
        if now - self._refused_logged_at >= REFUSAL_LOG_S:
            _LOGGER.warning(
                "status page: %d login attempt(s) refused by the rate limits (latest from %s)",
                self._refused,
                _client(request),
            )
            self._refused = 0
            self._refused_logged_at = now
        seconds = retry_after(wait_s)
        html = _TOO_MANY.replace("{seconds}", seconds)
        return HTMLResponse(html, status_code=429, headers={**_headers(""), "retry-after": seconds})

    async def test_sms(self, request: Request) -> Response:
        session, form, refused = await self._admin_post(request)
        if refused is not None:
            return refused
        doc = {"to": str(form.get("to") or ""), "body": str(form.get("body") or "")}
        try:
            new = dataclasses.replace(
                validation.parse_send_request(doc, header_key=None, config=self.config), source="page"
            )
            msg, _created = await self.intake.submit(new, key=None, actor=web_actor(session.admin, request))
        except ApiError as exc:
            return self._problem(request, session, exc.status, "The test SMS was not accepted", exc.message)
        except StoreError as exc:
            why = refusal(exc, key=None, queue_max=self.intake.queue_max)
            text = f"{why.message[:1].upper()}{why.message[1:]} ({why.code})"
            return self._problem(request, session, why.status, "The test SMS was not accepted", text)
        _LOGGER.info("status page: test SMS %s queued by %s", msg.id, session.admin)
        return self._redirect(request, f"/messages?notice=queued&id={msg.id}", session)

    async def reset_modem(self, request: Request) -> Response:
        session, form, refused = await self._admin_post(request)
        if refused is not None:
            return refused
        name = str(form.get("modem") or "")
        reset = getattr(self.gateway, "reset_modem", None)
        if reset is None:
            return self._problem(
                request, session, 501, "Reset unavailable", "This gateway cannot reset modems."
            )
        if not reset(name):
            return self._problem(request, session, 404, "No such modem", f"There is no modem named {name!r}.")
        _LOGGER.info("status page: modem %s reset by %s", name, session.admin)
        await self.store.audit(web_actor(session.admin, request), "modem_reset", f"modem {name}")
        return self._redirect(request, "/modem?notice=reset", session)

    async def ack_incident(self, request: Request) -> Response:
        session, form, refused = await self._admin_post(request)
        if refused is not None:
            return refused
        incident = str(form.get("incident") or "")
        if not await acknowledge_incident(self.config, incident, by=session.admin):
            return self._problem(
                request,
                session,
                404,
                "No such incident",
                f"There is no open incident {incident!r} to acknowledge.",
            )
        await self.store.audit(web_actor(session.admin, request), "incident_ack", f"incident {incident}")
        return self._redirect(request, "/?notice=ack", session)

    async def audit(self, request: Request) -> Response:
        """The audit trail: who did what, from where (logged-in only, whatever `[web] public` says)."""
        session = await self._session(request)
        if not session.is_admin:
            return self._redirect(request, "/login", session)
        try:
            before = validation.decode_cursor(request.query_params.get("cursor"))
        except ApiError:
            before = None
        rows = await self.store.list_audit(limit=PAGE_ROWS + 1, before_seq=before)
        page = rows[:PAGE_ROWS]
        more = validation.encode_cursor(page[-1].seq) if len(rows) > PAGE_ROWS else None
        return self._render(request, session, "audit.html", {"events": page, "more": more})

    async def conversation(self, request: Request) -> Response:
        """One number's thread: messages to it and texts from it, oldest first, each reply marked
        with the message it answers (logged-in only: it shows whole numbers and texts)."""
        session = await self._session(request)
        if not session.is_admin:
            return self._redirect(request, "/login", session)
        raw = (request.query_params.get("number") or "").strip()
        try:
            number = validation.parse_number(raw, self.config.gateway.default_region, field="number")
        except ApiError as exc:
            return self._problem(request, session, 422, "Not a phone number", exc.message)
        outbound, inbound = await self.store.conversation(number, limit=CONVERSATION_ROWS)
        entries = [ConversationEntry(m.sent_at or m.created_at, m, None) for m in outbound]
        entries += [ConversationEntry(i.received_at, None, i) for i in inbound]
        entries.sort(key=lambda e: e.at)
        context = {"number": number, "entries": entries, "shown": {m.id for m in outbound}}
        return self._render(request, session, "conversation.html", context)

    async def templates(self, request: Request) -> Response:
        """Message templates, read-only (logged-in only: a template's text may be confidential)."""
        session = await self._session(request)
        if not session.is_admin:
            return self._redirect(request, "/login", session)
        records = await self.store.list_templates()
        return self._render(request, session, "templates.html", {"records": records})

    # ---------------------------------------------------------------- helpers
    async def _status(self) -> dict[str, Any]:
        return await build_status(self.store, self.gateway, self.config, min_free_bytes=self.min_free_bytes)

    async def _outbound(self, status: str | None, number: str) -> list[Message]:
        if not number:
            return await self.store.list_messages(status=status, limit=PAGE_ROWS)
        try:
            e164 = validation.parse_number(number, self.config.gateway.default_region)
        except ApiError:
            e164 = None
        if e164 is not None:
            return await self.store.list_messages(status=status, to=e164, limit=PAGE_ROWS)
        digits = re.sub(r"\D", "", number)
        if not digits:
            return []
        # Partial numbers (the last digits an engineer remembers): a suffix match on the newest rows.
        return await self.store.list_messages(status=status, to_suffix=digits, limit=PAGE_ROWS)

    async def _inbound(self, number: str) -> list[Inbound]:
        digits = re.sub(r"\D", "", number)
        return await self.store.list_inbound(from_suffix=digits or None, limit=PAGE_ROWS)

    async def _recent_errors(self) -> list[dict[str, Any]]:
        rows = await self.store.recent_events(_ERROR_KINDS, scan=RECENT_EVENTS, limit=30)
        return [{**r, "meaning": error_meaning(r["detail"])} for r in rows]

    def _visitor(self, request: Request) -> Session:
        """The cookie's session as signed, not looked up: enough for CSRF, anonymous to everything else."""
        session = self.signer.load(request.cookies.get(COOKIE))
        if session is None:
            session = self.signer.new()
            request.state.new_session = True
        return session

    async def _session(self, request: Request) -> Session:
        """The visitor's session, admin when the ledger says its login lives."""
        return await self.sessions.resolve(self._visitor(request))

    async def _read_access(self, request: Request) -> tuple[Session, Response | None]:
        session = await self._session(request)
        if self.public or session.is_admin:
            return session, None
        if request.headers.get(FRAGMENT_HEADER):
            return session, Response("login required", status_code=401, media_type="text/plain")
        return session, self._redirect(request, "/login", session)

    async def _admin_post(self, request: Request) -> tuple[Session, dict[str, str], Response | None]:
        session = await self._session(request)
        form = await _form(request)
        refused = self._check_post(request, session, form)
        if refused is None and not session.is_admin:
            refused = self._problem(
                request, session, 403, "Log in first", "Actions need an admin login: open /login."
            )
        return session, form, refused

    def _check_post(self, request: Request, session: Session, form: dict[str, str]) -> Response | None:
        """Origin (when sent) must be this page's; the form's CSRF token must match the session."""
        origin = request.headers.get("origin")
        host = request.headers.get("host", "")
        if origin is not None and origin != f"{request.url.scheme}://{host}":
            _LOGGER.warning("status page: refused %s from origin %s", request.url.path, origin)
            return self._problem(
                request,
                session,
                403,
                "Cross-site request refused",
                f"This form was posted from {origin}, not from the gateway's own page.",
            )
        if not self.signer.csrf_ok(
            None if getattr(request.state, "new_session", False) else session, str(form.get("csrf") or "")
        ):
            _LOGGER.warning("status page: refused %s without a valid CSRF token", request.url.path)
            return self._problem(
                request,
                session,
                403,
                "Form expired or forged",
                "The form's CSRF token is missing or does not match your session: reload the page and try again.",
            )
        return None

    def _render(
        self, request: Request, session: Session, template: str, context: dict[str, Any], status: int = 200
    ) -> Response:
        nonce = secrets.token_urlsafe(12)
        notice = _NOTICES.get(request.query_params.get("notice", ""), "")
        if request.query_params.get("notice") == "queued":
            notice = f"Test SMS {request.query_params.get('id', '')} queued."
        html = self.env.get_template(template).render(
            **context,
            fragment=bool(request.headers.get(FRAGMENT_HEADER)),
            nonce=nonce,
            csrf=self.signer.csrf_token(session),
            admin=session.admin,
            public=self.public,
            path=request.url.path,
            notice=notice,
            name=self.config.gateway.name,
            now=time.time(),
            rfc3339=rfc3339,
        )
        response = HTMLResponse(html, status_code=status, headers=_headers(nonce))
        self._keep(request, response, session)
        return response

    def _problem(self, request: Request, session: Session, status: int, title: str, text: str) -> Response:
        return self._render(request, session, "problem.html", {"title": title, "text": text}, status)

    def _redirect(self, request: Request, to: str, session: Session) -> Response:
        response = RedirectResponse(to, status_code=303, headers=_headers(""))
        self._keep(request, response, session, force=True)
        return response

    def _keep(self, request: Request, response: Response, session: Session, *, force: bool = False) -> None:
        if force or getattr(request.state, "new_session", False):
            response.set_cookie(
                COOKIE,
                self.signer.dump(session),
                max_age=SESSION_TTL_S,
                path="/",
                httponly=True,
                samesite="strict",
                secure=self.tls or request.url.scheme == "https",
            )


_DISK_FULL = (
    '<!doctype html><html lang="en"><meta charset="utf-8"><title>The gateway\'s disk is full</title>'
    '<h1>The gateway\'s disk is full</h1><p id="problem">{reason}</p><p>Nothing was changed: free space '
    "on the gateway (GET /api/v1/status says how much is left), then try again.</p>"
    '<p><a href="/">Back to the overview</a></p></html>'
)

_TOO_MANY = (
    '<!doctype html><html lang="en"><meta charset="utf-8"><title>Too many login attempts</title>'
    "<h1>Too many login attempts</h1><p>Login is paused after repeated failures: try again in "
    '{seconds} s.</p><p><a href="/login">Back to the login</a></p></html>'
)


@dataclass(frozen=True)
class ConversationEntry:
    """One line of a conversation: a message (at its sending, or acceptance while unsent) or a text."""

    at: float
    outbound: Message | None
    inbound: Inbound | None


@dataclass(frozen=True)
class _Verdict:
    """The outcome of checking a login secret."""

    actor: str = ""  # "" when the secret is wrong
    key_id: int | None = None
    retry_s: float = 0.0  # > 0: not checked (rate limit or every hash thread busy)


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _headers(nonce: str) -> dict[str, str]:
    csp = (
        "default-src 'none'; "
        f"style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return {
        "content-security-policy": csp,
        "x-frame-options": "DENY",
        # Not "no-referrer": with it browsers send "Origin: null" on POST and the Origin check fails.
        "referrer-policy": "same-origin",
        "vary": "Cookie, X-Smsgw-Fragment",
    }


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form (the page posts nothing else); {} when over MAX_FORM_BYTES or not UTF-8,
    which the CSRF check then refuses."""
    try:
        return form_fields(await read_body(request, MAX_FORM_BYTES))
    except (BodyTooLarge, BadContentLength, UnicodeDecodeError, ValueError):
        return {}


__all__ = ["error_meaning", "mask_number", "routes", "web_actor"]
