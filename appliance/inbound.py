"""What the modem hands over: received SMS and status reports, committed to the ledger.

The modem deletes a stored SMS only after `on_deliver` returned, i.e. after the
commit here: nothing received is lost if the gateway dies in between (at worst
it is read twice, and the (sender, ref, seq) key makes the second a no-op).

The daemon receives on the primary port, so it sees the watchdog's on-call commands
(`RESTART <pin>`) first: they are stored sealed (redacted, with a keyed digest of the
PIN word that only the watchdog can check), never whole, so neither the ledger, the API,
the page, webhooks nor logs ever hold a PIN.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from appliance.config import InboundConfig
from appliance.keywords import Keyword, keyword_of
from appliance.ledger import LedgerUnreachable, StorageFull, Store
from appliance.metrics import Metrics
from modem import CallbackDeferred, Undecodable
from modem.pdu import Deliver, Encoding, StatusReport
from modem.pdu.udh import units_to_text
from watchdog.commands import KEY_BYTES, command_shaped, load_key, seal
from watchdog.replies import is_oncall, oncall_set

Sealer = Callable[[str, str], tuple[str, str | None]]  # (sender, text) -> (body, command digest)

_LOGGER = logging.getLogger(__name__)


def join(encoding: str, chunks: Sequence[bytes]) -> str:
    """Decode the joined raw user data of parts (a surrogate pair may be split across two)."""
    return units_to_text(b"".join(chunks), Encoding(encoding))


def keyword(text: str, cfg: InboundConfig) -> Keyword | None:
    """'stop' or 'start' when the whole message is one of the configured opt-out/opt-in keywords."""
    return keyword_of(text, cfg.stop_keywords, cfg.start_keywords)


def command_sealer(ledger_path: str, oncall: Iterable[str], region: str) -> Sealer:
    """`(sender, text) -> (body to store, digest of a command's PIN word)`, keyed by the file beside
    the ledger. Only commands are sealed: customers' texts ("Status of my order 42?") stay whole."""
    key = secrets.token_bytes(KEY_BYTES) if ledger_path == ":memory:" else load_key(Path(ledger_path).parent)
    return functools.partial(_seal_command, key, oncall_set(tuple(oncall), region), region)


def _seal_command(
    key: bytes, oncall: frozenset[str], region: str, sender: str, text: str
) -> tuple[str, str | None]:
    # From an on-call number (the watchdog's rule: E.164 equality) any verb-led text is sealed,
    # however sloppily typed ("Restart:123456" may still hold the PIN). From anyone else only the
    # exact command shape `VERB <6..32 digits>` is sealed: on-call lists change (a new phone, the
    # watchdog reloaded before the daemon), a PIN is a credential, and no customer writes a verb and
    # six or more bare digits by chance; migration 3 applies the same rule to older rows.
    if is_oncall(sender, oncall, region) or command_shaped(text):
        return seal(key, text)
    return text, None


@contextlib.contextmanager
def _deferred_when_full() -> Iterator[None]:
    """A full ledger disk is an expected fault for the modem layer: it keeps the message (or
    refuses a routed one) and logs one line, not a traceback per sweep."""
    try:
        yield
    except (StorageFull, LedgerUnreachable) as exc:  # the ledger's server down: kept on the SIM too
        raise CallbackDeferred(str(exc)) from None


class Receiver:
    """The modem's callbacks, bound to the ledger."""

    def __init__(
        self,
        store: Store,
        cfg: InboundConfig,
        metrics: Metrics,
        modem_name: str,
        sealer: Sealer | None = None,
    ) -> None:
        self.store = store
        self.sealer = sealer
        self.cfg = cfg
        self.metrics = metrics
        self.modem_name = modem_name

    async def on_deliver(self, msg: Deliver) -> None:
        """Commit one received part; returns only once it is on disk."""
        concat = msg.concat
        sender = msg.sender.number
        with _deferred_when_full():
            inbound = await self.store.add_inbound_part(
                sender=sender,
                encoding=msg.encoding.value
                if msg.encoding is not Encoding.EIGHT_BIT
                else Encoding.EIGHT_BIT.value,
                user_data=msg.user_data,
                ref=concat.ref if concat else None,
                ref_bits=concat.ref_bits if concat else 8,
                total=concat.total if concat else 1,
                seq=concat.seq if concat else 1,
                sent_at=msg.scts.timestamp() if msg.scts else None,  # None: the SC timestamp was unreadable
                join=join,
                keyword_of=lambda text: keyword(text, self.cfg),
                seal=self.sealer,
                reply_window_s=self.cfg.reply_window_s,
            )
        if inbound is not None:
            self.metrics.inbound_total.inc()
            _LOGGER.info(
                "received %s (%d part(s)%s)",
                inbound.id,
                inbound.parts,
                f", {inbound.keyword}" if inbound.keyword else "",
            )

    async def on_report(self, report: StatusReport) -> None:
        """Match a status report to its part; unmatched ones are kept for a later match."""
        with _deferred_when_full():
            try:
                outcome = await self.store.apply_report(report.mr, report.recipient.number, report.status)
            except LedgerUnreachable:
                if self.store.spool is None:
                    raise
                # Journalled in the spool, applied on the server when it answers again.
                await self.store.spool.report(
                    report.mr, report.recipient.number, report.status, at=time.time()
                )
                return
        cls = "trying" if not report.is_final else ("delivered" if report.is_success else "failed")
        self.metrics.reports_total.labels(status_class=cls if outcome.matched else "unmatched").inc()
        if not outcome.matched:
            _LOGGER.info(
                "status report MR %d from %s: no part yet (kept for matching)", report.mr, self.modem_name
            )

    async def on_undecodable(self, item: Undecodable) -> None:
        """Commit a PDU no decoder could read; the modem deletes it from its memory only after this."""
        with _deferred_when_full():
            kept = await self.store.quarantine(
                port=item.port, memory=item.memory, index=item.index, pdu=item.pdu, reason=item.reason
            )
        where = f"{item.memory}:{item.index}" if item.memory else "routed"
        # Not the PDU: it holds the sender's text (maybe a garbled command with its PIN).
        _LOGGER.warning(
            "quarantined %s from %s (%s, %s, %d hex digits): see GET /api/v1/quarantine",
            kept.id,
            self.modem_name,
            where,
            item.reason,
            len(item.pdu),
        )
