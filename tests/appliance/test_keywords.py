"""STOP/START keywords: one matcher, case-insensitive on both sides, as people type on a phone."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import ConfigError, InboundConfig, from_dict
from appliance.inbound import keyword
from appliance.keywords import Keyword, keyword_of
from modem.simulator import Simulator
from tests.support.gateway import gateway_config, run_gateway
from tests.support.waiting import eventually

LOWER = InboundConfig(stop_keywords=("stop", "unsubscribe"), start_keywords=("start", "unstop"))
UPPER = InboundConfig(stop_keywords=("STOP", "UNSUBSCRIBE"), start_keywords=("START", "UNSTOP"))
MIXED = InboundConfig(stop_keywords=(" Stop. ",), start_keywords=("Start!",))


@pytest.mark.parametrize("cfg", [LOWER, UPPER, MIXED], ids=["lower", "upper", "mixed"])
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("STOP", "stop"),
        ("stop", "stop"),
        ("Stop", "stop"),
        ("sToP", "stop"),
        ("STOP.", "stop"),
        (" stop ", "stop"),
        ("Stop!!", "stop"),
        ("\tstop\n", "stop"),
        ('"stop"', "stop"),
        ("S.T.O.P", "stop"),
        ("\uff33\uff34\uff2f\uff30", "stop"),  # full-width, as some phone keyboards send it
        ("START", "start"),
        ("start", "start"),
        ("Start.", "start"),
        ("stop it", None),
        ("please stop", None),
        ("stopp", None),
        ("", None),
        ("...", None),
        ("stop " * 100, None),
    ],
)
def test_keyword_of_folds_case_spaces_and_punctuation(
    cfg: InboundConfig, text: str, expected: Keyword | None
) -> None:
    assert keyword(text, cfg) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Unsubscribe", "stop"), ("UNSTOP", "start"), ("unstop!", "start"), ("yes", None)],
)
def test_configured_words_beyond_stop_and_start(text: str, expected: Keyword | None) -> None:
    assert keyword(text, LOWER) == expected


def test_a_word_in_both_lists_is_a_config_error_and_stop_wins_a_direct_call() -> None:
    with pytest.raises(ConfigError, match=r"inbound.start_keywords: 'stop'"):
        from_dict({"inbound": {"stop_keywords": ["stop"], "start_keywords": ["STOP"]}})
    assert keyword_of("stop", ["stop"], ["Stop"]) == "stop"


@pytest.mark.parametrize(
    ("words", "message"),
    [(["stop", "!!"], r"inbound.stop_keywords\[1\]: '!!' has no letters"), (["x" * 33], "longer than 32")],
)
def test_a_keyword_no_text_can_match_is_a_config_error_naming_it(words: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict({"inbound": {"stop_keywords": words}})


def test_config_keywords_are_folded_at_load() -> None:
    config = from_dict({"inbound": {"stop_keywords": ["Stop", "STOP", " halt "], "start_keywords": ["Go"]}})
    assert config.inbound.stop_keywords == ("stop", "halt")
    assert config.inbound.start_keywords == ("go",)


async def test_lower_case_stop_config_opts_out_a_phone_that_sends_stop(
    tmp_path: Path, sim: Simulator
) -> None:
    number = "+4917612345678"
    raw = gateway_config(tmp_path, str(sim.primary_path), inbound={"stop_keywords": ["stop"]})
    async with run_gateway(raw, sim) as gw:
        await gw.gateway.modem_list[0][2].wait_ready(10)
        await sim.inject(number, "Stop")

        async def received() -> bool:
            r = await gw.client.get("/api/v1/inbound")
            return any(m["body"] == "Stop" and m["keyword"] == "stop" for m in r.json()["messages"])

        await eventually(received)
        refused = await gw.send(to=number, body="marketing")
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "opted_out"
        assert (await gw.send(to="+4917612345679", body="others still get theirs")).status_code == 202
