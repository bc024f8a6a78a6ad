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

Bounded work. A template is hostile text, so the language is a subset chosen so that the
cost of a render grows at most linearly with the sizes of the template and the vars:
output, `if`, one level of `for` (at most MAX_LOOP_NODES parts) over at most MAX_LOOP items,
expressions without `*` and `**`, whitelisted filters and `~` (each result capped, and all
of them together held to MAX_RENDER_WORK characters read), tests. No `set`, macros, blocks,
includes, method calls or `%` on strings: all checked on the parse tree at save time, with
line numbers, before Jinja compiles anything. The sandbox still guards attribute access; the
output is streamed and cut off at `max_chars`.

Text: no autoescape (SMS is plain text), the trailing newline is kept, JSON null prints
nothing; Jinja reads "\r\n" and "\r" in a template's source as "\n".
"""

from __future__ import annotations

import contextvars
import functools
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer

from appliance.jsontypes import json_type
from appliance.windows import Window, WindowError, parse_window
from modem.pdu import segment_text
from modem.pdu.gsm7 import is_gsm7

MAX_BODY_CHARS = 4096  # template source; a rendered SMS is capped by [api] max_text_chars
MAX_OUTPUT_CHARS = 1600  # default cap of a render (the API passes config.api.max_text_chars)
MAX_VALUE_CHARS = 10_000  # any intermediate string or list a filter returns
MAX_RENDER_WORK = 200_000  # characters and items one render's filters, `~` and loops may touch
MAX_LOOP = 100  # items a {% for %} may iterate over, range(n) included
MAX_LOOP_NODES = 200  # parse-tree nodes inside one {% for %}: with MAX_LOOP, bounds a render's work
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
_TEMPLATE_FILE = "<template>"
# Filters the compiler inserts; a template cannot name them (its filters are checked against FILTERS).
_LOOP_FILTER = "_loop_items"
_JOIN_FILTER = "_join_capped"
# The work left to the render running in this thread/task: [units].
_budget: contextvars.ContextVar[list[int]] = contextvars.ContextVar("template_work_budget")


class TemplateError(Exception):
    """A template, its vars or a render refused; the API maps it to 4xx `{"code", "message"}`."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        variable: str | None = None,
        line: int | None = None,
        status: int = 422,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.variable = variable
        self.line = line
        self.status = status

    def __repr__(self) -> str:
        return f"TemplateError(code={self.code!r}, variable={self.variable!r}, message={self.message!r})"


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
    _compile(value)
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
    compiled = _compile(body)
    budget = _budget.set([MAX_RENDER_WORK])
    try:
        text = _generate(compiled, variables, max_chars)
    except _Missing as exc:
        kind, marked, name = str(exc).partition("\0")
        if not marked:  # a hint Jinja wrote itself
            raise TemplateError("template_error", f"{label}: {exc}", line=_template_line(exc)) from None
        what = (
            f"variable {name!r} is not defined"
            if kind == "var"
            else f"{name!r} is missing from {kind} variable"
        )
        raise TemplateError(
            "template_error", f"{label}: {what}", variable=name, line=_template_line(exc)
        ) from None
    except _Refused as exc:
        line = _template_line(exc)
        at = f" line {line}:" if line is not None else ""
        raise TemplateError("template_error", f"{label}:{at} {exc}", line=line) from None
    except (jinja2.TemplateError, ArithmeticError, TypeError, ValueError, LookupError, RecursionError) as exc:
        line = _template_line(exc)
        at = f" line {line}:" if line is not None else ""
        raise TemplateError("template_error", f"{label}:{at} {exc}", line=line) from None
    finally:
        _budget.reset(budget)
    if text is None:
        raise TemplateError("template_error", f"{label}: renders to more than {max_chars} characters")
    return text


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


# ----------------------------------------------------------------- sandbox
class _Missing(jinja2.UndefinedError):
    """An undefined value was used; args[0] is "var\\0name" or "an object\\0key"."""


class _Refused(Exception):
    """A construct the bounded subset refuses at render time (a long range, `%` on text)."""


class _StrictUndefined(jinja2.StrictUndefined):
    """StrictUndefined whose error carries the variable's name (Jinja's carries only a sentence)."""

    __slots__ = ()

    def __init__(
        self,
        hint: str | None = None,
        obj: Any = jinja2.utils.missing,
        name: str | None = None,
        exc: type[jinja2.exceptions.TemplateRuntimeError] = jinja2.UndefinedError,
    ) -> None:
        # The sandbox passes SecurityError (an unsafe attribute) with a hint: keep both.
        super().__init__(hint, obj, name, _Missing if exc is jinja2.UndefinedError else exc)

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        if self._undefined_obj is jinja2.utils.missing:
            return f"var\0{self._undefined_name}"
        return f"{json_type(self._undefined_obj)}\0{self._undefined_name}"


class _Sandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"%"})

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        # "%-1000000000s" % x would allocate a gigabyte in one C call.
        if operator == "%" and not (_is_number(left) and _is_number(right)):
            raise _Refused("'%' works on numbers only in a template (use filters to format text)")
        return super().call_binop(context, operator, left, right)


def _charge(units: int) -> None:
    """Spend `units` of the running render's work budget (none outside a render: constant folding)."""
    budget = _budget.get(None)
    if budget is None:
        return
    budget[0] -= units
    if budget[0] < 0:
        raise _Refused(f"the template does too much work (over {MAX_RENDER_WORK} characters through filters)")


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple | dict | range) else 0


def _loop_items(value: Any) -> Any:
    """What a {% for %} iterates over, refused past MAX_LOOP items (the compiler inserts this filter)."""
    if _size(value) > MAX_LOOP:
        raise _Refused(f"a loop over {len(value)} items, the limit is {MAX_LOOP}")
    _charge(_size(value))
    return value


def _join_capped(items: list[Any]) -> str:
    """`a ~ b ~ c`, stopped as soon as the text passes MAX_VALUE_CHARS (Jinja would build it whole)."""
    out: list[str] = []
    size = 0
    for item in items:
        text = str(item)  # as Jinja's own `~`; an undefined item raises here
        size += len(text)
        _charge(len(text))
        if size > MAX_VALUE_CHARS:
            raise _Refused(f"text joined with '~' is longer than {MAX_VALUE_CHARS} characters")
        out.append(text)
    return "".join(out)


def _bounded_range(*args: Any) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_LOOP:
        raise _Refused(f"range() of {len(numbers)} numbers, the limit is {MAX_LOOP}")
    return numbers


def _capped(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that pays for what it reads and refuses a result above MAX_VALUE_CHARS."""
    weight = _FILTER_WEIGHTS.get(name, 1)

    @functools.wraps(function)  # keeps Jinja's pass_environment/pass_eval_context marker
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _charge(weight * (sum(map(_size, args)) + sum(map(_size, kwargs.values()))))  # before: sort is slow
        result = function(*args, **kwargs)
        if _size(result) > MAX_VALUE_CHARS:
            raise _Refused(f"filter {name!r} made a value longer than {MAX_VALUE_CHARS}")
        _charge(_size(result))
        return result

    return wrapper


# Filters that neither take a filter's name (map/select) nor grow text by a parameter (center,
# indent, wordwrap, format, replace).
FILTERS = (
    "abs", "capitalize", "count", "d", "default", "first", "float", "int", "join", "last", "length",
    "lower", "max", "min", "reverse", "round", "sort", "string", "sum", "title", "trim", "truncate",
    "upper", "urlencode",
)  # fmt: skip
# Cost of a character or item read, relative to `upper`'s, measured: sort/min/max call a Python key
# function per item, title and urlencode work per character in Python.
_FILTER_WEIGHTS = {"sort": 20, "max": 20, "min": 20, "title": 4, "urlencode": 2}


def _shown(value: Any) -> Any:
    """What `{{ value }}` prints: JSON null prints nothing (not Python's "None")."""
    return "" if value is None else value


def _environment() -> _Sandbox:
    env = _Sandbox(
        undefined=_StrictUndefined,
        autoescape=False,  # SMS is plain text
        keep_trailing_newline=True,  # a template's text is sent as written
        finalize=_shown,
        auto_reload=False,
        cache_size=0,  # _compile keeps its own cache
    )
    builtin = env.filters
    env.filters = {name: _capped(name, builtin[name]) for name in FILTERS}
    env.filters[_LOOP_FILTER] = _loop_items
    env.filters[_JOIN_FILTER] = _join_capped
    env.globals = {"range": _bounded_range}
    return env


_ENV = _environment()

# Node types of the bounded subset; anything else is refused at save with its line.
_ALLOWED_NODES: tuple[type[nodes.Node], ...] = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Const,
    nodes.Name,
    nodes.Getattr,
    nodes.Getitem,
    nodes.Slice,
    nodes.Filter,
    nodes.Test,
    nodes.If,
    nodes.CondExpr,
    nodes.For,
    nodes.And,
    nodes.Or,
    nodes.Not,
    nodes.Neg,
    nodes.Pos,
    nodes.Compare,
    nodes.Operand,
    nodes.Concat,
    nodes.List,
    nodes.Tuple,
    nodes.Dict,
    nodes.Pair,
    nodes.Keyword,
    nodes.Add,
    nodes.Sub,
    nodes.Div,
    nodes.FloorDiv,
    nodes.Mod,
    nodes.Call,
)
_REFUSED_WHY = {
    nodes.Mul: "'*' is not available in templates",
    nodes.Pow: "'**' is not available in templates",
    nodes.Assign: "{% set %} is not available in templates",
    nodes.AssignBlock: "{% set %} is not available in templates",
    nodes.Macro: "macros are not available in templates",
    nodes.CallBlock: "{% call %} is not available in templates",
    nodes.Block: "blocks are not available in templates",
    nodes.Extends: "{% extends %} is not available in templates",
    nodes.Include: "{% include %} is not available in templates",
    nodes.Import: "{% import %} is not available in templates",
    nodes.FromImport: "{% from %} is not available in templates",
    nodes.With: "{% with %} is not available in templates",
    nodes.FilterBlock: "{% filter %} blocks are not available in templates",
}


@functools.lru_cache(maxsize=256)
def _compile(body: str) -> jinja2.Template:
    """Parse, check against the subset, compile; TemplateError `invalid_template` with the line."""
    try:
        tree = _ENV.parse(body)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            "invalid_template", f"body: line {exc.lineno}: {exc.message}", line=exc.lineno
        ) from None
    for node, loops in _walk(tree, 0):
        problem = _problem(node, loops)
        if problem is not None:
            line = getattr(node, "lineno", None)
            raise TemplateError("invalid_template", f"body: line {line}: {problem}", line=line)
    tree = _Bounds().visit(tree)
    try:
        return _ENV.from_string(tree)
    except jinja2.TemplateError as exc:  # e.g. a test name Jinja does not know
        line = getattr(exc, "lineno", None)
        raise TemplateError("invalid_template", f"body: line {line}: {exc}", line=line) from None


class _Bounds(NodeTransformer):
    """Routes what Jinja has no hook for through counting filters: loops and `~` chains."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _LOOP_FILTER, [], [], None, None, lineno=node.iter.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        items = nodes.List(node.nodes, lineno=node.lineno)
        return nodes.Filter(items, _JOIN_FILTER, [], [], None, None, lineno=node.lineno)


def _generate(compiled: jinja2.Template, variables: Mapping[str, Any], max_chars: int) -> str | None:
    """The rendered text, or None as soon as it passes max_chars (the rest is never computed)."""
    out: list[str] = []
    size = 0
    for chunk in compiled.generate(dict(variables)):
        size += len(chunk)
        if size > max_chars:
            return None  # the generator is dropped here: the rest of the template never runs
        out.append(chunk)
    return "".join(out)


def _walk(node: nodes.Node, loops: int) -> Iterator[tuple[nodes.Node, int]]:
    """Every node with the number of `for` loops around it."""
    yield node, loops
    inner = loops + 1 if isinstance(node, nodes.For) else loops
    for child in node.iter_child_nodes():
        # A loop's iterable is evaluated outside the loop it feeds.
        yield from _walk(child, loops if isinstance(node, nodes.For) and child is node.iter else inner)


def _problem(node: nodes.Node, loops: int) -> str | None:
    for kind, why in _REFUSED_WHY.items():
        if isinstance(node, kind):
            return why
    if not isinstance(node, _ALLOWED_NODES):
        return f"{type(node).__name__} is not available in templates"
    if isinstance(node, nodes.For):
        if loops:
            return "a {% for %} inside another is not available in templates (one level of loops)"
        if node.recursive:
            return "recursive loops are not available in templates"
        size = sum(1 for _ in node.find_all(nodes.Node))
        if size > MAX_LOOP_NODES:
            return (
                f"this {{% for %}} has {size} parts (names, filters, text...) to repeat up to {MAX_LOOP} "
                f"times; the limit is {MAX_LOOP_NODES}"
            )
    if isinstance(node, nodes.Call) and not (
        isinstance(node.node, nodes.Name)
        and node.node.name == "range"
        and node.dyn_args is None
        and node.dyn_kwargs is None
    ):
        return "calls are not available in templates, except range(n)"
    if isinstance(node, nodes.Filter) and node.name not in FILTERS:
        return f"filter {node.name!r} is not available (available: {', '.join(FILTERS)})"
    return None


def _template_line(exc: BaseException) -> int | None:
    """The template line a render error came from (Jinja rewrites tracebacks to the template)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILE:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


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


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
