"""The operator's USSD service of the simulated network: prepaid balance, a menu, error texts.

`*100#` answers the balance, which every SMS part sent lowers by `price` (a prepaid SIM);
`*123#` is a menu that waits for a reply (`+CUSD: 1`); `#100#` answers with `+CUSD: 2` and
text, as operators that close the session with their answer do; any other code gets the
operator's "unknown application" text, or `+CUSD: 4` with `unknown="unsupported"`. With `ucs2`,
the operator sends UCS-2 (DCS 72), as Russian and Arabic-script operators do. `silent` makes
the network never answer (the request is accepted, no +CUSD ever comes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

DCS_GSM7 = 15
DCS_UCS2 = 72


@dataclass(frozen=True)
class OperatorAnswer:
    """What the network sends back: +CUSD: <status>[,<text>,<dcs>]."""

    status: int
    text: str | None = None
    dcs: int = DCS_GSM7


@dataclass
class UssdService:
    """The knobs of the operator's USSD answers (the control interface's `POST /ussd`)."""

    balance: float = 12.34
    price: float = 0.09  # per SMS part sent
    currency: str = "EUR"
    ucs2: bool = False
    unknown: Literal["text", "unsupported"] = "text"
    delay_s: float = 1.5  # request to answer: a real network takes 1 to 5 s
    silent: bool = False
    balance_code: str = "*100#"
    menu_code: str = "*123#"
    closing_code: str = "#100#"

    def charge(self, parts: int = 1) -> None:
        """An SMS part left the SIM: a prepaid balance goes down (never below zero)."""
        self.balance = max(0.0, round(self.balance - self.price * parts, 2))

    def answer(self, code: str, *, in_menu: bool = False) -> OperatorAnswer:
        """The network's answer to `code` (or to a menu choice when `in_menu`)."""
        if in_menu:
            if code == "1":
                return self._text(0, self.balance_text())
            return self._text(0, "Thank you. Goodbye.")
        if code == self.balance_code:
            return self._text(0, self.balance_text())
        if code == self.closing_code:
            return self._text(2, self.balance_text())
        if code == self.menu_code:
            return self._text(1, "Main menu\n1. Balance\n2. Offers\n0. Exit")
        if self.unknown == "unsupported":
            return OperatorAnswer(4)
        return self._text(2, "UNKNOWN APPLICATION")

    def balance_text(self) -> str:
        valid = (datetime.now(UTC) + timedelta(days=30)).strftime("%d.%m.%Y")
        amount = f"{self.balance:.2f}"
        if self.ucs2:
            return f"Ваш баланс {amount.replace('.', ',')} {self.currency}. Действителен до {valid}."
        return f"Your balance is {amount} {self.currency}. Valid until {valid}."

    def _text(self, status: int, text: str) -> OperatorAnswer:
        return OperatorAnswer(status, text, DCS_UCS2 if self.ucs2 else DCS_GSM7)

    def update(self, changes: dict[str, Any]) -> None:
        """Apply control-interface changes; ValueError naming the bad field."""
        for key, value in changes.items():
            if key in ("balance", "price", "delay_s"):
                if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1e6:
                    raise ValueError(f"{key}: expected a number from 0 to 1000000, got {value!r}")
                setattr(self, key, round(float(value), 2) if key != "delay_s" else float(value))
            elif key in ("ucs2", "silent"):
                if not isinstance(value, bool):
                    raise ValueError(f"{key}: expected true or false, got {value!r}")
                setattr(self, key, value)
            elif key == "unknown":
                if value not in ("text", "unsupported"):
                    raise ValueError(f"unknown: expected 'text' or 'unsupported', got {value!r}")
                self.unknown = value
            elif key == "currency":
                if not isinstance(value, str) or not value.isalpha() or len(value) > 5:
                    raise ValueError(f"currency: expected up to 5 letters, got {value!r}")
                self.currency = value
            else:
                raise ValueError(f"unknown USSD setting {key!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
