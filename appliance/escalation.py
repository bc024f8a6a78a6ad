"""The escalation loop: a message nobody confirms goes to the next number, then to e-mail.

A message with `escalation` that is not delivered (until=delivered) or not answered by its
recipient (until=replied: any text from that number after the message) within `after_s` is sent
again, same text, to the next number of `then`, through the intake like any other message (the
key's opt-outs, queue cap and quota apply) and linked to the original (`escalated_from`); each
following step waits `after_s` again. After the numbers, every `mailto:` target gets an e-mail
through `[smtp]` at once, and the chain ends there. A delivery (or reply) of any message of the
chain, or a cancel of the original, ends it early.

The ledger keeps the chain (ledger/escalations.py): a step to a number is committed in the
transaction that accepts its message, so a restart never sends a step twice; an e-mail is
committed to an outbox first and sent after, so a crash between sending and recording it sends
it once more (at least once, as webhooks).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from appliance import segments
from appliance.config import Config
from appliance.intake import Intake
from appliance.ledger import (
    Actor,
    Conflict,
    Escalation,
    EscalationMail,
    EscalationSpec,
    LedgerUnreachable,
    Message,
    OptedOut,
    StorageFull,
    Store,
    StoreError,
    rfc3339,
)
from appliance.ledger.escalations import waited_for
from appliance.validation import ApiError
from watchdog.mail import MailError, is_mailto, mailto_address, send_mail

_LOGGER = logging.getLogger(__name__)

TICK_S = 1.0  # how often RUNNING chains are checked for a delivery, a reply or a cancel
RETRY_STEP_S = 30.0  # a step the intake refused for now (queue full, quota, disk) is tried again after
MAIL_BACKOFF_BASE_S = 30.0
MAIL_BACKOFF_MAX_S = 3600.0
MAIL_BATCH = 10


async def refuse_opted_out(store: Store, spec: EscalationSpec) -> None:
    """422 opted_out naming the entry of `then` whose number sent STOP (as `to` is refused)."""
    for i, target in enumerate(spec.then):
        if not is_mailto(target) and await store.is_opted_out(target):
            raise ApiError(
                422,
                "opted_out",
                f"escalation.then[{i}]: {target} opted out (sent STOP) and receives no messages until START",
            )


def mail_subject(msg: Message, spec: EscalationSpec) -> str:
    return f"SMS to {msg.to} {waited_for(spec)}"


def mail_body(msg: Message, spec: EscalationSpec) -> str:
    numbers = [t for t in spec.then if not is_mailto(t)]
    tried = ", ".join([msg.to, *numbers])
    return (
        f"{msg.body}\n\n"
        f"-- \nThis text was sent by SMS to {tried}; it was {waited_for(spec)} of each.\n"
        f"Message {msg.id}, accepted {rfc3339(msg.created_at)}.\n"
    )


class Escalator:
    """Takes the due steps of every chain, and sends the chains' e-mails."""

    def __init__(self, store: Store, intake: Intake, config: Config) -> None:
        self.store = store
        self.intake = intake
        self.config = config
        self._random = random.Random()  # noqa: S311  (jitter, not security)
        self._woken = asyncio.Event()

    def wake(self) -> None:
        """A message was committed (it may start a chain): an idle loop looks again now."""
        self._woken.set()

    async def run(self) -> None:
        while True:
            self._woken.clear()  # a wake during the pass below is kept for the wait after it
            try:
                await self.tick()
            except (StorageFull, LedgerUnreachable):  # said once by the ledger
                pass  # said once by the store; steps wait for room
            except StoreError as exc:
                _LOGGER.error("escalation: %s", exc)  # noqa: TRY400  (the message says it all)
            due = await self.store.next_escalation_due()
            if due is None:  # no chain runs, no e-mail waits: nothing to poll until a message is accepted
                await self._woken.wait()
            else:
                await asyncio.sleep(min(TICK_S, max(0.0, due - time.time())))

    async def tick(self, now: float | None = None) -> None:
        """One pass: end the chains that succeeded, take the due steps, send the due e-mails."""
        now = time.time() if now is None else now
        for msg_id, outcome in await self.store.stop_escalations(now):
            _LOGGER.info("escalation of %s ended: %s", msg_id, outcome)
        for msg_id, chain in await self.store.due_escalations(now):
            await self._step(msg_id, chain)
        for item in await self.store.due_escalation_mail(time.time(), MAIL_BATCH):
            await self._mail(item)

    async def _step(self, msg_id: str, chain: Escalation) -> None:
        spec = chain.spec
        if chain.step >= len(spec.then):
            await self.store.end_escalation(
                msg_id, "exhausted", f"every target was tried; {waited_for(spec)}"
            )
            return
        msg = await self.store.get(msg_id)
        if msg is None or msg.body is None:  # the text was purged (retention): nothing left to pass on
            await self.store.end_escalation(msg_id, "no_text", "the message's text is no longer kept")
            return
        target = spec.then[chain.step]
        if is_mailto(target):
            addresses = [mailto_address(t) for t in spec.then[chain.step :]]
            if await self.store.escalate_to_mail(
                msg_id, chain.step + 1, addresses, mail_subject(msg, spec), mail_body(msg, spec)
            ):
                _LOGGER.info("escalation of %s: e-mail to %d target(s)", msg_id, len(addresses))
            return
        await self._text(msg, chain, target)

    async def _text(self, msg: Message, chain: Escalation, target: str) -> None:
        step = chain.step + 1
        validity_s = max(60, int(msg.expires_at - msg.not_before))
        new = segments.new_message(
            target,
            msg.body or "",
            priority=msg.priority,
            validity_s=validity_s,
            status_callback=msg.status_callback,
            callback_format=msg.callback_format,
            metadata=msg.metadata,
            source="escalation",
            escalation_of=(msg.id, step),
        )
        key = None if msg.key_id is None else await self.store.get_key(msg.key_id)
        actor = Actor(f"escalation of {msg.id}", "escalation")
        try:
            sent, _created = await self.intake.submit(new, key=key, actor=actor)
        except OptedOut:
            await self.store.skip_escalation_step(msg.id, step, "opted out (sent STOP)")
        except Conflict:
            pass  # the step was taken already (or the chain ended meanwhile): nothing to do
        except StoreError as exc:  # queue full, quota, disk: the step waits, then tries again
            _LOGGER.warning(
                "escalation of %s: step %d waits: %s", msg.id, step, str(exc) or type(exc).__name__
            )
            await self.store.defer_escalation(msg.id, time.time() + RETRY_STEP_S)
        else:
            _LOGGER.info("escalation of %s: step %d sent as %s", msg.id, step, sent.id)

    async def _mail(self, item: EscalationMail) -> None:
        try:
            await send_mail(self.config.smtp, item.address, item.subject, item.body)
        except MailError as exc:
            retry_at = self._retry_at(item, exc)
            if retry_at is None:
                _LOGGER.warning("escalation e-mail to %s given up: %s", item.address, exc.reason)
            await self.store.escalation_mail_result(item, ok=False, error=exc.reason[:300], next_at=retry_at)
        except ValueError as exc:  # an address or subject compose() refuses: no retry can help
            await self.store.escalation_mail_result(item, ok=False, error=str(exc)[:300])
        else:
            await self.store.escalation_mail_result(item, ok=True)

    def _retry_at(self, item: EscalationMail, exc: MailError) -> float | None:
        now = time.time()
        if not exc.transient or now - item.created_at >= self.config.escalation.mail_retry_max_s:
            return None
        backoff = min(MAIL_BACKOFF_MAX_S, MAIL_BACKOFF_BASE_S * 2**item.attempts)
        return float(now + backoff * self._random.uniform(0.8, 1.2))
