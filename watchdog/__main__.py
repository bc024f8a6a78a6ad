"""`smsgw watchdog`: the main loop. A cycle every `cycle_s`: read facts, evaluate the checks, step the
alert policy, handle on-call replies, send over its own port (or the borrowed primary), ping systemd."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass, field

import sdnotify

from modem import StoredSms
from modem.pdu import Deliver
from modem.portlock import daemon_present
from watchdog.alert import Alert, Policy, StateFile
from watchdog.alert_modem import AlertModem
from watchdog.audit import CommandFact, CommandLog
from watchdog.canary import Canary
from watchdog.checks import evaluate
from watchdog.commands import MIN_PIN_DIGITS, e164, mask, valid_pin, verb_of
from watchdog.escalation import Chain, ChainLog
from watchdog.facts import FactsReader
from watchdog.mail import is_mailto
from watchdog.mailout import MailOutbox
from watchdog.peers import PeerWatch
from watchdog.replies import GUESSES_PER_HOUR, LedgerInbox, Reply, decide, is_oncall, oncall_set
from watchdog.settings import Settings

_LOGGER = logging.getLogger("watchdog")

_PRIVATE_KINDS = ("reply", "guessing")  # texts about people and commands: logged by kind only
READY_WAIT_S = 20.0  # a borrowed port: how long the modem may take to initialise before a send


@dataclass
class Outgoing:
    alert: Alert
    recipients: tuple[str, ...]
    queued_at: float


@dataclass
class Watchdog:
    """One watchdog process: its state file, policy, port and readers."""

    settings: Settings
    state: StateFile = field(init=False)
    policy: Policy = field(init=False)
    port: AlertModem = field(init=False)
    reader: FactsReader = field(init=False)
    inbox: LedgerInbox = field(init=False)
    commands: CommandLog = field(init=False)
    canary: Canary = field(init=False)
    chain: Chain = field(init=False)
    chain_log: ChainLog = field(init=False)
    mail: MailOutbox = field(init=False)
    peers: PeerWatch | None = field(init=False)
    outbox: list[Outgoing] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        s = self.settings
        now = time.time()
        self.state = StateFile(s.state_file)
        self.policy = Policy(
            s.box_name, repeat_s=s.repeat_s, cap_per_hour=s.cap_per_hour, alive_at=s.alive_at
        )
        self.state.restore(self.policy, now)
        self.commands = CommandLog(self.state.db)
        self.chain = Chain(s.oncall, s.escalate_email, s.escalate_after_s)
        self.chain_log = ChainLog(self.state.db)
        self.chain_log.restore(self.chain, (i.id for i in self.policy.incidents.values()))
        self.mail = MailOutbox(s.smtp, self.record_mail, expire_s=s.repeat_s)
        self.oncall = oncall_set(s.oncall, s.default_region)
        # A PIN too short to resist guessing turns commands off rather than inviting them.
        self.pin = s.pin if valid_pin(s.pin) else ""
        self.port = AlertModem(
            s.port or s.primary_port,
            lock_dir=s.ledger_dir,
            takeover=s.takeover,
            baudrate=s.baudrate,
            sim_pin=s.sim_pin,
            command_timeout_s=s.command_timeout_s,
            submit_timeout_s=s.submit_timeout_s,
        )
        self.reader = FactsReader(s, now)
        self.reader.resume({i.subject: i.since for i in self.policy.incidents.values()})
        self.inbox = LedgerInbox(s.ledger, self.pin, now, key_dir=s.ledger_dir, box=s.box)
        self.canary = Canary(s.canary_every_s if s.canary_number else 0.0, s.canary_timeout_s)
        self.peers = PeerWatch(s.ledger, s.box, s.box_name, s.peer_silent_s) if s.box else None

    def __repr__(self) -> str:
        return f"Watchdog({self.settings.box_name!r}, {self.port!r})"

    async def run(self) -> None:
        notifier = sdnotify.SystemdNotifier() if os.environ.get("NOTIFY_SOCKET") else None
        await self.port.start()
        _LOGGER.info(
            "watchdog of %s: on-call %s, %s",
            self.settings.box_name,
            ", ".join(mask(n) for n in self.settings.oncall),
            self.port,
        )
        if self.settings.pin and not self.pin:
            _LOGGER.error(
                "watchdog.pin: fewer than %d digits (or not digits only): on-call commands are off",
                MIN_PIN_DIGITS,
            )
        if notifier is not None:
            notifier.notify("READY=1")
        try:
            while not self.stopping.is_set():
                started = time.monotonic()
                await self.cycle(time.time())
                if notifier is not None:
                    notifier.notify(f"WATCHDOG=1\nSTATUS={self.policy.summary(time.time())}")
                wait_s = max(0.1, self.settings.cycle_s - (time.monotonic() - started))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), wait_s)
        finally:
            await self.mail.close()
            await self.port.stop()
            self.state.close()

    async def cycle(self, now: float) -> None:
        """One round: facts, checks, policy, port, replies, sends."""
        s = self.settings
        facts = await self.reader.read(now, None if self.port.takeover else self.port.modem)
        findings = evaluate(facts, s, s.balance_floor)
        alerts, suppressed = self.policy.step(findings, now)
        for alert in suppressed:
            _LOGGER.warning("cap of %d alerts/hour reached; not sent: %s", s.cap_per_hour, alert.text)
            self.state.record_alert(alert, "*", "capped", now)
        for incident in self.state.apply_ack_requests(self.policy, now):
            _LOGGER.info("incident %d acknowledged on the status page", incident.id)
        self.state.sync_incidents(self.policy, now)
        for alert in alerts:
            _LOGGER.warning("alert (%s): %s", alert.kind, alert.text)
            self.outbox.append(Outgoing(alert, self.recipients(alert, now), now))
        await self.watch_peers(now)
        self.escalate(now)
        daemon_down = "daemon" in self.policy.incidents
        await self.port.adjust(want=daemon_down or bool(self.outbox))
        await self.replies(now, scan_sim=daemon_down or (self.port.takeover and self.port.held))
        self.commands.purge(now)
        self.run_canary(now)
        await self.flush(now)

    async def watch_peers(self, now: float) -> None:
        """The fleet's other boxes: a silent one is texted about by the one watchdog that claimed it."""
        if self.peers is None:
            return
        for news in await asyncio.to_thread(self.peers.check, now):
            alert = Alert("resolved" if news.resolved else "peer", f"peer {news.peer}", news.text)
            _LOGGER.warning("alert (%s): %s", alert.kind, alert.text)
            self.outbox.append(Outgoing(alert, self.settings.oncall, now))

    def recipients(self, alert: Alert, now: float) -> tuple[str, ...]:
        """Who gets an incident's alert: the chain's first step, those told so far, or (other kinds) all."""
        if alert.incident_id is None:
            return self.settings.oncall
        if alert.kind == "open":
            step = self.chain.start(alert.incident_id, now)
            self.chain_log.save(step, now)
            return step.recipients
        if alert.kind == "resolved":
            told = self.chain.told(alert.incident_id)
            self.chain.forget(alert.incident_id)
            self.chain_log.forget(alert.incident_id)
            return told
        return self.chain.told(alert.incident_id, email=False)  # repeats nag the phones, not the mailboxes

    def escalate(self, now: float) -> None:
        """The next step of every incident nobody acknowledged within `escalate_after_s`."""
        by_id = {i.id: i for i in self.policy.incidents.values()}
        for step in self.chain.due(by_id.values(), now):
            incident = by_id[step.incident_id]
            self.chain_log.save(step, now)
            whom = ", ".join(r if is_mailto(r) else mask(r) for r in step.recipients)
            _LOGGER.warning(
                "incident %d not acknowledged within %gs: escalating to %s",
                incident.id,
                self.settings.escalate_after_s,
                whom,
            )
            alert = Alert("escalate", incident.subject, self.policy.text_of(incident, now), incident.id)
            self.outbox.append(Outgoing(alert, step.recipients, now))

    def mail_body(self, alert: Alert) -> str:
        """The e-mail's text: the alert, who was texted without an answer, and how to acknowledge."""
        lines = [alert.text, ""]
        if alert.incident_id is not None and alert.kind != "resolved":
            texted = self.chain.told(alert.incident_id, email=False)
            if texted and self.settings.escalate_after_s > 0:
                lines.append(
                    f"No on-call phone acknowledged within {self.settings.escalate_after_s:g}s of its text: "
                    + ", ".join(mask(n) for n in texted)
                    + "."
                )
            lines.append("Acknowledge: reply ACK <pin> from an on-call phone, or ACK on the status page.")
        lines.append(f"-- the {self.settings.box_name} watchdog")
        return "\n".join(lines)

    def record_mail(self, alert: Alert, target: str, outcome: str, at: float) -> None:
        self.state.record_alert(alert, target, outcome, at)

    async def replies(self, now: float, *, scan_sim: bool) -> None:
        """Handle new on-call replies from the ledger and, while the daemon is not reading, the SIM."""
        s = self.settings
        found: list[tuple[Reply, StoredSms | None]] = [
            (r, None) for r in await asyncio.to_thread(self.inbox.read_new)
        ]
        if scan_sim:
            for sms in await self.port.stored():
                msg = sms.message
                if not isinstance(msg, Deliver):
                    continue
                # Only on-call commands and the canary: everything else stays for the daemon's ledger.
                command = verb_of(msg.text) is not None and is_oncall(
                    msg.sender.number, self.oncall, s.default_region
                )
                if command or self.canary.matches(msg.text):
                    reply = self.inbox.sim_reply(
                        msg.sender.number, msg.text, msg.scts.timestamp() if msg.scts else None
                    )
                    found.append((reply, sms))
        for reply, stored in found:
            if self.canary.received(reply.text):
                self.reader.canary_missed_since = None
            elif verb_of(reply.text) is not None and not self.commands.seen(reply.key):
                self.commands.mark_seen(reply.key, now)
                await self.act(reply, now)
            if stored is not None:
                await self.port.delete(stored)

    async def act(self, reply: Reply, now: float) -> None:
        """Decide on one command, carry it out when allowed, and audit it (never its text)."""
        s = self.settings
        number = mask(reply.sender)
        sender = e164(reply.sender, s.default_region) or reply.sender
        failures = self.commands.failures(sender, now) if sender in self.oncall else 0
        decision = decide(reply, oncall=self.oncall, region=s.default_region, pin=self.pin, failures=failures)
        if decision is None:
            return
        command = decision.verb
        if not decision.accepted:
            detail = decision.reason
            if decision.wrong_pin:
                count = self.commands.add_failure(decision.sender, now)
                if count == GUESSES_PER_HOUR:
                    detail += "; guessing reported"
                    self.report_guessing(decision.sender, now)
            _LOGGER.warning("refused %s from %s (%s)", command, number, decision.reason)
            self.commands.record(CommandFact(now, decision.sender, command, "refused", detail, reply.via))
            return
        _LOGGER.info("on-call %s sent %s", number, command)
        if command == "STATUS":
            answer = f"{s.box_name} STATUS: {self.policy.summary(now)}; {self.daemon_line()}"
        elif command == "ACK":
            acked = self.policy.ack(now)
            self.state.sync_incidents(self.policy, now)
            answer = f"{s.box_name} ACK: {len(acked)} incident(s) silenced until resolved"
        else:
            answer = f"{s.box_name} RESTART: {await self.restart()}"
        self.outbox.append(Outgoing(Alert("reply", command.lower(), answer), (decision.sender,), now))
        result = answer.split(": ", 1)[1] if command == "RESTART" else ""
        self.commands.record(CommandFact(now, decision.sender, command, "accepted", result, reply.via))

    def report_guessing(self, sender: str, now: float) -> None:
        """Once per lock-out: every on-call number learns that someone is guessing the PIN."""
        text = (
            f"{self.settings.box_name}: PIN guessing from {sender}: "
            f"{GUESSES_PER_HOUR} wrong PINs, its commands are ignored for up to an hour"
        )
        _LOGGER.warning("PIN guessing from %s: ignored for up to an hour", mask(sender))
        self.outbox.append(Outgoing(Alert("guessing", "pin", text), self.settings.oncall, now))

    def daemon_line(self) -> str:
        ledger = self.reader.last_ledger
        hb = "no heartbeat" if ledger is None or ledger.heartbeat_at is None else ledger.heartbeat_detail
        present = daemon_present(self.settings.ledger_dir)
        return f"daemon {'running' if present else 'not running'} ({hb})"

    async def restart(self) -> str:
        command = self.settings.restart_command
        try:
            proc = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
            async with asyncio.timeout(60):
                _, err = await proc.communicate()
        except (OSError, TimeoutError) as exc:
            return f"failed ({exc})"
        if proc.returncode == 0:
            return "done"
        return f"exit {proc.returncode} {err.decode(errors='replace').strip()[:60]}"

    def run_canary(self, now: float) -> None:
        text = self.canary.due(now)
        if text is not None:
            self.outbox.append(Outgoing(Alert("canary", "canary", text), (self.settings.canary_number,), now))
        self.reader.canary_missed_since = self.canary.check(now)

    async def flush(self, now: float) -> None:
        """Send what is waiting, if there is a port; unsent alerts wait, and expire after `repeat_s`."""
        if not self.outbox:
            return
        kept: list[Outgoing] = []
        for out in self.outbox:
            mails = tuple(r for r in out.recipients if is_mailto(r))
            if mails:  # e-mail needs no modem: it goes now, in the background
                subject = " ".join(out.alert.text.split())  # one line, whatever the modem or SMS said
                body = self.mail_body(out.alert)
                for target in mails:
                    self.mail.submit(out.alert, target, subject, body)
                out.recipients = tuple(r for r in out.recipients if not is_mailto(r))
        self.outbox = [out for out in self.outbox if out.recipients]
        if not self.outbox:
            return
        ready = await self.port.ready(READY_WAIT_S) if self.port.held else False
        for out in self.outbox:
            if not ready:
                if now - out.queued_at > self.settings.repeat_s:
                    self.state.record_alert(out.alert, ",".join(out.recipients), "expired", now)
                else:
                    kept.append(out)
                continue
            for number in out.recipients:
                ok = await self.port.send(number, out.alert.text)
                self.state.record_alert(out.alert, number, "sent" if ok else "failed", time.time())
                if ok and out.alert.kind in _PRIVATE_KINDS:
                    _LOGGER.info("sent %s %s to %s", out.alert.kind, out.alert.subject, mask(number))
                elif ok:
                    _LOGGER.info("sent to %s: %s", mask(number), out.alert.text)
        self.outbox = kept


def main(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT."""
    if not settings.oncall:
        _LOGGER.error("watchdog.oncall is empty: nobody to alert")
        return 2

    async def run() -> None:
        watchdog = Watchdog(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, watchdog.stopping.set)
        await watchdog.run()

    asyncio.run(run())
    return 0
