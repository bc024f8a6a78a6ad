"""OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json (no auth).

Hand-written data; tests/integrations/test_openapi.py keeps its paths and methods
equal to the app's routes and runs schemathesis against a live gateway.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from appliance.openapi_schemas import SCHEMAS
from appliance.openapi_schemas import ref as _ref
from appliance.states import State


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = _json(_ref("Error"), "An error: {error: {code, message}}")
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
_NAME = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
_PAGE = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
]


def _request(schema: str, example: Any = None) -> dict[str, Any]:
    """A required JSON request body of a component schema, with an example when given."""
    media: dict[str, Any] = {"schema": _ref(schema)}
    if example is not None:
        media["example"] = example
    return {"required": True, "content": {"application/json": media}}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": {**responses, "default": _ERROR}, **extra}


def _action(summary: str) -> dict[str, Any]:
    return _op(summary, {"200": _json(_ref("Message"), "The message")}, parameters=_ID)


PATHS: dict[str, Any] = {
    "/api/v1/messages": {
        "post": _op(
            "Queue a message (committed before the answer)",
            {
                "202": _json(_ref("Message"), "Accepted"),
                "200": _json(_ref("Message"), "The original message of a repeated idempotency key"),
            },
            parameters=[{"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}],
            requestBody=_request("SendRequest", {"to": "+4915112345678", "body": "Disk full on db1"}),
        ),
        "get": _op(
            "List messages, newest first",
            {"200": _json(_ref("MessageList"), "A page of messages")},
            parameters=[
                {"name": "status", "in": "query", "schema": {"enum": [s.value for s in State]}},
                {"name": "to", "in": "query", "schema": {"type": "string"}},
                *_PAGE,
            ],
        ),
    },
    "/api/v1/messages/batch": {
        "post": _op(
            "Queue up to 1,000 messages in one transaction: a result per item, in order",
            {"200": _json(_ref("BatchResults"), "Each item accepted, found again or refused on its own")},
            requestBody=_request(
                "BatchRequest",
                {
                    "messages": [
                        {"to": "+4915112345678", "body": "Gate 3 at 14:00", "idempotency_key": "r1"},
                        {"to": "+4915187654321", "body": "Gate 3 at 14:00", "idempotency_key": "r2"},
                    ]
                },
            ),
        )
    },
    "/api/v1/messages/{id}": {
        "get": _op(
            "A message with its events and parts",
            {"200": _json(_ref("Message"), "The message")},
            parameters=_ID,
        )
    },
    "/api/v1/messages/{id}/replies": {
        "get": _op(
            "Received messages whose in_reply_to is this message, newest first",
            {"200": _json(_ref("InboundList"), "A page of replies")},
            parameters=[*_ID, *_PAGE],
        )
    },
    "/api/v1/messages/{id}/cancel": {"post": _action("Cancel a queued or scheduled message")},
    "/api/v1/messages/{id}/resend": {
        "post": _action("Resend a message held after an interrupted send (admin)")
    },
    "/api/v1/messages/{id}/abandon": {
        "post": _action("Give up a message held after an interrupted send (admin)")
    },
    "/api/v1/inbound": {
        "get": _op(
            "Received messages, reassembled, newest first",
            {"200": _json(_ref("InboundList"), "A page of received messages")},
            parameters=[
                {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                *_PAGE,
            ],
        )
    },
    "/api/v1/status": {
        "get": _op(
            "Modem, SIM, network, signal, queue, watchdog, version", {"200": _json(_ref("Status"), "Status")}
        )
    },
    "/api/v1/audit": {
        "get": _op(
            "The audit trail, newest first (admin)",
            {"200": _json(_ref("AuditList"), "A page of audit events")},
            parameters=[
                {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                *_PAGE,
            ],
        )
    },
    "/api/v1/quarantine": {
        "get": _op(
            "Undecodable PDUs kept before the modem deleted them, newest first (admin)",
            {"200": _json(_ref("QuarantineList"), "A page of quarantined PDUs")},
            parameters=_PAGE,
        )
    },
    "/api/v1/alertmanager": {
        "post": _op(
            "Prometheus Alertmanager / Grafana webhook -> one SMS per notification",
            {
                "202": _json(_ref("AlertmanagerResult"), "Committed"),
                "200": _json(_ref("AlertmanagerResult"), "Already sent within the dedupe window"),
            },
            parameters=[
                {
                    "name": "to",
                    "in": "query",
                    "description": "comma-separated numbers instead of [watchdog] oncall",
                    "schema": {"type": "string"},
                }
            ],
            requestBody=_request("AlertmanagerNotification"),
            security=[{"bearer": []}, {"basic": []}],
        )
    },
    "/api/v1/templates": {
        "get": _op(
            "Templates this key may use (admin: all), latest versions, by name",
            {"200": _json(_ref("TemplateList"), "The templates")},
        ),
        "post": _op(
            "Create a template, version 1 (admin; 409 template_exists)",
            {"201": _json(_ref("Template"), "Created")},
            requestBody=_request("TemplateRequest"),
        ),
    },
    "/api/v1/templates/{name}": {
        "get": _op(
            "A template (latest version)", {"200": _json(_ref("Template"), "The template")}, parameters=_NAME
        ),
        "put": _op(
            "Create, or write the next version (admin; 409 version_conflict on a stale version)",
            {"200": _json(_ref("Template"), "The new version"), "201": _json(_ref("Template"), "Created")},
            parameters=_NAME,
            requestBody=_request("TemplateRequest"),
        ),
        "delete": _op(
            "Delete a template (admin; messages keep the name and version they used)",
            {"204": {"description": "Deleted"}},
            parameters=_NAME,
        ),
    },
    "/api/v1/templates/{name}/preview": {
        "post": _op(
            "Render with vars: text, encoding, segments and a UCS-2 warning",
            {"200": _json(_ref("Preview"), "The preview")},
            parameters=_NAME,
            requestBody={"content": {"application/json": {"schema": _ref("PreviewRequest")}}},
        )
    },
    "/api/v1/ussd": {
        "post": _op(
            "Send a USSD code on a ready modem and return the network's answer (admin)",
            {"200": _json(_ref("UssdResponse"), "The network's answer")},
            requestBody=_request("UssdRequest", {"code": "*100#"}),
        )
    },
    "/api/v1/openapi.json": {
        "get": {
            "summary": "This document",
            "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
        }
    },
}


def document(version: str = "1") -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "smsgw HTTP API",
            "version": version,
            "description": (
                "SMS gateway appliance. Bearer API keys with scopes send, read (the key's own "
                "messages and replies to them), read_all and admin."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "any user, the API key as password",
                },
            },
        },
    }


def routes() -> list[Route]:
    doc = document()

    async def serve(request: Request) -> Response:
        return JSONResponse(doc)

    return [Route("/api/v1/openapi.json", serve, methods=["GET"])]
