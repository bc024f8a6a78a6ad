"""The bounded Jinja sandbox that renders message templates (appliance/sms_templates.py uses it).

    compiled = compile_body(body)      # parse, check against the subset, compile (cached); TemplateError
    text = render_source(body, variables, label="template 'x' v2", max_chars=160)

Bounded work. A template is hostile text, so the language is a subset chosen so that the
cost of a render grows at most linearly with the sizes of the template and the vars:
output, `if`, one level of `for` (at most MAX_LOOP_NODES parts) over at most MAX_LOOP items,
expressions without `*` and `**`, whitelisted filters and `~` (each result capped, and all
of them together held to MAX_RENDER_WORK characters read), tests. No `set`, macros, blocks,
includes, method calls or `%` on strings: all checked on the parse tree at save time, with
line numbers, before Jinja compiles anything. The sandbox still guards attribute access; the
output is streamed and cut off at `max_chars`. (The sizes of the vars are checked with the
rest of a request document: sms_templates.check_vars.)

Text: no autoescape (SMS is plain text), the trailing newline is kept, JSON null prints
nothing; Jinja reads "\r\n" and "\r" in a template's source as "\n".
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer

from appliance.jsontypes import json_type

MAX_VALUE_CHARS = 10_000  # any intermediate string or list a filter returns
MAX_RENDER_WORK = 200_000  # characters and items one render's filters, `~` and loops may touch
MAX_LOOP = 100  # items a {% for %} may iterate over, range(n) included
MAX_LOOP_NODES = 200  # parse-tree nodes inside one {% for %}: with MAX_LOOP, bounds a render's work

_TEMPLATE_FILE = "<template>"
# Filters the compiler inserts; a template cannot name them (its filters are checked against FILTERS).
_LOOP_FILTER = "_loop_items"
_JOIN_FILTER = "_join_capped"
# The work left to the render running in this thread/task: [units].
_budget: contextvars.ContextVar[list[int]] = contextvars.ContextVar("template_work_budget")


class TemplateError(Exception):
    """A template, its vars or a render refused; the API maps it to 4xx `{"code", "message"}`.

    Defined here, where the first refusals happen; callers import it from appliance.sms_templates.
    """

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


def render_source(body: str, variables: Mapping[str, Any], *, label: str, max_chars: int) -> str:
    """Render a template source with checked vars; TemplateError (`template_error`) naming the variable
    or line at fault, or the output passing `max_chars`."""
    compiled = compile_body(body)
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
        cache_size=0,  # compile_body keeps its own cache
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
def compile_body(body: str) -> jinja2.Template:
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


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
