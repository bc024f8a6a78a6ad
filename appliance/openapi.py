"""OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json (no auth).

Hand-written data; tests/integrations/test_openapi.py keeps its paths and methods
equal to the app's routes and runs schemathesis against a live gateway.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from appliance.states import State

_REF = "#/components/schemas/"
_TS = {"type": ["string", "null"], "format": "date-time"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = _json(_ref("Error"), "An error: {error: {code, message}}")
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
_PAGE = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
]


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": {**responses, "default": _ERROR}, **extra}


def _action(summary: str) -> dict[str, Any]:
    return _op(summary, {"200": _json(_ref("Message"), "The message")}, parameters=_ID)


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "SendRequest": {
        "type": "object",
        "required": ["to", "body"],
        "additionalProperties": False,
        "properties": {
            "to": {
                "type": "string",
                "description": "E.164, or national in the configured region",
                "examples": ["+4915112345678"],
            },
            "body": {"type": "string", "minLength": 1, "examples": ["Disk full on db1"]},
            "idempotency_key": {"type": "string", "maxLength": 255},
            "send_at": {"type": "string", "format": "date-time"},
            "validity_s": {"type": "integer", "minimum": 60, "maximum": 604800},
            "priority": {"enum": ["high", "normal", "bulk"]},
            "status_callback": {"type": "string", "format": "uri"},
            "metadata": {"type": "object"},
        },
    },
    "BatchRequest": {
        "type": "object",
        "required": ["messages"],
        "additionalProperties": False,
        "properties": {
            "messages": {"type": "array", "minItems": 1, "maxItems": 1000, "items": _ref("SendRequest")}
        },
    },
    "BatchResults": {
        "type": "object",
        "required": ["results"],
        "properties": {
            "results": {
                "type": "array",
                "description": "One per request, in order: 202 accepted, 200 the original of a repeated "
                "idempotency key, 4xx/5xx this item's refusal (the error a single POST gives)",
                "items": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {
                        "status": {"type": "integer"},
                        "message": _ref("Message"),
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        },
                    },
                },
            }
        },
    },
    "Part": {
        "type": "object",
        "required": ["seq", "total", "status"],
        "properties": {
            "seq": {"type": "integer"},
            "total": {"type": "integer"},
            "status": {"type": "string"},
            "mr": {"type": ["integer", "null"]},
            "submitted_at": _TS,
            "report_status": {"type": ["integer", "null"]},
            "report_at": _TS,
        },
    },
    "Event": {
        "type": "object",
        "required": ["at", "type"],
        "properties": {
            "at": {"type": "string", "format": "date-time"},
            "type": {"type": "string"},
            "from": {"type": ["string", "null"]},
            "to": {"type": ["string", "null"]},
            "detail": {"type": ["string", "null"]},
        },
    },
    "Message": {
        "type": "object",
        "required": ["id", "to", "body", "status", "segments", "encoding", "priority", "attempts", "error"],
        "properties": {
            "id": {"type": "string"},
            "to": {"type": "string"},
            "body": {"type": ["string", "null"]},
            "status": {"enum": [s.value for s in State]},
            "segments": {"type": "integer"},
            "encoding": {"enum": ["gsm7", "ucs2"]},
            "priority": {"enum": ["high", "normal", "bulk"]},
            "attempts": {"type": "integer"},
            "error": {
                "oneOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    },
                ]
            },
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "sent_at": _TS,
            "delivered_at": _TS,
            "send_at": _TS,
            "expires_at": _TS,
            "metadata": {"type": ["object", "null"]},
            "status_callback": {"type": ["string", "null"]},
            "delivery_report": {"enum": ["none", "pending", "received", "expired"]},
            "possible_duplicate": {"type": "boolean"},
            "held": {"type": "boolean"},
            "parts": {"type": "array", "items": _ref("Part")},
            "events": {"type": "array", "items": _ref("Event")},
        },
    },
    "MessageList": {
        "type": "object",
        "required": ["messages", "next_cursor"],
        "properties": {
            "messages": {"type": "array", "items": _ref("Message")},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "Inbound": {
        "type": "object",
        "required": ["id", "from", "body", "complete"],
        "properties": {
            "id": {"type": "string"},
            "from": {"type": "string"},
            "body": {"type": ["string", "null"]},
            "encoding": {"type": "string"},
            "parts": {"type": "integer"},
            "parts_expected": {"type": "integer"},
            "complete": {"type": "boolean"},
            "keyword": {"type": ["string", "null"]},
            "sent_at": _TS,
            "received_at": _TS,
        },
    },
    "InboundList": {
        "type": "object",
        "required": ["messages", "next_cursor"],
        "properties": {
            "messages": {"type": "array", "items": _ref("Inbound")},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "Quarantined": {
        "type": "object",
        "required": ["id", "at", "port", "memory", "index", "pdu", "reason"],
        "properties": {
            "id": {"type": "string"},
            "at": {"type": "string", "format": "date-time"},
            "port": {"type": "string", "description": "the modem's port"},
            "memory": {"type": "string", "description": "SM, SR, ME...; empty for a routed +CMT/+CDS"},
            "index": {"type": ["integer", "null"], "description": "null for a routed PDU"},
            "pdu": {"type": "string", "description": "the raw hex as the modem gave it"},
            "reason": {"type": "string", "description": "why the decoder refused it"},
        },
    },
    "QuarantineList": {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": _ref("Quarantined")},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "Status": {
        "type": "object",
        "required": ["gateway", "verdict", "modems", "queue"],
        "properties": {
            "gateway": {"type": "object"},
            "verdict": {
                "type": "object",
                "required": ["state", "reasons"],
                "properties": {
                    "state": {"enum": ["healthy", "degraded", "down"]},
                    "reasons": {"type": "array", "items": {"type": "string"}},
                },
            },
            "modems": {"type": "array", "items": {"type": "object"}},
            "queue": {"type": "object"},
            "throughput": {"type": "object"},
            "webhooks": {"type": "object"},
            "watchdog": {"type": "object"},
            "disk": {"type": "object"},
        },
    },
    "AlertmanagerNotification": {
        "type": "object",
        "required": ["alerts"],
        "description": "Alertmanager webhook v4, or Grafana's variant (version 1)",
        "properties": {
            "version": {"type": "string"},
            "groupKey": {"type": "string"},
            "truncatedAlerts": {"type": "integer"},
            "status": {"enum": ["firing", "resolved"]},
            "receiver": {"type": "string"},
            "groupLabels": {"type": "object"},
            "commonLabels": {"type": "object"},
            "commonAnnotations": {"type": "object"},
            "externalURL": {"type": "string"},
            "alerts": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "status": {"enum": ["firing", "resolved"]},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                        "startsAt": {"type": "string"},
                        "endsAt": {"type": "string"},
                        "generatorURL": {"type": "string"},
                        "fingerprint": {"type": "string"},
                    },
                },
            },
        },
    },
    "AuditList": {
        "type": "object",
        "required": ["events", "next_cursor"],
        "properties": {
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["at", "actor", "source", "action", "target", "detail"],
                    "properties": {
                        "at": {"type": "string", "format": "date-time"},
                        "actor": {"type": "string", "description": "a key name, web:<user> or cli"},
                        "source": {"type": "string", "description": "the client's address, or local"},
                        "action": {"type": "string"},
                        "target": {"type": ["string", "null"]},
                        "detail": {"type": ["string", "null"]},
                    },
                },
            },
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "AlertmanagerResult": {
        "type": "object",
        "required": ["status", "text", "segments", "messages"],
        "properties": {
            "status": {"type": "string"},
            "text": {"type": "string"},
            "segments": {"type": "integer"},
            "messages": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["to", "id"],
                    "properties": {
                        "to": {"type": "string"},
                        "id": {"type": ["string", "null"]},
                        "duplicate": {"type": "boolean"},
                        "opted_out": {"type": "boolean"},
                    },
                },
            },
        },
    },
}

PATHS: dict[str, Any] = {
    "/api/v1/messages": {
        "post": _op(
            "Queue a message (committed before the answer)",
            {
                "202": _json(_ref("Message"), "Accepted"),
                "200": _json(_ref("Message"), "The original message of a repeated idempotency key"),
            },
            parameters=[{"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}],
            requestBody={
                "required": True,
                "content": {
                    "application/json": {
                        "schema": _ref("SendRequest"),
                        "example": {"to": "+4915112345678", "body": "Disk full on db1"},
                    }
                },
            },
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
            requestBody={
                "required": True,
                "content": {
                    "application/json": {
                        "schema": _ref("BatchRequest"),
                        "example": {
                            "messages": [
                                {"to": "+4915112345678", "body": "Gate 3 at 14:00", "idempotency_key": "r1"},
                                {"to": "+4915187654321", "body": "Gate 3 at 14:00", "idempotency_key": "r2"},
                            ]
                        },
                    }
                },
            },
        )
    },
    "/api/v1/messages/{id}": {
        "get": _op(
            "A message with its events and parts",
            {"200": _json(_ref("Message"), "The message")},
            parameters=_ID,
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
            requestBody={
                "required": True,
                "content": {"application/json": {"schema": _ref("AlertmanagerNotification")}},
            },
            security=[{"bearer": []}, {"basic": []}],
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
