"""The HTTP API v1 (a contract: paths, fields, status names and the error shape are relied on).

Handlers talk to the ledger and to a `GatewayView`, never to the modem. Every
refusal is `{"error": {"code", "message"}}` with a 4xx status; an unexpected
exception is logged and answered with a 500 of the same shape, never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, ExceptionHandler, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

from appliance import (
    alertmanager,
    auth,
    edge,
    openapi,
    send_requests,
    template_api,
    twilio,
    ussd_api,
    validation,
    web,
)
from appliance.batch_accept import Accepted, accept_batch
from appliance.batch_worker import WORKER, Batch
from appliance.bodies import BadContentLength, BodyTooLarge, read_body, read_json, require_json
from appliance.config import Config
from appliance.escalation import refuse_opted_out
from appliance.intake import Intake, refusal
from appliance.ledger import (
    ApiKey,
    AuditEvent,
    Conflict,
    LedgerUnreachable,
    Message,
    NotFound,
    StorageFull,
    Store,
    StoreError,
    escalation_payload,
    inbound_payload,
    quarantine_payload,
    rfc3339,
)
from appliance.metrics import Metrics
from appliance.states import State
from appliance.status import MIN_FREE_BYTES, GatewayView, build_status, ledger_problem
from appliance.validation import ApiError

_LOGGER = logging.getLogger(__name__)

SECURITY_HEADERS = ((b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"))
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def create_app(
    *,
    store: Store,
    config: Config,
    gateway: GatewayView,
    metrics: Metrics | None = None,
    min_free_bytes: int = MIN_FREE_BYTES,
    send_ussd: ussd_api.SendUssd | None = None,
) -> Starlette:
    """The API app. The store is already open (the daemon owns its lifecycle): no lifespan needed.

    `send_ussd` is the daemon's USSD on a ready modem; without it POST /api/v1/ussd answers 503."""
    api = _Api(store, config, gateway, metrics or Metrics(), min_free_bytes)
    routes = [
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/readyz", api.readyz, methods=["GET"]),
        Route("/metrics", api.metrics_text, methods=["GET"]),
        Route("/api/v1/messages", api.send, methods=["POST"]),
        Route("/api/v1/messages/batch", api.send_batch, methods=["POST"]),
        Route("/api/v1/messages", api.list_messages, methods=["GET"]),
        Route("/api/v1/messages/{id}", api.get_message, methods=["GET"]),
        Route("/api/v1/messages/{id}/replies", api.replies, methods=["GET"]),
        Route("/api/v1/messages/{id}/cancel", api.cancel, methods=["POST"]),
        Route("/api/v1/messages/{id}/resend", api.resend, methods=["POST"]),
        Route("/api/v1/messages/{id}/abandon", api.abandon, methods=["POST"]),
        Route("/api/v1/inbound", api.list_inbound, methods=["GET"]),
        Route("/api/v1/status", api.status, methods=["GET"]),
        Route("/api/v1/audit", api.list_audit, methods=["GET"]),
        Route("/api/v1/quarantine", api.list_quarantine, methods=["GET"]),
        *template_api.routes(store, config),
        *alertmanager.routes(store, config, api.intake),
        *twilio.routes(store, config, api.intake),
        *ussd_api.routes(store, send_ussd),
        *openapi.routes(),
        *web.routes(store=store, config=config, gateway=gateway, intake=api.intake),
    ]
    app = Starlette(routes=routes, exception_handlers=exception_handlers())
    app.add_middleware(edge.Edge, allowed=edge.allowed_hosts(config.api))  # Host and credential bytes
    app.add_middleware(_Guard)
    app.state.metrics = api.metrics
    return app


def exception_handlers() -> dict[Any, ExceptionHandler]:
    """The API's error shapes for the faults any route may raise (one place for every route)."""
    return {
        ApiError: _api_error,
        HTTPException: _http_error,
        StorageFull: _storage_full,
        LedgerUnreachable: _ledger_unreachable,
        BodyTooLarge: _too_large,
        BadContentLength: _bad_content_length,
    }


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def message_payload(msg: Message) -> dict[str, Any]:
    """The API's message object (docs/design.md), plus send_at, expires_at, delivery_report, held."""
    error = None
    if msg.error_code and msg.status not in (State.SENT, State.DELIVERED):
        error = {"code": msg.error_code, "message": msg.error_message or msg.error_code}
    return {
        "id": msg.id,
        "to": msg.to,
        "body": msg.body,
        "status": msg.status.value,
        "segments": msg.segments,
        "encoding": msg.encoding,
        "priority": msg.priority.name.lower(),
        "attempts": msg.attempts,
        "error": error,
        "created_at": rfc3339(msg.created_at),
        "updated_at": rfc3339(msg.updated_at),
        "sent_at": rfc3339(msg.sent_at),
        "delivered_at": rfc3339(msg.delivered_at),
        "metadata": msg.metadata,
        "parts": [
            {
                "seq": p.seq,
                "total": p.total,
                "status": p.status.value,
                "mr": p.mr,
                "submitted_at": rfc3339(p.submitted_at),
                "report_status": p.report_status,
                "report_at": rfc3339(p.report_at),
            }
            for p in msg.parts
        ],
        "events": [
            {
                "at": rfc3339(e.at),
                "type": e.kind,
                "from": e.from_status,
                "to": e.to_status,
                "detail": e.detail,
            }
            for e in msg.events
        ],
        "send_at": rfc3339(msg.send_at),
        "expires_at": rfc3339(msg.expires_at),
        "status_callback": msg.status_callback,
        "delivery_report": _delivery_report(msg),
        # True once nothing more will happen: a final status, or `sent` whose report never came.
        "final": msg.status.final or (msg.status is State.SENT and msg.report_expired),
        "possible_duplicate": msg.ambiguous > 0,
        "held": msg.held,
        "window": msg.window,
        "template": (
            None
            if msg.template_name is None
            else {"name": msg.template_name, "version": msg.template_version}
        ),
        "escalation": escalation_payload(msg.escalation),
        "escalated_from": msg.escalated_from,
        # Where it was (last) sent from: the modem, and the box of a fleet sharing the ledger.
        "modem": msg.modem,
        "box": msg.box,
    }


class _Api:
    def __init__(
        self, store: Store, config: Config, gateway: GatewayView, metrics: Metrics, min_free_bytes: int
    ) -> None:
        self.store = store
        self.config = config
        self.gateway = gateway
        self.metrics = metrics
        self.min_free_bytes = min_free_bytes
        WORKER.configure(config.api.batch_workers)
        if store.file is not None:  # large batches are written by worker processes: take turns
            store.turns = WORKER
        self.intake = Intake(
            store,
            queue_max=config.api.queue_max,
            gateway=gateway,
            metrics=metrics,
            min_free_bytes=min_free_bytes,
        )

    # ---------------------------------------------------------------- probes
    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        problem = ledger_problem(self.store, min_free_bytes=self.min_free_bytes)
        ready, reason = self.gateway.ready()
        if problem is not None:
            ready, reason = False, problem
        spooling = None if self.store.spool is None else self.store.spool.problem()
        if ready and spooling is not None:
            # Still ready: new messages are accepted (into the spool); the reason says sending waits.
            reason = spooling
        if ready:
            return JSONResponse({"status": "ready", "reason": reason})
        return JSONResponse(
            {"status": "not_ready", "reason": reason, "error": {"code": "not_ready", "message": reason}},
            status_code=503,
        )

    async def metrics_text(self, request: Request) -> Response:
        doc = await build_status(self.store, self.gateway, self.config, min_free_bytes=self.min_free_bytes)
        self.metrics.observe_status(doc)
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    # -------------------------------------------------------------- messages
    async def send(self, request: Request) -> Response:
        key = await auth.require(request, self.store, "send")
        doc = await read_json(request, self.config.api.max_body_bytes)
        header = request.headers.get("idempotency-key")
        header_key = None if header is None else validation.parse_idempotency_header(header)
        doc, template = await template_api.render_send_request(doc, self.store, key, self.config)
        new = send_requests.parse_message(doc, header_key=header_key, key=key, config=self.config)
        new = template_api.with_template(new, template)
        if new.escalation is not None:
            await refuse_opted_out(self.store, new.escalation)
        try:
            msg, created = await self.intake.submit(
                new,
                key=key,
                actor=auth.actor(key, request),
                template_window=None if template is None else template.window,
            )
        except StoreError as exc:
            raise refusal(exc, key=key, queue_max=self.config.api.queue_max).error() from None
        if not created:
            return JSONResponse(message_payload(msg), status_code=200)
        return JSONResponse(
            message_payload(msg), status_code=202, headers={"Location": f"/api/v1/messages/{msg.id}"}
        )

    async def send_batch(self, request: Request) -> Response:
        """Up to 1,000 message requests in one transaction, a result per item in order (200)."""
        key = await auth.require(request, self.store, "send")
        require_json(request)
        if request.headers.get("idempotency-key") is not None:
            raise ApiError(
                422,
                "invalid_field",
                "Idempotency-Key: a batch has no key of its own; give each message its idempotency_key",
            )
        raw = await read_body(request, self.config.api.max_batch_bytes)
        actor = auth.actor(key, request)
        file = self.store.file
        # A large batch on a SQLite ledger: accepted whole in a worker process (batch_worker.py).
        done = None if file is None else await self._in_worker(Batch(
            raw, file, key, actor, self.config, self.intake.room_problem(), message_payload
        ))  # fmt: skip
        if done is None:
            done = await accept_batch(
                raw,
                store=self.store,
                key=key,
                actor=actor,
                config=self.config,
                room_problem=self.intake.room_problem,
                payload=message_payload,
                parse=WORKER.parse_items,
            )
        elif done.webhooks_queued:
            self.store.outbox_changed.set()  # committed by the worker: wake this process's sender
        self.intake.counted(done.count, actor=actor)
        return Response(done.body, media_type="application/json")

    async def _in_worker(self, batch: Batch) -> Accepted | None:
        """WORKER.accept, with what only the daemon can do when the worker did not answer."""
        try:
            return await WORKER.accept(batch)
        except StorageFull:
            if batch.room_problem is None:  # its commit met the full disk, not the daemon's check
                self.store.full_elsewhere()
            raise
        except ApiError as exc:
            if exc.code == "batch_interrupted":  # it may have committed: wake who sends
                self._committed_elsewhere()
            raise  # else refused whole (400, 422): nothing of it was committed
        except BaseException:
            self._committed_elsewhere()  # cancelled (shutdown): the worker may commit all the same
            raise

    def _committed_elsewhere(self) -> None:
        self.intake.gateway.wake()
        self.store.outbox_changed.set()

    async def get_message(self, request: Request) -> Response:
        key = await auth.require(request, self.store, "read")
        return JSONResponse(message_payload(await self._get(request.path_params["id"], key)))

    async def list_messages(self, request: Request) -> Response:
        key = await auth.require(request, self.store, "read")
        q = request.query_params
        validation.check_query(q.keys(), ("status", "to", "limit", "cursor"))
        status = q.get("status")
        if status is not None and status not in {s.value for s in State}:
            raise ApiError(
                422,
                "invalid_parameter",
                f"status: {status!r} is not a message status (one of {', '.join(s.value for s in State)})",
            )
        to_raw = q.get("to")
        to = None if to_raw is None else validation.parse_number(to_raw, self.config.gateway.default_region)
        limit = validation.parse_limit(q.get("limit"))
        before = validation.decode_cursor(q.get("cursor"))
        rows = await self.store.list_messages(
            status=status, to=to, limit=limit + 1, before_seq=before, key_id=auth.owner_filter(key)
        )
        page = rows[:limit]
        out = [message_payload(m) for m in page]  # whole rows: one query for the page
        next_cursor = validation.encode_cursor(page[-1].seq) if len(rows) > limit else None
        return JSONResponse({"messages": out, "next_cursor": next_cursor})

    async def cancel(self, request: Request) -> Response:
        key = await auth.require(request, self.store, "send")
        msg_id = request.path_params["id"]
        try:
            msg = await self.store.cancel(
                msg_id,
                owner=None if auth.acts_on_all(key) else key.id,
                actor=auth.actor(key, request),
            )
        except NotFound:
            raise _not_found(msg_id) from None
        except Conflict:
            current = await self._get(msg_id, key)
            hint = (
                "; it is held after an interrupted send: POST .../resend or .../abandon (admin)"
                if current.held
                else ""
            )
            raise ApiError(
                409,
                "already_sent",
                f"message {msg_id} is already {current.status.value}; only queued or scheduled messages can be canceled{hint}",
            ) from None
        return JSONResponse(message_payload(msg))

    async def resend(self, request: Request) -> Response:
        key = await auth.require(request, self.store, "admin")
        msg = await self._resolve(request.path_params["id"], "resend", key, request)
        self.gateway.wake()
        return JSONResponse(message_payload(msg))

    async def abandon(self, request: Request) -> Response:
        key = await auth.require(request, self.store, "admin")
        return JSONResponse(
            message_payload(await self._resolve(request.path_params["id"], "cancel", key, request))
        )

    # ---------------------------------------------------------- inbound, status
    async def list_inbound(self, request: Request) -> Response:
        key = await auth.require(request, self.store, "read")
        q = request.query_params
        validation.check_query(q.keys(), ("since", "limit", "cursor"))
        since = _since(q.get("since"))
        limit = validation.parse_limit(q.get("limit"))
        before = validation.decode_cursor(q.get("cursor"))
        rows = await self.store.list_inbound(
            since=since, limit=limit + 1, before_seq=before, replies_to_key=auth.owner_filter(key)
        )
        page = rows[:limit]
        next_cursor = validation.encode_cursor(page[-1].seq) if len(rows) > limit else None
        return JSONResponse({"messages": [inbound_payload(r) for r in page], "next_cursor": next_cursor})

    async def replies(self, request: Request) -> Response:
        """Inbound texts threaded to one message (404 for a message the key may not see)."""
        key = await auth.require(request, self.store, "read")
        q = request.query_params
        validation.check_query(q.keys(), ("limit", "cursor"))
        limit = validation.parse_limit(q.get("limit"))
        before = validation.decode_cursor(q.get("cursor"))
        msg = await self._get(request.path_params["id"], key)
        rows = await self.store.list_replies(msg.id, limit=limit + 1, before_seq=before)
        page = rows[:limit]
        next_cursor = validation.encode_cursor(page[-1].seq) if len(rows) > limit else None
        return JSONResponse({"messages": [inbound_payload(r) for r in page], "next_cursor": next_cursor})

    async def list_audit(self, request: Request) -> Response:
        await auth.require(request, self.store, "admin")
        q = request.query_params
        validation.check_query(q.keys(), ("since", "limit", "cursor"))
        since = _since(q.get("since"))
        limit = validation.parse_limit(q.get("limit"))
        before = validation.decode_cursor(q.get("cursor"))
        rows = await self.store.list_audit(since=since, limit=limit + 1, before_seq=before)
        page = rows[:limit]
        next_cursor = validation.encode_cursor(page[-1].seq) if len(rows) > limit else None
        return JSONResponse({"events": [audit_payload(e) for e in page], "next_cursor": next_cursor})

    async def list_quarantine(self, request: Request) -> Response:
        """PDUs no decoder could read, newest first: raw hex, port, memory and index (admin)."""
        await auth.require(request, self.store, "admin")
        q = request.query_params
        validation.check_query(q.keys(), ("limit", "cursor"))
        limit = validation.parse_limit(q.get("limit"))
        before = validation.decode_cursor(q.get("cursor"))
        rows = await self.store.list_quarantine(limit=limit + 1, before_seq=before)
        page = rows[:limit]
        next_cursor = validation.encode_cursor(page[-1].seq) if len(rows) > limit else None
        return JSONResponse({"items": [quarantine_payload(r) for r in page], "next_cursor": next_cursor})

    async def status(self, request: Request) -> Response:
        await auth.require(request, self.store, "read")
        doc = await build_status(self.store, self.gateway, self.config, min_free_bytes=self.min_free_bytes)
        return JSONResponse(doc)

    # --------------------------------------------------------------- helpers
    async def _get(self, msg_id: str, key: ApiKey) -> Message:
        msg = await (self.store.spool or self.store).get(msg_id)  # a spooled message from the spool
        if msg is None or not auth.may_see(key, msg.key_id):
            raise _not_found(msg_id)
        return msg

    async def _resolve(self, msg_id: str, action: str, key: ApiKey, request: Request) -> Message:
        try:
            return await self.store.resolve_held(
                msg_id,
                action,
                owner=None if auth.acts_on_all(key) else key.id,
                actor=auth.actor(key, request),
            )
        except NotFound:
            raise _not_found(msg_id) from None
        except Conflict:
            raise ApiError(
                409,
                "not_held",
                f"message {msg_id} is not held: only messages interrupted mid-send await a decision",
            ) from None


def audit_payload(event: AuditEvent) -> dict[str, Any]:
    """One entry of GET /api/v1/audit."""
    return {
        "at": rfc3339(event.at),
        "actor": event.actor,
        "source": event.source,
        "action": event.action,
        "target": event.target,
        "detail": event.detail,
    }


def _since(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        return validation.parse_rfc3339(raw)
    except ValueError as exc:
        raise ApiError(422, "invalid_parameter", f"since: {exc}") from None


def _delivery_report(msg: Message) -> str:
    if msg.status in (State.DELIVERED, State.UNDELIVERED):
        return "received"
    if msg.status is State.SENT:
        return "expired" if msg.report_expired else "pending"
    return "none"


def _not_found(msg_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no message with id {msg_id!r}")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)  # noqa: S101  (registered for ApiError only)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _too_large(request: Request, exc: Exception) -> Response:
    """A body over a route's cap, met by any route that reads one with bodies.read_body."""
    return error_response(413, "payload_too_large", str(exc))


async def _bad_content_length(request: Request, exc: Exception) -> Response:
    return error_response(400, "invalid_request", str(exc))


async def _storage_full(request: Request, exc: Exception) -> Response:
    """A full disk met by any route (a write the store refused): 507 with its reason, said once
    by the store, never a traceback; the page gets a page."""
    reason = str(exc) or "the gateway's disk is full"
    if request.url.path in web.PAGE_PATHS:
        return web.storage_full_page(reason)
    return error_response(507, "storage_full", reason)


async def _ledger_unreachable(request: Request, exc: Exception) -> Response:
    """A read the ledger's server could not answer (it is down; new messages are spooled): 503."""
    return error_response(
        503,
        "ledger_unreachable",
        "the ledger's server is unreachable: new messages are accepted into this box's spool, "
        "other reads wait for the server",
        {"Retry-After": "5"},
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    if exc.status_code == 404:
        message = f"no such resource: {request.url.path}"
    elif exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {request.url.path} (allowed: {allow})"
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, code, message, dict(exc.headers or {}))


class _Guard:
    """Outermost layer: security headers on every response; any escaped exception becomes a JSON 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: AsgiMessage) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [
                    h for h in message.get("headers", []) if h[0].lower() not in dict(SECURITY_HEADERS)
                ]
                message = {**message, "headers": [*headers, *SECURITY_HEADERS]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except ClientDisconnect:
            _LOGGER.debug("client went away during %s %s", scope.get("method"), scope.get("path"))
        except Exception:
            _LOGGER.exception("unexpected error in %s %s", scope.get("method"), scope.get("path"))
            if not started:
                response = error_response(
                    500, "internal_error", "the gateway hit an unexpected error; it has been logged"
                )
                await response(scope, receive, send_with_headers)


__all__ = ["audit_payload", "create_app", "error_response", "message_payload"]
