"""phonenumbers.parse for a number already written as E.164 ("+" and its digits), at a quarter of the cost.

Most batch items name their recipient in E.164, and a new number cost ~20 µs of CPU in
phonenumbers.parse, most of it in generic steps that do nothing to "+4915112345678": finding the
number in free text, extensions, normalising non-ASCII digits, the default region's dialling
prefix. This runs only what is left, phonenumbers' own functions in parse's order: the country
code, the national prefix, the Italian leading zero. It answers None (the caller runs the full
parse) for anything else, an unknown country code included, so that parse words the refusal.
tests/appliance/test_e164_form.py checks it against parse on random numbers.
"""

from __future__ import annotations

import re

from phonenumbers import PhoneMetadata, PhoneNumber, ValidationResult
from phonenumbers import phonenumberutil as _util

_E164_FORM = re.compile(r"\+([1-9][0-9]{6,14})")
# parse keeps the national prefix when the number without it has one of these lengths.
_KEEPS_PREFIX = (
    ValidationResult.TOO_SHORT,
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
    ValidationResult.INVALID_LENGTH,
)


def parse_e164(candidate: str) -> PhoneNumber | None:
    """What phonenumbers.parse(candidate, any region) returns, for "+" and 7 to 15 digits; else None."""
    match = _E164_FORM.fullmatch(candidate)
    if match is None:
        return None
    country_code, national = _util._extract_country_code(match[1])
    if country_code == 0:
        return None
    region = _util.region_code_for_country_code(country_code)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    if metadata is None:
        return None
    _carrier, stripped, _stripped_any = _util._maybe_strip_national_prefix_carrier_code(national, metadata)
    if _util._test_number_length(stripped, metadata) not in _KEEPS_PREFIX:
        national = stripped
    number = PhoneNumber(country_code=country_code)
    _util._set_italian_leading_zeros_for_phone_number(national, number)
    number.national_number = int(national)
    return number
