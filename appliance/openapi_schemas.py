"""The OpenAPI document's component schemas (appliance/openapi.py holds the paths and serves it).

Hand-written data, kept beside the paths by tests/integrations/test_openapi.py and schemathesis.
"""

from __future__ import annotations

from typing import Any

from appliance.ledger.escalations import ENDINGS
from appliance.states import State

REF = "#/components/schemas/"
TS = {"type": ["string", "null"], "format": "date-time"}


def ref(name: str) -> dict[str, str]:
    """A JSON reference to the component schema `name`."""
    return {"$ref": REF + name}


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
            "window": ref("Window"),
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
            "escalation": ref("EscalationRequest"),
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
            "next_at": TS,
            "done": {"type": "boolean"},
            "outcome": {
                "oneOf": [
                    {"type": "null"},
                    {"enum": list(ENDINGS)},
                ]
            },
            "ended_at": TS,
        },
    },
    "BatchRequest": {
        "type": "object",
        "required": ["messages"],
        "additionalProperties": False,
        "properties": {
            "messages": {"type": "array", "minItems": 1, "maxItems": 1000, "items": ref("SendRequest")}
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
                        "message": ref("Message"),
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
            "submitted_at": TS,
            "report_status": {"type": ["integer", "null"]},
            "report_at": TS,
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
            "sent_at": TS,
            "delivered_at": TS,
            "send_at": TS,
            "expires_at": TS,
            "metadata": {"type": ["object", "null"]},
            "status_callback": {"type": ["string", "null"]},
            "delivery_report": {"enum": ["none", "pending", "received", "expired"]},
            "possible_duplicate": {"type": "boolean"},
            "held": {"type": "boolean"},
            "window": {"oneOf": [{"type": "null"}, ref("Window")]},
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
            "parts": {"type": "array", "items": ref("Part")},
            "events": {"type": "array", "items": ref("Event")},
            "escalation": {"oneOf": [{"type": "null"}, ref("Escalation")]},
            "escalated_from": {
                "type": ["string", "null"],
                "description": "the message whose escalation sent this",
            },
            "modem": {"type": ["string", "null"], "description": "the modem it was (last) handed to"},
            "box": {
                "type": ["string", "null"],
                "description": "the box ([fleet] box) that last claimed it, of several sharing the ledger",
            },
        },
    },
    "MessageList": {
        "type": "object",
        "required": ["messages", "next_cursor"],
        "properties": {
            "messages": {"type": "array", "items": ref("Message")},
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
            "sent_at": TS,
            "received_at": TS,
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
            "messages": {"type": "array", "items": ref("Inbound")},
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
            "items": {"type": "array", "items": ref("Quarantined")},
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
                "items": {"type": "object", "properties": {"balance": ref("SimBalance")}},
            },
            "queue": {"type": "object"},
            "throughput": {"type": "object"},
            "webhooks": {"type": "object"},
            "watchdog": {"type": "object"},
            "disk": {"type": "object"},
            "fleet": {
                "type": "object",
                "description": "boxes sharing this ledger ([fleet]): this box's name and each box's lease",
                "properties": {
                    "box": {"type": "string"},
                    "boxes": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "heartbeat_at", "heartbeat_age_s", "lease", "taken_over_by"],
                            "properties": {
                                "name": {"type": "string"},
                                "heartbeat_at": {"type": "string", "format": "date-time"},
                                "heartbeat_age_s": {"type": "number"},
                                "lease_until": {"type": "string", "format": "date-time"},
                                "lease": {"enum": ["held", "expired", "taken_over"]},
                                "taken_over_by": {"type": ["string", "null"]},
                                "taken_over_at": TS,
                            },
                        },
                    },
                },
            },
        },
    },
    "SimBalance": {
        "type": ["object", "null"],
        "description": "The [ussd] balance check: the last amount found, its last check (null before any)",
        "required": ["value", "at", "checked_at", "error", "below_floor"],
        "properties": {
            "value": {"type": ["number", "null"]},
            "at": TS,
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
        "properties": {"templates": {"type": "array", "items": ref("Template")}},
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
