"""Message templates: named, versioned Jinja2 texts rendered in a sandbox, and the SMS preview.

(Named `sms_templates`, not `templates`: appliance/templates/ holds the status page's HTML.)

    draft   = parse_template_doc(doc, name=path_name)      # POST/PUT body -> TemplateDraft (checked)
    record  = new_template(draft, now=now)                  # version 1
    record2 = revise(record, draft2, now=now)               # version + 1 (409 on a stale "version")
    text    = render(record, check_vars(doc["vars"]))       # str, or TemplateError (422 template_error)
    shown   = preview(text)                                 # Preview(body, encoding, segments, warning)

    ref  = template_ref(doc)                                # POST /api/v1/messages: None for a plain body
    text = render_message(await ledger.template(ref.name), ref, key_name=key.name, admin=..., max_chars=...)
    shown = preview_request(record, doc, max_chars=...)     # POST /api/v1/templates/{name}/preview

Errors: every refusal is a `TemplateError(code, message, variable=, line=)`; the API answers
422 with `code` and `message` (`template_error` for a render, `invalid_template` for a body
refused at save, `invalid_field` for a bad name/vars/allowed_keys, `unknown_template`, 403
`template_not_allowed`, 409 `version_conflict`): `TemplateError.status` carries the HTTP status.

Rendering is bounded work done in the Jinja sandbox of appliance/template_sandbox.py (the
subset of Jinja a template may use, checked at save); the sizes of the vars are checked here.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from appliance.jsontypes import json_type
from appliance.template_sandbox import MAX_LOOP, TemplateError, compile_body, render_source
from appliance.windows import Window, WindowError, parse_window
from modem.pdu import segment_text
from modem.pdu.gsm7 import is_gsm7

# TemplateError and MAX_LOOP are the sandbox's, re-exported: callers import templates from here.
__all__ = [
    "MAX_ALLOWED_KEYS",
    "MAX_BODY_CHARS",
    "MAX_INT_DIGITS",
    "MAX_LOOP",
    "MAX_OUTPUT_CHARS",
    "MAX_VARS",
    "MAX_VARS_BYTES",
    "MAX_VAR_CHARS",
    "MAX_VAR_ITEMS",
    "MAX_WARNED_CHARS",
    "TEMPLATE_FIELDS",
    "Preview",
    "TemplateDraft",
    "TemplateError",
    "TemplateRecord",
    "TemplateRef",
    "check_allowed_keys",
    "check_body",
    "check_name",
    "check_vars",
    "new_template",
    "parse_template_doc",
    "preview",
    "preview_request",
    "render",
    "render_body",
    "render_message",
    "revise",
    "template_ref",
]

MAX_BODY_CHARS = 4096  # template source; a rendered SMS is capped by [api] max_text_chars
MAX_OUTPUT_CHARS = 1600  # default cap of a render (the API passes config.api.max_text_chars)
MAX_VARS = 50
MAX_VAR_CHARS = 1600
MAX_VAR_ITEMS = 50  # a list's items or an object's keys
MAX_VARS_BYTES = 16_384  # the whole `vars` object as JSON
MAX_ALLOWED_KEYS = 100
MAX_INT_DIGITS = 18
MAX_WARNED_CHARS = 5  # characters a preview warning names before "and N more"
TEMPLATE_FIELDS = frozenset({"name", "body", "version", "allowed_keys", "window"})

_NAME = re.compile(r"[a-z0-9_-]{1,64}")
_VAR_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_KEY_NAME = re.compile(r"[\x21-\x7e]{1,64}")


@dataclass(frozen=True)
class TemplateDraft:
    """A checked POST/PUT document: what the ledger writes as the next version."""

    name: str
    body: str
    allowed_keys: tuple[str, ...] | None = None  # API key names; None: every key with `send`
    window: Window | None = None
    expected_version: int | None = None  # PUT's optional "version": refuse when not the current one


@dataclass(frozen=True)
class TemplateRecord:
    """One version of a template as the ledger keeps it (a message records name + version)."""

    name: str
    body: str
    version: int
    allowed_keys: tuple[str, ...] | None
    window: Window | None
    created_at: float  # version 1
    updated_at: float  # this version

    def label(self) -> str:
        return f"template {self.name!r} v{self.version}"

    def allows(self, key_name: str) -> bool:
        """Whether the API key of that name may send with this template."""
        return self.allowed_keys is None or key_name in self.allowed_keys

    def to_json(self) -> dict[str, Any]:
        """The API object: {"name", "body", "version", "allowed_keys"?, "window"?, ...}."""
        doc: dict[str, Any] = {"name": self.name, "body": self.body, "version": self.version}
        if self.allowed_keys is not None:
            doc["allowed_keys"] = list(self.allowed_keys)
        if self.window is not None:
            doc["window"] = self.window.to_json()
        doc["created_at"] = self.created_at
        doc["updated_at"] = self.updated_at
        return doc


@dataclass(frozen=True)
class Preview:
    """What a text costs as SMS; `warning` names the characters that force UCS-2."""

    body: str
    encoding: str  # "gsm7" / "ucs2", as in the message object
    segments: int
    warning: str | None = None
    non_gsm7: tuple[str, ...] = field(default=())  # distinct, in order of appearance

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"body": self.body, "encoding": self.encoding, "segments": self.segments}
        if self.warning is not None:
            doc["warning"] = self.warning
        return doc


# ---------------------------------------------------------------- documents
def check_name(value: Any, *, field_name: str = "name") -> str:
    """A template name: 1 to 64 of a-z, 0-9, '_' and '-'."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        shown = repr(value[:80]) if isinstance(value, str) else json_type(value)
        raise TemplateError(
            "invalid_field",
            f"{field_name}: expected 1 to 64 characters of a-z, 0-9, '_' and '-', got {shown}",
        )
    return value


def parse_template_doc(doc: Any, *, name: str | None = None) -> TemplateDraft:
    """A POST (name in the body) or PUT (`name` from the path) document -> TemplateDraft."""
    if not isinstance(doc, dict):
        raise TemplateError(
            "invalid_request", f"the request body must be a JSON object, not {json_type(doc)}"
        )
    for key in doc:
        if key not in TEMPLATE_FIELDS:
            raise TemplateError(
                "unknown_field", f"{key}: unknown field (allowed: {', '.join(sorted(TEMPLATE_FIELDS))})"
            )
    if name is None:
        if "name" not in doc:
            raise TemplateError("missing_field", "name: this field is required")
        name = check_name(doc["name"])
    else:
        name = check_name(name)
        if "name" in doc and doc["name"] != name:
            raise TemplateError(
                "invalid_field", f"name: {doc['name']!r} differs from the name in the path {name!r}"
            )
    if "body" not in doc:
        raise TemplateError("missing_field", "body: this field is required")
    body = check_body(doc["body"])
    version = doc.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 1):
        raise TemplateError("invalid_field", f"version: expected the current version number, got {version!r}")
    allowed = doc.get("allowed_keys")
    window = doc.get("window")
    try:
        parsed_window = None if window is None else parse_window(window, field="window")
    except WindowError as exc:
        raise TemplateError("invalid_window", exc.message) from None
    return TemplateDraft(
        name=name,
        body=body,
        allowed_keys=None if allowed is None else check_allowed_keys(allowed),
        window=parsed_window,
        expected_version=version,
    )


def check_allowed_keys(value: Any) -> tuple[str, ...]:
    """API key names that may use the template (an empty list: none but admin keys may)."""
    if not isinstance(value, list) or len(value) > MAX_ALLOWED_KEYS:
        raise TemplateError(
            "invalid_field", f"allowed_keys: expected a list of at most {MAX_ALLOWED_KEYS} API key names"
        )
    names: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not _KEY_NAME.fullmatch(item):
            raise TemplateError(
                "invalid_field", f"allowed_keys[{index}]: expected an API key name, got {item!r}"
            )
        if item not in names:
            names.append(item)
    return tuple(names)


def check_body(value: Any) -> str:
    """A template source: a non-empty string within MAX_BODY_CHARS that compiles in our subset."""
    if not isinstance(value, str):
        raise TemplateError("invalid_template", f"body: expected a string, got {json_type(value)}")
    if not value.strip():
        raise TemplateError("invalid_template", "body: the template is empty")
    if len(value) > MAX_BODY_CHARS:
        raise TemplateError(
            "invalid_template", f"body: {len(value)} characters, the limit is {MAX_BODY_CHARS}"
        )
    compile_body(value)
    return value


def new_template(draft: TemplateDraft, *, now: float) -> TemplateRecord:
    """Version 1 of a template (POST)."""
    if draft.expected_version not in (None, 1):
        raise TemplateError(
            "version_conflict",
            f"version: a new template starts at 1, not {draft.expected_version}",
            status=409,
        )
    return TemplateRecord(draft.name, draft.body, 1, draft.allowed_keys, draft.window, now, now)


def revise(current: TemplateRecord, draft: TemplateDraft, *, now: float) -> TemplateRecord:
    """The next version (PUT): version + 1, created_at kept; a stale `version` is a 409."""
    if draft.expected_version is not None and draft.expected_version != current.version:
        raise TemplateError(
            "version_conflict",
            f"version: {current.label()} is the current one, the request was based on v{draft.expected_version}",
            status=409,
        )
    return TemplateRecord(
        current.name,
        draft.body,
        current.version + 1,
        draft.allowed_keys,
        draft.window,
        current.created_at,
        now,
    )


def check_vars(value: Any) -> dict[str, Any]:
    """`vars`: an object of at most MAX_VARS names -> JSON scalars, or small lists/objects of scalars."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TemplateError("invalid_field", f"vars: expected a JSON object, got {json_type(value)}")
    if len(value) > MAX_VARS:
        raise TemplateError("invalid_field", f"vars: {len(value)} variables, the limit is {MAX_VARS}")
    for name, item in value.items():
        if not _VAR_NAME.fullmatch(name):
            raise TemplateError(
                "invalid_field",
                f"vars.{name[:64]}: a variable name is a letter then letters, digits or '_' (at most 64)",
                variable=name[:64],
            )
        _check_value(item, f"vars.{name}", depth=0)
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > MAX_VARS_BYTES:
        raise TemplateError("invalid_field", f"vars: {size} bytes as JSON, the limit is {MAX_VARS_BYTES}")
    return value


def _check_value(value: Any, path: str, *, depth: int) -> None:
    variable = path.removeprefix("vars.").split(".")[0].split("[")[0]
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if len(str(abs(value))) > MAX_INT_DIGITS:
            raise TemplateError(
                "invalid_field", f"{path}: more than {MAX_INT_DIGITS} digits", variable=variable
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TemplateError("invalid_field", f"{path}: not a finite number", variable=variable)
        return
    if isinstance(value, str):
        if len(value) > MAX_VAR_CHARS:
            raise TemplateError(
                "invalid_field",
                f"{path}: {len(value)} characters, the limit is {MAX_VAR_CHARS}",
                variable=variable,
            )
        return
    if depth >= 1 or not isinstance(value, list | dict):
        raise TemplateError(
            "invalid_field",
            f"{path}: expected a string, number, boolean, null, or a list/object of those",
            variable=variable,
        )
    if len(value) > MAX_VAR_ITEMS:
        raise TemplateError(
            "invalid_field", f"{path}: {len(value)} items, the limit is {MAX_VAR_ITEMS}", variable=variable
        )
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_value(item, f"{path}[{index}]", depth=depth + 1)
    else:
        for key, item in value.items():
            if not _VAR_NAME.fullmatch(key):
                raise TemplateError(
                    "invalid_field",
                    f"{path}.{key[:64]}: a key is a letter then letters, digits or '_'",
                    variable=variable,
                )
            _check_value(item, f"{path}.{key}", depth=depth + 1)


# ---------------------------------------------------------------- rendering
def render(
    template: TemplateRecord, variables: Mapping[str, Any], *, max_chars: int = MAX_OUTPUT_CHARS
) -> str:
    """The text of one message; TemplateError (`template_error`) naming the variable or line at fault."""
    return render_body(template.body, variables, label=template.label(), max_chars=max_chars)


def render_body(
    body: str, variables: Mapping[str, Any], *, label: str = "template", max_chars: int = MAX_OUTPUT_CHARS
) -> str:
    """Render a template source (saved or not) with checked vars; see `render`."""
    return render_source(body, variables, label=label, max_chars=max_chars)


def preview(text: str) -> Preview:
    """Encoding and segment count of a text, with a warning naming what turns GSM-7 into UCS-2."""
    segmentation = segment_text(text)
    segments = len(segmentation.parts)
    offenders = tuple(dict.fromkeys(char for char in text if not is_gsm7(char)))
    if not offenders:
        return Preview(text, segmentation.encoding.value, segments)
    # What the same text would cost if those characters were GSM-7 ones: one septet each.
    as_gsm7 = len(segment_text("".join("?" if char in offenders else char for char in text)).parts)
    named = ", ".join(f"{char!r} (U+{ord(char):04X})" for char in offenders[:MAX_WARNED_CHARS])
    if len(offenders) > MAX_WARNED_CHARS:
        named += f" and {len(offenders) - MAX_WARNED_CHARS} more"
    verb = "makes" if len(offenders) == 1 else "make"
    if as_gsm7 == segments:
        cost = f"{segments} segment{'s' if segments != 1 else ''} either way, at 70 characters a segment instead of 160"
    else:
        cost = f"{as_gsm7} segment{'s' if as_gsm7 != 1 else ''} → {segments}"
    warning = f"{named} {verb} this UCS-2: {cost}"
    return Preview(text, segmentation.encoding.value, segments, warning, offenders)


# ------------------------------------------------- POST /api/v1/messages, preview
@dataclass(frozen=True)
class TemplateRef:
    """`"template"` + `"vars"` of a send request, checked; the caller fetches the record by `name`."""

    name: str
    variables: dict[str, Any]


def template_ref(doc: Mapping[str, Any]) -> TemplateRef | None:
    """The request's template reference, None when it sends a plain `body`; refuses both or neither."""
    if "template" not in doc:
        if "vars" in doc:
            raise TemplateError(
                "invalid_field", 'vars: only with "template" (the variables of a named template)'
            )
        return None
    if "body" in doc:
        raise TemplateError(
            "invalid_field", 'template: send either "body" or "template" with "vars", not both'
        )
    return TemplateRef(check_name(doc["template"], field_name="template"), check_vars(doc.get("vars")))


def render_message(
    template: TemplateRecord | None, ref: TemplateRef, *, key_name: str, admin: bool, max_chars: int
) -> str:
    """The text a send request's template makes, for the API key `key_name` (admin keys may use any)."""
    if template is None:
        raise TemplateError("unknown_template", f"template: no template named {ref.name!r}")
    if not admin and not template.allows(key_name):
        raise TemplateError(
            "template_not_allowed",
            f"template: the API key {key_name!r} may not send with {template.label()} (allowed_keys)",
            status=403,
        )
    return render(template, ref.variables, max_chars=max_chars)


def preview_request(template: TemplateRecord, doc: Any, *, max_chars: int) -> Preview:
    """POST /api/v1/templates/{name}/preview: `{"vars"?, "body"?}` -> Preview of the rendered text.

    A `body` previews an edit before it is saved (checked as a PUT would check it).
    """
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise TemplateError(
            "invalid_request", f"the request body must be a JSON object, not {json_type(doc)}"
        )
    for key in doc:
        if key not in ("vars", "body"):
            raise TemplateError("unknown_field", f"{key}: unknown field (allowed: body, vars)")
    variables = check_vars(doc.get("vars"))
    if "body" in doc:
        text = render_body(
            check_body(doc["body"]),
            variables,
            label=f"template {template.name!r} (draft)",
            max_chars=max_chars,
        )
    else:
        text = render(template, variables, max_chars=max_chars)
    return preview(text)
