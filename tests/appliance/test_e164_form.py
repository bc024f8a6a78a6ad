"""The E.164 fast path (appliance/e164_form.py) answers exactly what phonenumbers.parse answers,
on random "+digits" strings and on the cases where parse does more than split off a country code."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.e164_form import parse_e164, split_e164
from appliance.validation import ApiError, _possible_subscriber, parse_number

E164_LIKE = st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True)


@settings(max_examples=3000, deadline=None)
@given(E164_LIKE, st.sampled_from(["DE", "US", "IT", "GB", "FR"]))
def test_it_parses_as_phonenumbers_does(candidate: str, region: str) -> None:
    fast = parse_e164(candidate)
    try:
        full = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        assert fast is None  # parse refuses it: the caller runs parse, which words why
        return
    assert fast is None or fast == full


@settings(max_examples=3000, deadline=None)
@given(E164_LIKE, st.sampled_from(["DE", "US", "IT", "GB", "FR"]))
def test_a_number_split_as_its_own_form_is_what_phonenumbers_makes_of_it(candidate: str, region: str) -> None:
    """split_e164 says "keep the text": parse agrees, and formats it back to the same text with
    the country code and national number length split_e164 gave."""
    split = split_e164(candidate)
    if split is None:
        return
    full = phonenumbers.parse(candidate, region)  # raises, failing the test, if parse refuses it
    assert phonenumbers.format_number(full, phonenumbers.PhoneNumberFormat.E164) == candidate
    assert split == (full.country_code, len(phonenumbers.national_significant_number(full)))


def test_most_numbers_are_split_without_parse() -> None:
    """The shortcut takes what batches send (a mobile in E.164) and leaves what parse must decide."""
    assert split_e164("+4915112345678") == (49, 11)
    assert split_e164("+12025550123") == (1, 10)
    assert split_e164("+390612345678") == (39, 10)  # Italy: the leading 0 stays, as parse keeps it
    assert split_e164("+3530871234567") is None  # Ireland's national prefix 0: parse drops it
    assert split_e164("+99912345678") is None  # no such country code: parse words the refusal
    assert split_e164("0151 1234 5678") is None


@pytest.mark.parametrize(
    ("candidate", "e164"),
    [
        ("+4915112345678", "+4915112345678"),  # a German mobile
        ("+390612345678", "+390612345678"),  # Rome: the Italian leading zero is part of the number
        ("+12025550123", "+12025550123"),  # NANP: a one-digit country code
        ("+3530871234567", "+353871234567"),  # Ireland: parse drops the national prefix 0
    ],
)
def test_numbers_where_parse_does_more_than_split_off_the_country_code(candidate: str, e164: str) -> None:
    fast = parse_e164(candidate)
    assert fast is not None
    assert fast == phonenumbers.parse(candidate, "DE")
    assert parse_number(candidate, "DE") == e164


@pytest.mark.parametrize("candidate", ["+99912345678", "+0151234567", "0151 1234 5678", "+49 151 1234 5678"])
def test_other_forms_are_left_to_phonenumbers(candidate: str) -> None:
    assert parse_e164(candidate) is None


def test_an_unknown_country_code_is_refused_in_phonenumbers_words() -> None:
    with pytest.raises(ApiError) as refused:
        parse_number("+99912345678", "DE")
    assert refused.value.code == "invalid_number"
    assert refused.value.message.startswith("to: '+99912345678' is not a phone number")


@settings(max_examples=3000, deadline=None)
@given(
    st.one_of(E164_LIKE, st.from_regex(r"0?[0-9]{1,14}", fullmatch=True)),
    st.sampled_from(["DE", "US", "IT", "GB", "FR", "IN", "BR", "AR", "CN", "AU"]),
)
def test_a_length_is_possible_exactly_when_phonenumbers_says_so(candidate: str, region: str) -> None:
    """parse_number's possible-length check, answered by country code and length (cached), is
    phonenumbers' answer for the number itself."""
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return
    kinds = (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    )
    possible = any(
        phonenumbers.is_possible_number_for_type_with_reason(number, kind)
        == phonenumbers.ValidationResult.IS_POSSIBLE
        for kind in kinds
    )
    assert _possible_subscriber(number) == possible
