"""phonenumbers.parse for a number already written as E.164 ("+" and its digits), at a quarter of the cost.

Most batch items name their recipient in E.164, and a new number cost ~20 µs of CPU in
phonenumbers.parse, most of it in generic steps that do nothing to "+4915112345678": finding the
number in free text, extensions, normalising non-ASCII digits, the default region's dialling
prefix. This runs only what is left, phonenumbers' own functions in parse's order: the country
code, the national prefix, the Italian leading zero. It answers None (the caller runs the full
parse) for anything else, an unknown country code included, so that parse words the refusal.
tests/appliance/test_e164_form.py checks it against parse on random numbers.

Most such numbers are their own E.164 form: no national prefix to drop, so the answer is the text
itself. `split_e164` finds that with a dict and the code's cached metadata and pattern (~1.5 µs,
where the steps above are ~10 µs: a new number's share of a 1,000-item batch).
"""

from __future__ import annotations

import functools
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
# Country codes as their digits: the one to three digits after "+" that name one (none is a prefix
# of another), as phonenumbers' _extract_country_code finds them, by a dict lookup.
_COUNTRY_CODES = {str(code): code for code in _util.COUNTRY_CODE_TO_REGION_CODE}


def split_e164(candidate: str) -> tuple[int, int] | None:
    """(country code, digits after it) when phonenumbers.parse would keep `candidate`'s digits as
    they are ("+" and 7 to 15 digits, a known country code, no national prefix to drop): its E.164
    form is then `candidate` itself. None: parse_e164 or parse must decide."""
    found = _country_and_national(candidate)
    if found is None:
        return None
    country_code, national, metadata = found
    prefix = metadata.national_prefix_for_parsing
    if prefix and _pattern(prefix).match(national) is not None:
        return None
    return country_code, len(national)


def parse_e164(candidate: str) -> PhoneNumber | None:
    """What phonenumbers.parse(candidate, any region) returns, for "+" and 7 to 15 digits; else None."""
    found = _country_and_national(candidate)
    if found is None:
        return None
    country_code, national, metadata = found
    _carrier, stripped, _stripped_any = _util._maybe_strip_national_prefix_carrier_code(national, metadata)
    if _util._test_number_length(stripped, metadata) not in _KEEPS_PREFIX:
        national = stripped
    number = PhoneNumber(country_code=country_code)
    _util._set_italian_leading_zeros_for_phone_number(national, number)
    number.national_number = int(national)
    return number


def _country_and_national(candidate: str) -> tuple[int, str, PhoneMetadata] | None:
    """ "+" and its digits split as parse splits them: (country code, the digits after it, the
    code's metadata); None when it is not that form or phonenumbers knows no such code."""
    match = _E164_FORM.fullmatch(candidate)
    if match is None:
        return None
    digits = match[1]
    for length in (1, 2, 3):
        country_code = _COUNTRY_CODES.get(digits[:length])
        if country_code is not None:
            metadata = _metadata(country_code)
            return None if metadata is None else (country_code, digits[length:], metadata)
    return None


@functools.lru_cache(maxsize=512)
def _metadata(country_code: int) -> PhoneMetadata | None:
    region = _util.region_code_for_country_code(country_code)
    return PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)


@functools.lru_cache(maxsize=512)
def _pattern(regex: str) -> re.Pattern[str]:
    return re.compile(regex)
