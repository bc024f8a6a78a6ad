"""`/api/v1/templates` and the `template` + `vars` form of `POST /api/v1/messages` (DESIGN.md, round 2).

What a template is, how it renders and what it refuses: appliance/sms_templates.py. Here:
- reads (`GET`, `preview`) need `send`; a key sees the templates it may use (`allowed_keys`
  absent, or naming it), an admin key sees all; one it may not use is 403 template_not_allowed;
- writes (`POST`, `PUT`, `DELETE`) need `admin` and leave an audit row (template_create,
  template_update, template_delete). POST creates (409 template_exists when the name is live);
  PUT creates or writes the next version (409 version_conflict when its `version` is stale);
- sending: unknown template 422 unknown_template (the request names a template that is not
  there: the request is wrong, not the URL), 403 template_not_allowed, 422 template_error
  naming the variable; the message records the name and version it was rendered from.
A render is bounded work (sms_templates: a subset of Jinja checked at save) done in a thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from appliance import auth, validation
from appliance.bodies import read_body, read_json, require_json
from appliance.config import Config
from appliance.ledger import ApiKey, Conflict, NewMessage, NotFound, Store, rfc3339
from appliance.sms_templates import (
    TemplateError,
    TemplateRecord,
    check_name,
    parse_template_doc,
    preview_request,
    render_message,
    template_ref,
)
from appliance.validation import ApiError


def api_error(exc: TemplateError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message)


async def render_send_request(
    doc: Any, store: Store, key: ApiKey, config: Config
) -> tuple[Any, TemplateRecord | None]:
    """A send request with `template` + `vars` -> the same request with the rendered `body`, and
    the template used (None, and `doc` unchanged, for a plain `body`)."""
    if not isinstance(doc, dict):
        return doc, None
    try:
        ref = template_ref(doc)
        if ref is None:
            return doc, None
        record = await store.template(ref.name)
        # Bounded (at most ~15 ms measured for the costliest template the subset admits), and in a
        # thread all the same: the loop keeps its turns while a flood of template sends renders.
        text = await asyncio.to_thread(
            render_message,
            record,
            ref,
            key_name=key.name,
            admin=auth.acts_on_all(key),
            max_chars=config.api.max_text_chars,
        )
    except TemplateError as exc:
        raise api_error(exc) from None
    assert record is not None  # noqa: S101  (render_message refuses a missing template)
    if not text.strip():
        raise ApiError(422, "template_error", f"{record.label()}: renders to an empty text with these vars")
    rendered = {k: v for k, v in doc.items() if k not in ("template", "vars")}
    rendered["body"] = text
    return rendered, record


def with_template(new: NewMessage, record: TemplateRecord | None) -> NewMessage:
    """The message as rendered from `record` (its name and version kept with it)."""
    if record is None:
        return new
    return dataclasses.replace(new, template_name=record.name, template_version=record.version)


def template_payload(record: TemplateRecord) -> dict[str, Any]:
    """The API's template object (window and times as stored; times in RFC 3339)."""
    doc = record.to_json()
    doc["created_at"] = rfc3339(record.created_at)
    doc["updated_at"] = rfc3339(record.updated_at)
    return doc


class TemplateEndpoints:
    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config

    async def list(self, request: Request) -> Response:
        key = await auth.require(request, self.store, "send")
        validation.check_query(request.query_params.keys(), ())
        records = await self.store.list_templates()
        admin = auth.acts_on_all(key)
        return JSONResponse(
            {"templates": [template_payload(r) for r in records if admin or r.allows(key.name)]}
        )

    async def get(self, request: Request) -> Response:
        key = await auth.require(request, self.store, "send")
        return JSONResponse(template_payload(await self._usable(request, key)))

    async def create(self, request: Request) -> Response:
        key = await auth.require(request, self.store, "admin")
        doc = await read_json(request, self.config.api.max_body_bytes)
        return await self._save(request, key, doc, name=None)

    async def put(self, request: Request) -> Response:
        key = await auth.require(request, self.store, "admin")
        name = _path_name(request)
        doc = await read_json(request, self.config.api.max_body_bytes)
        return await self._save(request, key, doc, name=name)

    async def delete(self, request: Request) -> Response:
        key = await auth.require(request, self.store, "admin")
        name = _path_name(request)
        try:
            await self.store.delete_template(name, actor=auth.actor(key, request))
        except NotFound:
            raise _unknown(name) from None
        return Response(status_code=204)

    async def preview(self, request: Request) -> Response:
        key = await auth.require(request, self.store, "send")
        record = await self._usable(request, key)
        raw = await read_body(request, self.config.api.max_body_bytes)
        doc: Any = None
        if raw.strip():
            require_json(request)
            doc = validation.parse_json(raw)
        if isinstance(doc, dict) and "body" in doc and not auth.acts_on_all(key):
            raise ApiError(403, "forbidden", "body: previewing an edit needs the 'admin' scope")
        try:
            shown = await asyncio.to_thread(
                preview_request, record, doc, max_chars=self.config.api.max_text_chars
            )
        except TemplateError as exc:
            raise api_error(exc) from None
        return JSONResponse(shown.to_json())

    # --------------------------------------------------------------- helpers
    async def _save(self, request: Request, key: ApiKey, doc: Any, *, name: str | None) -> Response:
        try:
            draft = parse_template_doc(doc, name=name)
            record, created = await self.store.save_template(
                draft, create_only=name is None, actor=auth.actor(key, request)
            )
        except TemplateError as exc:
            raise api_error(exc) from None
        except Conflict as exc:
            raise ApiError(409, "template_exists", str(exc)) from None
        if not created:
            return JSONResponse(template_payload(record))
        return JSONResponse(
            template_payload(record),
            status_code=201,
            headers={"Location": f"/api/v1/templates/{record.name}"},
        )

    async def _usable(self, request: Request, key: ApiKey) -> TemplateRecord:
        name = _path_name(request)
        record = await self.store.template(name)
        if record is None:
            raise _unknown(name)
        if not auth.acts_on_all(key) and not record.allows(key.name):
            raise ApiError(
                403,
                "template_not_allowed",
                f"the API key {key.name!r} may not use {record.label()} (allowed_keys)",
            )
        return record


def _path_name(request: Request) -> str:
    try:
        return check_name(request.path_params["name"])
    except TemplateError as exc:
        raise ApiError(
            404, "not_found", f"no template named {request.path_params['name'][:80]!r} ({exc.message})"
        ) from None


def _unknown(name: str) -> ApiError:
    return ApiError(404, "not_found", f"no template named {name!r}")


def routes(store: Store, config: Config) -> list[Route]:
    endpoints = TemplateEndpoints(store, config)
    return [
        Route("/api/v1/templates", endpoints.list, methods=["GET"]),
        Route("/api/v1/templates", endpoints.create, methods=["POST"]),
        Route("/api/v1/templates/{name}", endpoints.get, methods=["GET"]),
        Route("/api/v1/templates/{name}", endpoints.put, methods=["PUT"]),
        Route("/api/v1/templates/{name}", endpoints.delete, methods=["DELETE"]),
        Route("/api/v1/templates/{name}/preview", endpoints.preview, methods=["POST"]),
    ]
