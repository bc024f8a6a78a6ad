"""OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json (no auth).

Hand-written data; tests/integrations/test_openapi.py keeps its paths and methods
equal to the app's routes and runs schemathesis against a live gateway.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from appliance.ledger.escalations import ENDINGS
from appliance.states import State

_REF = "#/components/schemas/"
_TS = {"type": ["string", "null"], "format": "date-time"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = _json(_ref("Error"), "An error: {error: {code, message}}")
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
_NAME = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
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
        "required": ["to"],
        "description": "`body`, or `template` with `vars` (422 template_error names a missing variable)",
        "oneOf": [{"required": ["body"]}, {"required": ["template"]}],
        "additionalProperties": False,
        "properties": {
            "template": {"type": "string", "pattern": "^[a-z0-9_-]{1,64}$", "examples": ["welcome"]},
            "vars": {"type": "object", "description": "the template's variables", "maxProperties": 50},
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
            "window": _ref("Window"),
        },
    },
    "Window": {
        "type": "object",
        "description": "Send window: local hours in which the message may go out; outside them it "
        "waits as `scheduled` (422 invalid_window names the sub-field at fault). An end not after "
        "the start crosses midnight.",
        "required": ["days", "start", "end", "tz"],
        "additionalProperties": False,
        "properties": {
            "days": {"type": "string", "examples": ["mon-fri", "sat,sun", "daily"]},
            "start": {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$", "examples": ["08:00"]},
            "end": {
                "type": "string",
                "pattern": "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$",
                "examples": ["20:00"],
            },
            "tz": {"type": "string", "maxLength": 64, "examples": ["Europe/Berlin"]},
            "escalation": _ref("EscalationRequest"),
        },
    },
    "EscalationRequest": {
        "type": "object",
        "required": ["after_s", "then"],
        "additionalProperties": False,
        "description": "Not delivered (or, with until=replied, not answered) within after_s: the same text "
        "goes to the next number of `then`, each after after_s more; after the numbers, an e-mail to every "
        "mailto: target (needs [smtp]). The first success ends it.",
        "properties": {
            "after_s": {
                "type": "integer",
                "minimum": 1,
                "maximum": 604800,
                "description": "seconds; at least [escalation] min_after_s (default 30)",
            },
            "until": {"enum": ["delivered", "replied"], "default": "delivered"},
            "then": {
                "type": "array",
                "minItems": 1,
                "maxItems": 10,
                "items": {"type": "string", "examples": ["+4915198765432", "mailto:oncall@example.com"]},
                "description": "numbers (E.164 or national) first, then mailto: targets",
            },
        },
    },
    "Escalation": {
        "type": "object",
        "required": ["after_s", "until", "then", "step", "next_at", "done", "outcome", "ended_at"],
        "properties": {
            "after_s": {"type": "integer"},
            "until": {"enum": ["delivered", "replied"]},
            "then": {"type": "array", "items": {"type": "string"}},
            "step": {"type": "integer", "description": "entries of `then` reached so far"},
            "next_at": _TS,
            "done": {"type": "boolean"},
            "outcome": {
                "oneOf": [
                    {"type": "null"},
                    {"enum": list(ENDINGS)},
                ]
            },
            "ended_at": _TS,
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
            "window": {"oneOf": [{"type": "null"}, _ref("Window")]},
            "template": {
                "description": "the template the body was rendered from, with its version",
                "oneOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "required": ["name", "version"],
                        "properties": {"name": {"type": "string"}, "version": {"type": "integer"}},
                    },
                ],
            },
            "parts": {"type": "array", "items": _ref("Part")},
            "events": {"type": "array", "items": _ref("Event")},
            "escalation": {"oneOf": [{"type": "null"}, _ref("Escalation")]},
            "escalated_from": {
                "type": ["string", "null"],
                "description": "the message whose escalation sent this",
            },
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
        "required": ["id", "from", "body", "complete", "in_reply_to"],
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
            "in_reply_to": {
                "type": ["string", "null"],
                "description": "the id of the message this text answers: the latest one sent to its "
                "sender within [inbound] reply_window_s; null when none",
            },
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
            "modems": {
                "type": "array",
                "items": {"type": "object", "properties": {"balance": _ref("SimBalance")}},
            },
            "queue": {"type": "object"},
            "throughput": {"type": "object"},
            "webhooks": {"type": "object"},
            "watchdog": {"type": "object"},
            "disk": {"type": "object"},
        },
    },
    "SimBalance": {
        "type": ["object", "null"],
        "description": "The [ussd] balance check: the last amount found, its last check (null before any)",
        "required": ["value", "at", "checked_at", "error", "below_floor"],
        "properties": {
            "value": {"type": ["number", "null"]},
            "at": _TS,
            "checked_at": {"type": "string", "format": "date-time"},
            "error": {"type": ["string", "null"]},
            "below_floor": {"type": "boolean"},
        },
    },
    "UssdRequest": {
        "type": "object",
        "required": ["code"],
        "additionalProperties": False,
        "properties": {"code": {"type": "string", "pattern": "^[*#][0-9*#]*#$", "maxLength": 40}},
    },
    "UssdResponse": {
        "type": "object",
        "required": ["response"],
        "properties": {"response": {"type": "string"}},
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
    "TemplateRequest": {
        "type": "object",
        "required": ["body"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9_-]{1,64}$", "description": "POST: required"},
            "body": {"type": "string", "minLength": 1, "maxLength": 4096, "examples": ["Hi {{ name }}"]},
            "version": {
                "type": "integer",
                "minimum": 1,
                "description": "PUT: the version the edit is based on",
            },
            "allowed_keys": {
                "type": "array",
                "items": {"type": "string"},
                "description": "API key names that may use it; absent: every key with send",
            },
            "window": {"type": "object", "description": "a send window {days, start, end, tz}"},
        },
    },
    "Template": {
        "type": "object",
        "required": ["name", "body", "version", "created_at", "updated_at"],
        "properties": {
            "name": {"type": "string"},
            "body": {"type": "string"},
            "version": {"type": "integer"},
            "allowed_keys": {"type": "array", "items": {"type": "string"}},
            "window": {"type": "object"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
    "TemplateList": {
        "type": "object",
        "required": ["templates"],
        "properties": {"templates": {"type": "array", "items": _ref("Template")}},
    },
    "PreviewRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "vars": {"type": "object"},
            "body": {"type": "string", "description": "an unsaved edit to preview (admin)"},
        },
    },
    "Preview": {
        "type": "object",
        "required": ["body", "encoding", "segments"],
        "properties": {
            "body": {"type": "string"},
            "encoding": {"enum": ["gsm7", "ucs2"]},
            "segments": {"type": "integer"},
            "warning": {"type": "string", "description": "the characters that make it UCS-2, and the cost"},
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
            requestBody={
                "required": True,
                "content": {"application/json": {"schema": _ref("AlertmanagerNotification")}},
            },
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
            requestBody={
                "required": True,
                "content": {"application/json": {"schema": _ref("TemplateRequest")}},
            },
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
            requestBody={
                "required": True,
                "content": {"application/json": {"schema": _ref("TemplateRequest")}},
            },
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
            requestBody={
                "required": True,
                "content": {
                    "application/json": {"schema": _ref("UssdRequest"), "example": {"code": "*100#"}}
                },
            },
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
