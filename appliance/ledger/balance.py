"""The prepaid SIM's balance checks (migration 11): one row per check, the latest shown and alerted on.

The watchdog reads the latest amount per modem through the `balance_facts` view, never this module.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.ledger.connection import Connection
from appliance.ledger.dialect import fetch_all


@dataclass(frozen=True)
class BalanceRow:
    """One balance check as kept: when, which modem, the amount when found, or why not."""

    at: float
    modem: str
    ok: bool
    value: float | None
    text: str
    error: str


@dataclass(frozen=True)
class LatestBalance:
    """Per modem: the last check (good or bad) and the last one that found an amount."""

    last: BalanceRow
    last_ok: BalanceRow | None


class Balances(Connection):
    """Balance checks: written by the daemon's checker, read by the status document (retention.py
    forgets them after `metadata_days`, keeping each modem's latest)."""

    async def record_balance(
        self, modem: str, *, at: float, ok: bool, value: float | None, text: str, error: str
    ) -> None:
        """Keep one check (its text already redacted by the checker)."""
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO sim_balance (at, modem, ok, value, text, error, box) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (at, modem, int(ok), value, text, error, self.box),
            )

    async def latest_balances(self) -> dict[str, LatestBalance]:
        """Per modem that was ever checked: its last check and its last check that found an amount.
        In a fleet, this box's modems only (boxes may name theirs alike; NULL: checks before fleets)."""
        mine, args = self.mine("b.box")
        same = "s.modem = b.modem AND coalesce(s.box, '') = coalesce(b.box, '')"
        rows = await fetch_all(
            self.rdb,
            f"SELECT b.* FROM sim_balance b WHERE (b.at = (SELECT max(s.at) FROM sim_balance s WHERE {same}) "  # noqa: S608  (fixed clauses)
            f"OR b.at = (SELECT max(s.at) FROM sim_balance s WHERE {same} AND s.ok = 1)){mine} ORDER BY b.at",
            args,
        )
        last: dict[str, BalanceRow] = {}
        last_ok: dict[str, BalanceRow] = {}
        for r in rows:
            row = BalanceRow(
                float(r["at"]),
                str(r["modem"]),
                bool(r["ok"]),
                None if r["value"] is None else float(r["value"]),
                str(r["text"]),
                str(r["error"]),
            )
            last[row.modem] = row  # ordered by time: the later row wins
            if row.ok:
                last_ok[row.modem] = row
        return {modem: LatestBalance(row, last_ok.get(modem)) for modem, row in last.items()}
