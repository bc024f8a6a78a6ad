"""Message templates: sandboxed rendering with errors naming the variable, bounded work, versions, preview."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.sms_templates import (
    MAX_BODY_CHARS,
    MAX_LOOP,
    TemplateDraft,
    TemplateError,
    TemplateRecord,
    TemplateRef,
    check_body,
    check_vars,
    new_template,
    parse_template_doc,
    preview,
    preview_request,
    render,
    render_body,
    render_message,
    revise,
    template_ref,
)
from appliance.windows import parse_window
from modem.pdu import gsm7

OFFICE = {"days": "mon-fri", "start": "08:00", "end": "20:00", "tz": "Europe/Berlin"}


def saved(body: str, *, version: int = 1, name: str = "welcome") -> TemplateRecord:
    return TemplateRecord(name, check_body(body), version, None, None, 0.0, 0.0)


# ---------------------------------------------------------------- rendering
@pytest.mark.parametrize(
    ("body", "variables", "text"),
    [
        ("Hello {{ name }}", {"name": "Ann"}, "Hello Ann"),
        ("{{ n + 1 }} {{ n / 4 }} {{ n // 4 }} {{ n % 4 }} {{ -n }}", {"n": 10}, "11 2.5 2 2 -10"),
        ("Order {{ order.id }} for {{ order['who'] }}", {"order": {"id": 7, "who": "Bo"}}, "Order 7 for Bo"),
        ("{{ items|join(', ') }} ({{ items|length }})", {"items": ["tea", "milk"]}, "tea, milk (2)"),
        (
            "{% if late %}LATE {% else %}on time {% endif %}{{ eta }}",
            {"late": True, "eta": "9:00"},
            "LATE 9:00",
        ),
        ("{% for i in items %}{{ loop.index }}.{{ i }} {% endfor %}", {"items": ["a", "b"]}, "1.a 2.b "),
        ("{% for i in range(3) %}{{ i }}{% endfor %}", {}, "012"),
        (
            "{{ who|default('there') }}, {{ name|upper|truncate(5, True, '', 0) }}",
            {"name": "alexander"},
            "there, ALEXA",
        ),
        ("{{ name ~ '!' if name is defined else 'nobody' }}", {}, "nobody"),
        ("{{ q|urlencode }}", {"q": "a b&c"}, "a%20b%26c"),
        ("Line one\nLine two\n", {}, "Line one\nLine two\n"),  # the trailing newline is kept
        ("Dear {{ title }} {{ name }}", {"title": None, "name": "Ng"}, "Dear  Ng"),  # null prints nothing
        ("<b>&amp;</b> {{ x }}", {"x": "<i>"}, "<b>&amp;</b> <i>"),  # plain text: nothing escaped
    ],
)
def test_a_template_renders_with_its_vars(body: str, variables: dict[str, Any], text: str) -> None:
    assert render(saved(body), check_vars(variables)) == text


def test_an_undefined_variable_is_an_error_naming_it_with_the_version() -> None:
    with pytest.raises(TemplateError) as caught:
        render(saved("Hi {{ first }}\nyour code is {{ code }}", version=3), {"first": "Ann"})
    assert caught.value.code == "template_error"
    assert caught.value.variable == "code"
    assert caught.value.line == 2
    assert caught.value.message == "template 'welcome' v3: variable 'code' is not defined"


def test_a_missing_key_of_an_object_is_an_error_naming_the_key() -> None:
    with pytest.raises(TemplateError) as caught:
        render(saved("{{ order.id }}"), {"order": {"total": 5}})
    assert (caught.value.code, caught.value.variable) == ("template_error", "id")
    assert "'id' is missing from an object variable" in caught.value.message


def test_a_variable_tested_for_definition_is_not_required() -> None:
    assert render(saved("{% if extra is defined %}{{ extra }}{% endif %}ok"), {}) == "ok"


# ------------------------------------------------------------ bounded work
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{% for i in range(10**9) %}x{% endfor %}", "body: line 1: '**' is not available"),
        ("{{ 'a' * 1000000000 }}", "body: line 1: '*' is not available"),
        (
            "{% for a in x %}\n{% for b in x %}{% endfor %}{% endfor %}",
            "body: line 2: a {% for %} inside another",
        ),
        ("{% for a in x recursive %}{{ loop(a) }}{% endfor %}", "body: line 1: recursive loops"),
        (
            "{% for i in range(100) %}{{ " + " ~ ".join(["x"] * 250) + " }}{% endfor %}",
            "body: line 1: this {% for %} has 256 parts (names, filters, text...) to repeat up to 100 times; the limit is 200",
        ),
        ("{% set s = 'a' %}{{ s }}", "body: line 1: {% set %} is not available"),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}", "body: line 1: macros are not available"),
        ("{% include 'x' %}", "body: line 1: {% include %} is not available"),
        ("{{ ''.ljust(1000000000) }}", "body: line 1: calls are not available"),
        ("{{ x|center(1000000000) }}", "body: line 1: filter 'center' is not available"),
        ("{{ 'a'|replace('', 'aaaa') }}", "body: line 1: filter 'replace' is not available"),
        ("{{ cycler(1, 2) }}", "body: line 1: calls are not available"),
        ("ok\nstill ok\n{{ name }", "body: line 3: unexpected '}'"),
        ("{% if x %}never closed", "body: line 1: Unexpected end of template"),
        ("{{ x is nonsense }}", "body: line 1: "),
        ("x" * (MAX_BODY_CHARS + 1), f"body: {MAX_BODY_CHARS + 1} characters, the limit is {MAX_BODY_CHARS}"),
        ("   ", "body: the template is empty"),
    ],
)
def test_a_template_outside_the_bounded_subset_is_refused_at_save_with_its_line(
    body: str, message: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        check_body(body)
    assert caught.value.code == "invalid_template"
    assert caught.value.message.startswith(message), caught.value.message


@pytest.mark.parametrize(
    ("body", "variables", "message"),
    [
        (
            "{% for i in range(1000000000) %}x{% endfor %}",
            {},
            f"line 1: range() of 1000000000 numbers, the limit is {MAX_LOOP}",
        ),
        ("{{ '%-1000000000s' % x }}", {"x": "a"}, "line 1: '%' works on numbers only"),
        (
            "{% for c in x %}{% if (x ~ x ~ x ~ x)|length > 1 %}{% endif %}{% endfor %}",
            {"x": "y" * 1600},
            "line 1: a loop over 1600 items, the limit is 100",
        ),
        (
            "{% for i in range(100) %}{{ x }}{% endfor %}",
            {"x": "y" * 20},
            "renders to more than 1600 characters",
        ),
        (
            "{{ x|urlencode|urlencode|urlencode|urlencode|urlencode }}",
            {"x": "%" * 1600},
            "made a value longer than",
        ),
        ("first\n{{ n / 0 }}", {"n": 1}, "line 2: division by zero"),
        (
            "{{ x|sort|length }}" * 10,  # each sort of 1,600 characters costs 32,000 units of 200,000
            {"x": "y" * 1600},
            "line 1: the template does too much work (over 200000 characters through filters)",
        ),
        (
            "{{ x ~ x ~ x ~ x ~ x ~ x ~ x }}",
            {"x": "y" * 1600},
            "line 1: text joined with '~' is longer than 10000",
        ),
        (
            "{{ x.__class__.__mro__ }}",
            {"x": "s"},
            "line 1: access to attribute '__class__' of 'str' object is unsafe",
        ),
    ],
)
def test_a_render_that_would_explode_is_refused(body: str, variables: dict[str, Any], message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render(saved(body), check_vars(variables))
    assert caught.value.code == "template_error"
    assert message in caught.value.message, caught.value.message


def test_the_output_cap_follows_the_callers_limit() -> None:
    assert render_body("{{ x }}", {"x": "a" * 10}, max_chars=10) == "a" * 10
    with pytest.raises(TemplateError, match="renders to more than 9 characters"):
        render_body("{{ x }}", {"x": "a" * 10}, max_chars=9)


# ------------------------------------------------------------------- vars
@pytest.mark.parametrize(
    ("variables", "message", "variable"),
    [
        ([1, 2], "vars: expected a JSON object, got an array", None),
        ({"1x": 1}, "vars.1x: a variable name is a letter", "1x"),
        ({"x": "a" * 1601}, "vars.x: 1601 characters, the limit is 1600", "x"),
        ({"x": 10**19}, "vars.x: more than 18 digits", "x"),
        ({"x": float("inf")}, "vars.x: not a finite number", "x"),
        ({"x": [[1]]}, "vars.x[0]: expected a string, number", "x"),
        ({"x": {"y": {"z": 1}}}, "vars.x.y: expected a string, number", "x"),
        ({"x": list(range(51))}, "vars.x: 51 items, the limit is 50", "x"),
        ({f"v{i}": i for i in range(51)}, "vars: 51 variables, the limit is 50", None),
        ({f"v{i}": "x" * 1000 for i in range(20)}, "bytes as JSON, the limit is 16384", None),
    ],
)
def test_vars_outside_the_limits_are_refused_naming_the_variable(
    variables: Any, message: str, variable: str | None
) -> None:
    with pytest.raises(TemplateError) as caught:
        check_vars(variables)
    assert caught.value.code == "invalid_field"
    assert message in caught.value.message, caught.value.message
    assert caught.value.variable == variable


def test_absent_vars_are_an_empty_object() -> None:
    assert check_vars(None) == {}


# ---------------------------------------------------------------- versions
def test_a_template_starts_at_version_1_and_each_put_adds_one() -> None:
    first = new_template(parse_template_doc({"name": "welcome", "body": "Hi {{ name }}"}), now=100.0)
    assert (first.version, first.created_at, first.updated_at) == (1, 100.0, 100.0)
    put = parse_template_doc(
        {"body": "Hello {{ name }}", "allowed_keys": ["crm"], "window": OFFICE}, name="welcome"
    )
    second = revise(first, put, now=200.0)
    assert (second.version, second.created_at, second.updated_at, second.body) == (
        2,
        100.0,
        200.0,
        "Hello {{ name }}",
    )
    assert second.to_json() == {
        "name": "welcome",
        "body": "Hello {{ name }}",
        "version": 2,
        "allowed_keys": ["crm"],
        "window": OFFICE,
        "created_at": 100.0,
        "updated_at": 200.0,
    }
    assert render(second, {"name": "Bo"}) == "Hello Bo"
    assert render(first, {"name": "Bo"}) == "Hi Bo"  # a message keeps the version it was sent with


def test_a_put_based_on_a_stale_version_is_a_conflict() -> None:
    current = revise(new_template(TemplateDraft("t", "a"), now=1.0), TemplateDraft("t", "b"), now=2.0)
    with pytest.raises(TemplateError) as caught:
        revise(current, parse_template_doc({"body": "c", "version": 1}, name="t"), now=3.0)
    assert (caught.value.status, caught.value.code) == (409, "version_conflict")
    assert revise(current, parse_template_doc({"body": "c", "version": 2}, name="t"), now=3.0).version == 3


def test_allowed_keys_limit_who_may_send_with_a_template() -> None:
    open_to_all = new_template(TemplateDraft("t", "a"), now=1.0)
    only_crm = new_template(TemplateDraft("t", "a", allowed_keys=("crm",)), now=1.0)
    assert open_to_all.allows("shop")
    assert only_crm.allows("crm")
    assert not only_crm.allows("shop")


@pytest.mark.parametrize(
    ("doc", "name", "code", "message"),
    [
        (
            {"name": "Welcome!", "body": "x"},
            None,
            "invalid_field",
            "name: expected 1 to 64 characters of a-z",
        ),
        ({"name": "a" * 65, "body": "x"}, None, "invalid_field", "name: expected 1 to 64"),
        ({"body": "x"}, None, "missing_field", "name: this field is required"),
        ({"name": "t"}, None, "missing_field", "body: this field is required"),
        ({"name": "u", "body": "x"}, "t", "invalid_field", "name: 'u' differs from the name in the path 't'"),
        ({"body": "x", "colour": 1}, "t", "unknown_field", "colour: unknown field"),
        ({"body": "x", "allowed_keys": "crm"}, "t", "invalid_field", "allowed_keys: expected a list"),
        (
            {"body": "x", "allowed_keys": ["crm", ""]},
            "t",
            "invalid_field",
            "allowed_keys[1]: expected an API key name",
        ),
        ({"body": "x", "version": 0}, "t", "invalid_field", "version: expected the current version number"),
        (
            {"body": "x", "window": {**OFFICE, "tz": "Mars/Olympus"}},
            "t",
            "invalid_window",
            "window.tz: unknown time zone 'Mars/Olympus'",
        ),
        ({"body": "{{ x"}, "t", "invalid_template", "body: line 1:"),
        ([], "t", "invalid_request", "the request body must be a JSON object"),
    ],
)
def test_a_bad_template_document_is_refused_naming_the_field(
    doc: Any, name: str | None, code: str, message: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        parse_template_doc(doc, name=name)
    assert caught.value.code == code
    assert caught.value.message.startswith(message), caught.value.message


def test_a_template_window_is_kept_as_a_window() -> None:
    draft = parse_template_doc({"name": "t", "body": "x", "window": OFFICE})
    assert draft.window == parse_window(OFFICE)


# ----------------------------------------------------------------- preview
@pytest.mark.parametrize(
    ("text", "encoding", "segments", "warning"),
    [
        ("Your parcel arrives today", "gsm7", 1, None),
        ("a" * 150 + "\u2019", "ucs2", 3, "'\u2019' (U+2019) makes this UCS-2: 1 segment → 3"),
        ("a" * 161, "gsm7", 2, None),
        ("€" * 10 + "{}", "gsm7", 1, None),  # extension characters stay GSM-7
        (
            "Hi 😀",
            "ucs2",
            1,
            "'😀' (U+1F600) makes this UCS-2: 1 segment either way, at 70 characters a segment instead of 160",
        ),
        (
            "«a» — é",
            "ucs2",
            1,
            "'«' (U+00AB), '»' (U+00BB), '—' (U+2014) make this UCS-2: 1 segment either way",
        ),
        (
            "ĀāĂăĄąĆ",
            "ucs2",
            1,
            "'Ā' (U+0100), 'ā' (U+0101), 'Ă' (U+0102), 'ă' (U+0103), 'Ą' (U+0104) and 2 more make",
        ),
    ],
)
def test_the_preview_counts_segments_and_names_the_characters_forcing_ucs2(
    text: str, encoding: str, segments: int, warning: str | None
) -> None:
    shown = preview(text)
    assert (shown.body, shown.encoding, shown.segments) == (text, encoding, segments)
    if warning is None:
        assert shown.warning is None
        assert shown.to_json() == {"body": text, "encoding": encoding, "segments": segments}
    else:
        assert shown.warning is not None
        assert shown.warning.startswith(warning), shown.warning
        assert shown.to_json()["warning"] == shown.warning


# -------------------------------------------------------------- properties
GSM7_CHARS = sorted(
    {char for code, char in enumerate(gsm7.BASIC) if code != gsm7.ESCAPE} | set(gsm7.EXTENSION)
)
# Jinja turns "\r" and "\r\n" into "\n", like every line break in a template's source.
PLAIN_GSM7 = st.text(
    st.sampled_from([char for char in GSM7_CHARS if char != "\r"]), min_size=1, max_size=400
).filter(lambda text: text.strip() and not any(mark in text for mark in ("{{", "{%", "{#")))


@settings(max_examples=200, deadline=None)
@given(PLAIN_GSM7)
def test_gsm7_text_without_template_syntax_renders_as_itself(text: str) -> None:
    assert render(saved(text), {}) == text
    assert preview(text).encoding == "gsm7"


@settings(max_examples=200, deadline=None)
@given(
    st.text(
        st.one_of(st.sampled_from(GSM7_CHARS), st.characters(codec="utf-8", exclude_categories=["Cs"])),
        max_size=300,
    )
)
def test_the_warning_appears_exactly_when_a_character_is_outside_gsm7_and_names_it(text: str) -> None:
    shown = preview(text)
    outside = list(dict.fromkeys(char for char in text if not gsm7.is_gsm7(char)))
    assert (shown.warning is not None) == bool(outside)
    assert shown.encoding == ("ucs2" if outside else "gsm7")
    assert list(shown.non_gsm7) == outside
    for char in outside[:5]:
        assert f"(U+{ord(char):04X})" in (shown.warning or "")


# ------------------------------------------------------ send requests, preview
def test_a_send_request_names_a_template_or_a_body_not_both() -> None:
    assert template_ref({"to": "+4915112345678", "body": "x"}) is None
    ref = template_ref({"template": "welcome", "vars": {"name": "Ann"}})
    assert ref is not None
    assert (ref.name, ref.variables) == ("welcome", {"name": "Ann"})
    with pytest.raises(TemplateError, match='template: send either "body" or "template"'):
        template_ref({"template": "welcome", "body": "x"})
    with pytest.raises(TemplateError, match='vars: only with "template"'):
        template_ref({"body": "x", "vars": {}})
    with pytest.raises(TemplateError, match="template: expected 1 to 64 characters"):
        template_ref({"template": "../etc"})


def test_a_message_renders_its_template_for_keys_it_allows() -> None:
    only_crm = new_template(
        TemplateDraft("welcome", check_body("Hi {{ name }}"), allowed_keys=("crm",)), now=1.0
    )
    ref = TemplateRef("welcome", {"name": "Ann"})
    assert render_message(only_crm, ref, key_name="crm", admin=False, max_chars=160) == "Hi Ann"
    assert render_message(only_crm, ref, key_name="ops", admin=True, max_chars=160) == "Hi Ann"
    with pytest.raises(TemplateError) as refused:
        render_message(only_crm, ref, key_name="shop", admin=False, max_chars=160)
    assert (refused.value.status, refused.value.code) == (403, "template_not_allowed")
    with pytest.raises(TemplateError) as unknown:
        render_message(None, ref, key_name="crm", admin=False, max_chars=160)
    assert (unknown.value.status, unknown.value.code) == (422, "unknown_template")
    with pytest.raises(TemplateError) as missing:
        render_message(only_crm, TemplateRef("welcome", {}), key_name="crm", admin=False, max_chars=160)
    assert missing.value.message == "template 'welcome' v1: variable 'name' is not defined"


def test_the_preview_request_renders_the_saved_or_a_draft_body() -> None:
    record = new_template(TemplateDraft("welcome", check_body("Hi {{ name }}")), now=1.0)
    assert preview_request(record, {"vars": {"name": "Ann"}}, max_chars=1600).to_json() == {
        "body": "Hi Ann",
        "encoding": "gsm7",
        "segments": 1,
    }
    draft = preview_request(
        record, {"vars": {"name": "Ann"}, "body": "Hi {{ name }} \u2014 see you"}, max_chars=1600
    )
    assert (draft.encoding, draft.warning) == (
        "ucs2",
        "'\u2014' (U+2014) makes this UCS-2: 1 segment either way, at 70 characters a segment instead of 160",
    )
    with pytest.raises(TemplateError, match="colour: unknown field"):
        preview_request(record, {"colour": 1}, max_chars=1600)
    with pytest.raises(TemplateError, match="variable 'name' is not defined"):
        preview_request(record, None, max_chars=1600)
