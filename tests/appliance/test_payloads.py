"""The ledger's JSON forms: times are RFC 3339 whatever the year a client sent."""

import datetime
import re

import pytest

from appliance.ledger import rfc3339

RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


@pytest.mark.parametrize("year", [1, 566, 999, 1970, 2026, 9999])
def test_times_have_a_four_digit_year(year: int) -> None:
    # schemathesis found send_at "0566-09-17T07:02:33-12:12" echoed back as "566-09-17T…Z".
    t = datetime.datetime(year, 9, 17, 19, 14, 33, 500000, tzinfo=datetime.UTC).timestamp()
    text = rfc3339(t)
    assert text is not None
    assert RFC3339_UTC.fullmatch(text), text
    assert text.startswith(f"{year:04d}-09-17T19:14:33.5")


def test_no_time_is_null() -> None:
    assert rfc3339(None) is None
