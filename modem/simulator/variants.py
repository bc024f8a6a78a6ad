"""How a model words its answers to +CMGR/+CMGL/+CMGS, as data (modem-behaviour.md 1.4, 1.5).

Each model profile carries its defaults; `Simulator.variants` is a copy that a test or a demo may
change at run time (`sim.variants.cmgr_header = "no_stat"`) to replay one real modem's wording.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# The <stat>,[<alpha>],<length> head of +CMGR (PDU mode), as real modems print it:
#   empty_alpha  +CMGR: 1,,24        27.005's own example; python-gsmmodem#44, most modems
#   quoted_alpha +CMGR: 1,"",24      Telit HE910/LE910 (ModemManager tests), gammu fixtures
#   no_alpha     +CMGR: 1,24         gammu tests/at-sms/07.dump; Pantech +CMGL: 17,3,35
#   no_stat      +CMGR: ,,24         ZTE (python-gsmmodem), D-Link DWM-156 (gammu #156)
#   length_only  +CMGR: 24           gammu tests/at-sms/38.dump
# +CMGL always starts with the index; "length_only" lists like "no_alpha" there.
CmgrHeader = Literal["empty_alpha", "quoted_alpha", "no_alpha", "no_stat", "length_only"]


@dataclass
class CommandVariants:
    """The wording of one model's SMS answers."""

    cmgr_header: CmgrHeader = "empty_alpha"
    # A phonebook name for the <alpha> field, printed quoted where the header has one; a comma
    # inside it is legal ("Smith, J") and must not split the fields (27.005 3.1 <alpha>).
    alpha: str = ""
    # AT+CMGR on an empty slot: +CMS ERROR: 321 (gammu get-next-sms-locations.c), or a bare OK
    # as Quectel does for a slot announced in the wrong memory (asterisk-chan-quectel PR #75).
    empty_read: Literal["cms321", "ok"] = "cms321"
    # What follows <mr> in +CMGS under AT+CSMS=1: nothing, ',"<scts>"' (Telit, Quectel UGxx
    # manuals: "+CMGS: <mr>[,<scts>]") or ',"<ackpdu>"' (Telit HE863, Neoway M660, Nordic).
    cmgs_extra: Literal["", "scts", "ackpdu"] = ""

    def head(self, stat: int, length: int, *, index: int | None) -> str:
        """The fields after '+CMGR: ' or '+CMGL: ' for one stored PDU."""
        alpha = f'"{self.alpha}"' if self.alpha or self.cmgr_header == "quoted_alpha" else ""
        style = self.cmgr_header
        if index is not None and style == "length_only":
            style = "no_alpha"
        if style == "no_alpha":
            fields = [str(stat), str(length)]
        elif style == "no_stat":
            fields = ["", alpha, str(length)]
        elif style == "length_only":
            fields = [str(length)]
        else:
            fields = [str(stat), alpha, str(length)]
        if index is not None:
            fields.insert(0, str(index))
        return ",".join(fields)
