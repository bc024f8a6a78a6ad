"""POST /api/v1/alertmanager: Prometheus Alertmanager (webhook v4) and Grafana notifications -> SMS.

One concise SMS per notification and recipient (the `[watchdog] oncall` numbers, or
`?to=+49...,+44...`), cut to `[alertmanager] max_segments`. Alertmanager retries 5xx
and drops 4xx, so: 2xx only once every message is committed to the ledger, 503 with
Retry-After when the gateway cannot accept (queue or disk full, or the key's quota
used up: `quota_exceeded` is a 503 here, not the API's 429, because Alertmanager
drops a 4xx and the alert would be lost), 4xx only for payloads no retry can fix.
Alerts go out at high priority, lowered to the key's highest allowed priority. Alertmanager is at-least-once (HA peers, retries): a
notification with the same group key, status and alert set within
`[alertmanager] dedupe_window_s` is answered 200 and sends nothing (the store's
durable idempotency keys, derived from a hash of the notification).
With `[alertmanager] template = "<name>"` the text comes from that message template
(/api/v1/templates; variables: `alert_vars`), cut to the same segments; the key's
allowed_keys do not apply (the operator chose it). A template that is missing or fails
to render costs one log line and the built-in text is sent: no alert is lost to a template.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from appliance import auth, segments, validation
from appliance.bodies import read_body
from appliance.config import Config
from appliance.intake import Intake, Refusal, refusal
from appliance.ledger import IdempotencyMismatch, OptedOut, Store, StoreError
from appliance.segments import plan
from appliance.sms_templates import MAX_VARS, TemplateError, TemplateRecord, render
from appliance.states import Priority
from appliance.validation import ApiError

_LOGGER = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 1 << 20  # a group of many alerts is large; far beyond any SMS anyway
RETRY_AFTER_S = 30
ELLIPSIS = "..."  # GSM-7: "…" would force the whole text into UCS-2
_USEFUL_LABELS = ("instance", "severity", "job")
MAX_LINE_CHARS = 320  # no line of an SMS of a few segments needs more
MAX_TEXT_CHARS = 160  # per allowed segment, before fit() cuts to the exact segment count
_VAR_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")  # as sms_templates names a variable


def notification_text(doc: dict[str, Any], max_segments: int, max_alerts: int = 10) -> str:
    """The SMS for one notification, at most `max_segments` segments long.

    Linear in the number of alerts, and only the first `max_alerts` are written out
    (the rest are counted as "+N more"): a 1 MB notification costs milliseconds.
    """
    alerts = [a for a in doc["alerts"] if isinstance(a, dict)]
    status = str(doc.get("status") or "firing").upper()
    firing = sum(1 for a in alerts if a.get("status", "firing") == "firing")
    resolved = sum(1 for a in alerts if a.get("status") == "resolved")
    common = _labels(doc.get("commonLabels"))
    names = list(dict.fromkeys(n for n in (_alertname(a) for a in alerts) if n))  # first-seen order
    if not names:
        names.append(str(doc.get("title") or common.get("alertname") or "alert"))
    shown_names = ", ".join(names[:max_alerts])
    if len(names) > max_alerts:
        shown_names += f" +{len(names) - max_alerts} more"
    counts = f"{firing} firing" + (f", {resolved} resolved" if resolved else "")
    if status == "RESOLVED" or not firing:
        counts = f"{resolved or len(alerts)} resolved"
    lines = [f"{status}: {shown_names} ({counts})"]
    if len(alerts) == 1:
        common = {**_labels(alerts[0].get("labels")), **common}
    shared = [f"{k}={common[k]}" for k in _USEFUL_LABELS if k in common]
    if shared:
        lines.append(" ".join(shared))
    if len(alerts) == 1:
        summary = _labels(alerts[0].get("annotations")).get("summary")
        if summary:
            lines.append(summary)
    else:
        for alert in alerts[:max_alerts]:
            labels = _labels(alert.get("labels"))
            own = [labels[k] for k in _USEFUL_LABELS if k in labels and k not in common]
            state = str(alert.get("status", "firing"))
            mark = "" if state == status.lower() else f" [{state}]"
            lines.append("- " + " ".join([labels.get("alertname", "?"), *own]) + mark)
    more = max(0, len(alerts) - max_alerts) if len(alerts) > 1 else 0
    truncated = doc.get("truncatedAlerts")
    if isinstance(truncated, int) and not isinstance(truncated, bool) and truncated > 0:
        more += truncated
    if more:
        lines.append(f"+{more} more")
    # Label values are the sender's: cut each line before fitting, so fit() works on a short text.
    text = "\n".join(line[:MAX_LINE_CHARS] for line in lines)
    return fit(text[: MAX_TEXT_CHARS * max_segments], max_segments)


def _alertname(alert: dict[str, Any]) -> str:
    labels = alert.get("labels")
    return str(labels.get("alertname", "")) if isinstance(labels, dict) else ""


def fit(text: str, max_segments: int) -> str:
    """The text, cut with "..." so that it needs at most `max_segments` SMS segments."""
    if len(plan(text).parts) <= max_segments:
        return text
    lo, hi = 0, len(text)  # longest prefix that fits, by bisection (segment counts are monotonic)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(plan(text[:mid].rstrip() + ELLIPSIS).parts) <= max_segments:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + ELLIPSIS


def dedupe_hash(doc: dict[str, Any]) -> str:
    """groupKey + status + the sorted set of fingerprint:status (not groupKey alone: repeats share it).

    Fed to the hash piece by piece: a few microseconds per alert, and no single call that
    holds the GIL for the whole document.
    """
    items = []
    for alert in doc["alerts"]:
        if not isinstance(alert, dict):
            continue
        fingerprint = alert.get("fingerprint")
        if not isinstance(fingerprint, str) or not fingerprint:  # Grafana and others: from the labels
            labels = alert.get("labels")
            pairs = sorted(f"{k}\x1e{v}" for k, v in labels.items()) if isinstance(labels, dict) else []
            fingerprint = "\x1f".join(pairs)
        items.append(f"{fingerprint}:{alert.get('status', '')}")
    digest = hashlib.sha256()
    for part in (str(doc.get("groupKey", "")), str(doc.get("status", "")), *sorted(items)):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\n")
    return digest.hexdigest()


def parse_notification(raw: bytes) -> dict[str, Any]:
    """The JSON document, checked for what we read: an object with an `alerts` list."""
    doc = _loads(raw)
    if not isinstance(doc, dict):
        raise ApiError(400, "invalid_request", "the body must be an Alertmanager or Grafana webhook object")
    alerts = doc.get("alerts")
    if not isinstance(alerts, list) or not any(isinstance(a, dict) for a in alerts):
        raise ApiError(
            400, "invalid_request", "alerts: expected a non-empty list of alerts (Alertmanager webhook v4)"
        )
    status = doc.get("status", "firing")
    if status not in ("firing", "resolved"):
        raise ApiError(400, "invalid_request", f"status: expected firing or resolved, got {status!r}")
    return doc


def alert_vars(doc: dict[str, Any], text: str, max_alerts: int) -> dict[str, Any]:
    """What a `[alertmanager] template` may use: status ("firing"/"resolved"), alertname (the first
    alert's), alertnames (distinct, up to max_alerts), count, firing, resolved, labels and
    annotations (the common ones; a lone alert's own too), summary and description (from those
    annotations, "" when absent), receiver, and text (the built-in SMS text). Every value is text
    cut to MAX_LINE_CHARS, except the counts; label names that are not variable names are left out.
    """
    alerts = [a for a in doc["alerts"] if isinstance(a, dict)]
    labels = _labels(doc.get("commonLabels"))
    annotations = _labels(doc.get("commonAnnotations"))
    if len(alerts) == 1:
        labels = {**_labels(alerts[0].get("labels")), **labels}
        annotations = {**_labels(alerts[0].get("annotations")), **annotations}
    names = list(dict.fromkeys(n for n in (_alertname(a) for a in alerts) if n))
    return {
        "status": str(doc.get("status") or "firing")[:MAX_LINE_CHARS],
        "alertname": (names[0] if names else str(labels.get("alertname") or doc.get("title") or "alert"))[
            :MAX_LINE_CHARS
        ],
        "alertnames": [n[:MAX_LINE_CHARS] for n in names[:max_alerts]],
        "count": len(alerts),
        "firing": sum(1 for a in alerts if a.get("status", "firing") == "firing"),
        "resolved": sum(1 for a in alerts if a.get("status") == "resolved"),
        "labels": _var_map(labels),
        "annotations": _var_map(annotations),
        "summary": annotations.get("summary", "")[:MAX_LINE_CHARS],
        "description": annotations.get("description", "")[:MAX_LINE_CHARS],
        "receiver": str(doc.get("receiver", ""))[:MAX_LINE_CHARS],
        "text": text,
    }


def templated_text(
    record: TemplateRecord, doc: dict[str, Any], text: str, max_segments: int, max_alerts: int
) -> str | None:
    """The notification's SMS from the configured template, cut as the built-in text is; None (and
    one log line) when it does not render: the caller sends the built-in text, the alert is not lost."""
    try:
        rendered = render(record, alert_vars(doc, text, max_alerts))
    except TemplateError as exc:
        _LOGGER.warning("alertmanager: %s; the built-in text is sent", exc.message)
        return None
    if not rendered.strip():
        _LOGGER.warning("alertmanager: %s renders an empty text; the built-in text is sent", record.label())
        return None
    return fit(rendered[: MAX_TEXT_CHARS * max_segments], max_segments)


def _prepare(
    raw: bytes, max_segments: int, max_alerts: int, template: TemplateRecord | None
) -> tuple[dict[str, Any], str, str, TemplateRecord | None]:
    doc = parse_notification(raw)
    text = notification_text(doc, max_segments, max_alerts)
    if template is not None:
        rendered = templated_text(template, doc, text, max_segments, max_alerts)
        if rendered is None:
            template = None
        else:
            text = rendered
    try:  # only what is kept must be storable text (validation.parse_json re-encodes the whole body)
        for kept in (text, str(doc.get("receiver", "")), str(doc.get("groupKey", ""))[:512]):
            kept.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "invalid_json", "the notification holds a lone surrogate (\\ud800...)") from None
    return doc, text, dedupe_hash(doc), template


def _loads(raw: bytes) -> Any:
    """Strict JSON, as validation.parse_json, in one pass over the body (it holds the GIL throughout)."""

    def _no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeError:
        raise ApiError(400, "invalid_json", "the request body is not valid UTF-8 JSON text") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "the request body nests too deeply") from None
    except ValueError as exc:
        raise ApiError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from None


class AlertmanagerEndpoint:
    def __init__(
        self, store: Store, config: Config, intake: Intake, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.config = config
        self.intake = intake
        self.clock = clock

    async def post(self, request: Request) -> Response:
        key = await auth.require(request, self.store, "send", schemes=("bearer", "basic"))
        validation.check_query(request.query_params.keys(), ("to",))
        recipients = self._recipients(request.query_params.get("to"))
        raw = await read_body(request, MAX_PAYLOAD_BYTES)
        am = self.config.alertmanager
        configured = await self._template()
        # A megabyte of JSON is a fraction of a second of CPU: in a thread, so the loop turns meanwhile.
        doc, text, digest, used = await asyncio.to_thread(
            _prepare, raw, am.max_segments, am.max_alerts, configured
        )
        if self.intake.room_problem() is not None:  # before the first recipient, not between two
            raise _unavailable("storage_full", "the gateway's disk is full: retry later")
        # One message, segmented once; each recipient gets a copy with its number and dedupe key.
        template = segments.new_message(
            recipients[0],
            text,
            priority=Priority.HIGH if key.max_priority is None else key.max_priority,
            validity_s=self.config.dispatcher.default_validity_s,
            metadata={
                "alertmanager": {
                    "receiver": str(doc.get("receiver", "")),
                    "status": str(doc.get("status", "")),
                    "group_key": str(doc.get("groupKey", ""))[:512],
                    "alerts": len(doc["alerts"]),
                }
            },
            source="alertmanager",
            template_name=None if used is None else used.name,
            template_version=None if used is None else used.version,
        )
        now = self.clock()
        window = self.config.alertmanager.dedupe_window_s
        results: list[dict[str, Any]] = []
        created_any = False
        for to in recipients:
            idem = None
            if window > 0:
                idem = f"alertmanager:{digest[:48]}:{to}:{int(now // window)}"
                previous = f"alertmanager:{digest[:48]}:{to}:{int(now // window) - 1}"
                if await self._seen_since(key.id, previous, now - window):
                    results.append({"to": to, "id": None, "duplicate": True})
                    continue
            new = dataclasses.replace(template, to=to, idempotency_key=idem)
            try:
                msg, created = await self.intake.submit(new, key=key, actor=auth.actor(key, request))
            except (IdempotencyMismatch, OptedOut) as exc:  # a repeat with other annotations; a STOP
                flag = "opted_out" if isinstance(exc, OptedOut) else "duplicate"
                results.append({"to": to, "id": None, flag: True})
                continue
            except StoreError as exc:
                raise _alertmanager_refusal(refusal(exc, key=key, queue_max=self.intake.queue_max)) from None
            results.append({"to": to, "id": msg.id, "duplicate": not created})
            created_any = created_any or created
        if created_any:
            _LOGGER.info("alertmanager notification %s -> %d message(s)", digest[:12], len(results))
        return JSONResponse(
            {
                "status": str(doc.get("status")),
                "text": text,
                "segments": template.segments,
                "messages": results,
            },
            status_code=202 if created_any else 200,
        )

    async def _template(self) -> TemplateRecord | None:
        """The configured template; None (and one log line) when none is set or it is not there."""
        name = self.config.alertmanager.template
        if not name:
            return None
        record = await self.store.template(name)
        if record is None:
            _LOGGER.warning(
                "alertmanager: template %r ([alertmanager] template) does not exist; the built-in text is sent",
                name,
            )
        return record

    def _recipients(self, to: str | None) -> list[str]:
        region = self.config.gateway.default_region
        if to is not None:
            numbers = [n for n in (p.strip() for p in to.split(",")) if n]
            if not numbers:
                raise ApiError(422, "invalid_number", "to: expected comma-separated phone numbers")
            out = [validation.parse_number(n, region, field="to") for n in numbers]
        else:
            out = list(self.config.watchdog.oncall)
        if not out:
            raise ApiError(
                422,
                "no_recipients",
                "no recipient: set [watchdog] oncall in the gateway's configuration or pass ?to=+49...",
            )
        return list(dict.fromkeys(out))

    async def _seen_since(self, key_id: int, idem: str, since: float) -> bool:
        """Whether this idempotency key was used after `since` (the window straddles two buckets)."""
        return await self.store.idempotency_used_since(key_id, idem, since)


def _unavailable(code: str, message: str) -> ApiError:
    return ApiError(503, code, message, headers={"Retry-After": str(RETRY_AFTER_S)})


def _alertmanager_refusal(refused: Refusal) -> ApiError:
    """Alertmanager retries a 5xx and drops a 4xx: every refusal a retry can cure is a 503 here,
    the quota's too (the API's 429 would lose the alert), keeping the native code."""
    if refused.code == "quota_exceeded":
        return ApiError(503, refused.code, refused.message, headers=refused.headers)
    return _unavailable(refused.code, f"the gateway's {_SPACE[refused.code]} is full: retry later")


_SPACE = {"queue_full": "queue", "storage_full": "disk"}


def _labels(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _var_map(values: dict[str, str]) -> dict[str, str]:
    """Labels or annotations as template variables: names a template can spell, values cut."""
    out: dict[str, str] = {}
    for name, value in values.items():
        if len(out) >= MAX_VARS or not _VAR_NAME.fullmatch(name):
            continue
        out[name] = value[:MAX_LINE_CHARS]
    return out


def routes(store: Store, config: Config, intake: Intake) -> list[Route]:
    endpoint = AlertmanagerEndpoint(store, config, intake)
    return [Route("/api/v1/alertmanager", endpoint.post, methods=["POST"])]
