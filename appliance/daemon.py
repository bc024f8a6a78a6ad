"""`smsgw serve`: the composition root. Wires config, ledger, modems, dispatcher, webhooks and HTTP.

Start order: ledger (and crash recovery) first, so the API can accept at once;
then the modems, which may be absent (the daemon accepts and queues, and reports
not ready until one appears); then the dispatcher, the webhook relay, the
maintenance loop and the HTTP server. SIGTERM/SIGINT stop it cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import uvicorn

from appliance import heap
from appliance.api import create_app
from appliance.balance import BalanceChecker, BalanceReading, failure_kind
from appliance.box_name import NameTaken, hold_name
from appliance.config import Config, ModemConfig
from appliance.dispatcher import Dispatcher, ModemWorker
from appliance.escalation import Escalator
from appliance.health import Notifier, Progress
from appliance.httpguard import MAX_HEADER_BYTES, Limits, protocol_class
from appliance.inbound import Receiver, command_sealer, join, keyword
from appliance.ledger import (
    LedgerUnreachable,
    Retention,
    StorageFull,
    Store,
    StoreError,
    WebhookTarget,
    rfc3339,
)
from appliance.ledger.spool import Spool
from appliance.logrepeat import RepeatFilter, install
from appliance.metrics import Metrics
from appliance.status import MIN_FREE_BYTES, watchdog_state_path
from appliance.web import mask_number
from modem import Modem, ModemState
from modem.errors import ModemError
from modem.portlock import hold_as_daemon
from modem.ussd import Ussd, UssdReply
from watchdog.audit import commands_after
from watchdog.keyfile import DamagedKey

_LOGGER = logging.getLogger(__name__)

HEARTBEAT_S = 2.0  # the watchdog reads this row; stale after a few missed beats
MAINTENANCE_S = 1.0  # scheduled -> queued, validity expiry
SLOW_MAINTENANCE_S = 60.0  # report timeouts, stale multipart, retention, modem samples
PURGE_EVERY_S = 3600.0
# At stop, wait at most this long for +CMGS records still being committed.
SETTLE_S = 5.0
# A balance check finding no modem ready waits this long for one (the first check comes soon after start).
BALANCE_MODEM_WAIT_S = 60.0
# systemd WATCHDOG=1 is withheld when the dispatcher loop has not turned for this long (unless a
# modem that stopped answering holds it up: that is the modem's fault, see health.Progress).
PROGRESS_STALE_S = 30.0


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns SIGTERM/SIGINT and cleans up."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def default_sim_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "smsgw-sim" if runtime else Path(f"/tmp/smsgw-sim-{os.getuid()}")  # noqa: S108


class Gateway:
    """The running daemon; also the API's view of what the ledger cannot tell (GatewayView)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.store = Store(
            config.store.ledger,
            webhooks=[WebhookTarget(w.url, w.secret, w.events) for w in config.webhooks],
            reserve_bytes=config.store.reserve_bytes,
            box=config.fleet.box,
        )
        if self.store.postgres:  # accepts go here while the server is unreachable (spool.py)
            self.store.spool = Spool(config.store.spool, self.store)
        self.notifier = Notifier()
        self._taken_over_by: str | None = None  # set while another box holds this one's lease
        self.progress = Progress(PROGRESS_STALE_S)
        self.dispatcher = Dispatcher(self.store, config.dispatcher, self.metrics)
        self.escalator: Escalator | None = None  # set when its loop starts (_escalate)
        self.modem_list: list[tuple[str, ModemConfig, Modem]] = []
        self.ussd: dict[str, Ussd] = {}  # per modem name: its USSD sessions (POST /api/v1/ussd, balance)
        self._balance_modem = ""  # the modem the running balance check asked
        self.simulator: Any = None
        self._sim_control: _Server | None = None
        self._sim_control_task: asyncio.Task[None] | None = None
        self._started_at = time.time()
        self._stop = asyncio.Event()
        self.serving = asyncio.Event()  # set once the HTTP API answers
        self.server: _Server | None = None
        self._resets: set[asyncio.Task[None]] = set()  # modem resets asked for by the status page
        try:
            # on-call commands are stored redacted
            self.sealer = command_sealer(
                config.store.path, config.watchdog.oncall, config.gateway.default_region
            )
        except OSError as exc:
            raise SystemExit(f"smsgw: store.path {config.store.path}: command key: {exc}") from None
        from appliance.webhooks import load_callback_secret  # noqa: PLC0415

        try:  # once: a key file that cannot be read stops the start, not a relay loop
            self.callback_secret = load_callback_secret(config.api.callback_secret, config.store.path)
        except OSError as exc:
            raise SystemExit(
                f"smsgw: store.path {config.store.path}: webhook signing secret: {exc}"
            ) from None
        self._compacted = time.monotonic()  # the first compaction one period after start
        self._purged = -PURGE_EVERY_S  # the first retention purge at the first slow maintenance
        self.log_filter: RepeatFilter | None = None  # set by serve(): collapses repeated log lines

    # ------------------------------------------------------------ GatewayView
    def modems(self) -> list[dict[str, Any]]:
        workers = {w.name: w for w in self.dispatcher.workers}
        out = []
        for name, cfg, modem in self.modem_list:
            info = modem.info
            ident = info.identity
            reg = info.registration
            sig = info.signal
            sto = info.storage
            out.append(
                {
                    "name": name,
                    "port": modem.url if cfg.port != "sim" else f"sim ({modem.url})",
                    "state": modem.state.value,
                    "manufacturer": ident.manufacturer if ident else "",
                    "model": ident.model if ident else "",
                    "revision": ident.revision if ident else "",
                    "imei": ident.imei if ident else "",
                    "sim": info.sim,
                    "iccid": info.iccid,
                    "operator": info.operator,
                    "registration": {"status": reg.status, "text": reg.text, "technology": reg.technology}
                    if reg
                    else None,
                    "signal": {"dbm": sig.dbm, "bars": sig.bars} if sig else None,
                    "storage": {"memory": sto.memory, "used": sto.used, "total": sto.total} if sto else None,
                    "report_recovery": info.report_recovery,
                    "last_error": info.last_error,
                    "reopens": info.reopens,
                    "resets": info.resets,
                    "sent_parts": modem.sent_parts,
                    # Set aside after repeated failures: the others carry on meanwhile.
                    "set_aside_s": round(max(0.0, workers[name].set_aside_until - time.monotonic()), 1)
                    if name in workers
                    else 0.0,
                }
            )
        return out

    def ready(self) -> tuple[bool, str]:
        ready = [
            name
            for name, _cfg, m in self.modem_list
            if m.state is ModemState.READY
            and m.info.registration is not None
            and m.info.registration.registered
        ]
        if not ready:
            states = ", ".join(f"{n}: {m.state.value}" for n, _c, m in self.modem_list)
            return False, f"no modem ready and registered ({states})"
        return True, f"{len(ready)} modem(s) ready"

    def wake(self, *, chains: bool = True) -> None:
        self.dispatcher.wake()
        # Only a message with an escalation starts a chain: an idle escalator is not asked its
        # four queries on each of the hundreds of accepts a second that carry none.
        if chains and self.escalator is not None:
            self.escalator.wake()

    def started_at(self) -> float:
        return self._started_at

    def reset_modem(self, name: str) -> bool:
        for modem_name, _cfg, modem in self.modem_list:
            if modem_name == name:
                task = asyncio.create_task(modem.reset(), name=f"reset {name}")
                self._resets.add(task)  # keep a reference until done (asyncio holds only weak ones)
                task.add_done_callback(self._resets.discard)
                return True
        return False

    async def send_ussd(self, code: str) -> UssdReply:
        """USSD on the first ready modem (POST /api/v1/ussd, the balance check)."""
        _name, ussd = self._ussd_modem()
        return await ussd.send(code)

    def _ussd_modem(self) -> tuple[str, Ussd]:
        for name, _cfg, modem in self.modem_list:
            if modem.state is ModemState.READY:
                return name, self.ussd[name]
        raise ModemError("no modem is ready")

    async def _ask_balance(self, code: str) -> str:
        """The balance check's question: waits a while for a modem still starting, then asks."""
        if self.modem_list and not any(m.state is ModemState.READY for _n, _c, m in self.modem_list):
            with contextlib.suppress(TimeoutError):
                await self.modem_list[0][2].wait_ready(BALANCE_MODEM_WAIT_S)
        name, ussd = self._ussd_modem()
        self._balance_modem = name
        return (await ussd.send(code)).text

    async def _balance_read(self, reading: BalanceReading) -> None:
        """Keep a balance check in the ledger (the page, /metrics and the watchdog read it there)."""
        modem = self._balance_modem or (self.modem_list[0][0] if self.modem_list else "modem")
        if not reading.ok:
            self.metrics.balance_check_failures_total.labels(modem=modem, kind=failure_kind(reading)).inc()
        try:
            await self.store.record_balance(
                modem,
                at=reading.at.timestamp(),
                ok=reading.ok,
                value=reading.value,
                text=reading.text,
                error=reading.error,
            )
        except (StorageFull, LedgerUnreachable):  # said once by the ledger
            pass  # the store said so once; the next check writes again
        except StoreError as exc:
            _LOGGER.error("balance check: %s", exc)  # noqa: TRY400  (the message says it all)

    async def _check_balance(self) -> None:
        cfg = self.config.ussd
        checker = BalanceChecker(
            self._ask_balance, cfg, on_reading=self._balance_read, first_after_s=cfg.first_check_after_s
        )
        await checker.run()

    # ---------------------------------------------------------------- running
    def stop(self) -> None:
        """Ask the running daemon to stop (what SIGTERM does)."""
        self._stop.set()

    async def run(self, *, handle_signals: bool = True) -> None:
        """Run until SIGTERM/SIGINT (or stop())."""
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop.set)
        try:
            await self.store.open()
        except (StoreError, OSError, sqlite3.Error, asyncpg.PostgresError) as exc:
            raise SystemExit(f"cannot open the ledger {self.config.store.shown}: {exc}") from exc
        if self.store.spool is not None:
            try:
                await self.store.spool.open()
            except (StoreError, OSError, sqlite3.Error) as exc:
                await self.store.close()
                raise SystemExit(f"cannot open the spool {self.store.spool.path}: {exc}") from exc
        try:
            await self._run_open()
        finally:
            self.notifier.stopping()
            for worker in self.dispatcher.workers:
                with contextlib.suppress(Exception):
                    await worker.settle(SETTLE_S)
            for _name, _cfg, modem in self.modem_list:
                await modem.stop()
            port_lock = getattr(self, "port_lock", None)
            if port_lock is not None:
                port_lock.release()
            if self._sim_control is not None and self._sim_control_task is not None:
                self._sim_control.should_exit = True
                with contextlib.suppress(Exception):
                    await self._sim_control_task
            if self.simulator is not None:
                await self.simulator.stop()
            if self.store.spool is not None:
                await self.store.spool.close()
            with contextlib.suppress(Exception):  # unreachable or full: the lease runs out instead
                await self.store.release_box()
            await self.store.close()
            _LOGGER.info("stopped")

    async def _run_open(self) -> None:
        sock = self._bind()
        # Recovery before the API answers, so nobody reads a message in the state a crash left;
        # with a full disk it is left to the dispatcher's task, which waits for room. The lease
        # first: once it is fresh no other box of the fleet takes this one's messages over.
        try:
            await self._hold_box_name()
            recovered: list[str] | None = await self.store.recover_inflight(
                self.config.dispatcher.unknown_outcome
            )
        except StorageFull:
            recovered = None
        await self._start_modems()
        try:
            app = create_app(
                store=self.store,
                config=self.config,
                gateway=self,
                metrics=self.metrics,
                send_ussd=self.send_ussd,
            )
        except DamagedKey as exc:
            raise SystemExit(f"smsgw: session key: {exc}") from None
        host, _, port = self.config.api.listen.rpartition(":")
        self.server = _Server(
            uvicorn.Config(
                app,
                host=host.strip("[]"),
                port=int(port),
                log_level="warning",
                lifespan="off",
                access_log=False,
                server_header=False,
                **_hardened(self.config),
                # [api] tls_cert/tls_key: HTTPS only on the one port (cookies are Secure then).
                ssl_certfile=self.config.api.tls_cert or None,
                ssl_keyfile=self.config.api.tls_key or None,
            )
        )
        async with asyncio.TaskGroup() as tg:
            serving = tg.create_task(self.server.serve(sockets=[sock]), name="http")
            tasks = [
                tg.create_task(self._dispatch(recovered), name="dispatcher"),
                tg.create_task(_forever("webhooks", self._relay), name="webhooks"),
                tg.create_task(_forever("escalation", self._escalate), name="escalation"),
                tg.create_task(_forever("maintenance", self._maintenance), name="maintenance"),
                tg.create_task(_forever("heartbeat", self._heartbeat), name="heartbeat"),
                tg.create_task(_forever("fleet wake-ups", self._fleet_wakeups), name="fleet wake-ups"),
            ]
            if self.store.spool is not None:
                spool = self.store.spool
                tasks.append(
                    # Drained messages may carry escalations: the escalator is woken with the dispatcher.
                    tg.create_task(_forever("spool", lambda: spool.run(self.wake)), name="spool")
                )
            if self.modem_list and self.config.ussd.check_every_s > 0:
                tasks.append(tg.create_task(_forever("balance", self._check_balance), name="balance"))
            await self._until_serving(serving)
            self.notifier.ready(await self._status_line())
            self.serving.set()
            _LOGGER.info(
                "smsgw serving on %s://%s (ledger %s)",
                "https" if self.config.api.tls_cert else "http",
                self.config.api.listen,
                self.config.store.shown,
            )
            stop = tg.create_task(self._stop.wait())
            await asyncio.wait({serving, stop}, return_when=asyncio.FIRST_COMPLETED)
            self.server.should_exit = True
            for task in (*tasks, stop):
                task.cancel()

    async def _dispatch(self, recovered: list[str] | None) -> None:
        """Crash recovery (unless done already), then the dispatcher. On a full disk recovery waits
        for room (the API serves meanwhile, answering 507): nothing is sent before the ledger
        tells the truth."""
        while recovered is None:
            try:
                recovered = await self.store.recover_inflight(self.config.dispatcher.unknown_outcome)
            except StorageFull:
                await self.store.writable.wait()  # the store said why, once; maintenance watches the disk
        if recovered:
            _LOGGER.warning(
                "%d message(s) were being sent when the gateway stopped; policy %r applied",
                len(recovered),
                self.config.dispatcher.unknown_outcome,
            )
        await self.dispatcher.run()

    def _bind(self) -> socket.socket:
        """Bind the API port before anything else starts, so a busy port fails fast and clearly."""
        host, _, port = self.config.api.listen.rpartition(":")
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
        # and without it Nagle + delayed ACK add 40 ms to every response.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, int(port)))
        except OSError as exc:
            sock.close()
            raise SystemExit(f"smsgw: api.listen {self.config.api.listen}: {exc.strerror}") from None
        sock.listen(128)
        sock.set_inheritable(True)
        return sock

    async def _until_serving(self, serving: asyncio.Task[None]) -> None:
        assert self.server is not None  # noqa: S101
        while not self.server.started:
            if serving.done():
                serving.result()  # raises the bind error
                raise SystemExit(f"the HTTP server did not start on {self.config.api.listen}")
            await asyncio.sleep(0.01)  # uvicorn exposes no event for "started"

    async def _start_modems(self) -> None:
        # A single-port watchdog may be using the modem while we were down: wait until it gives it back.
        path = self.config.store.path
        self.port_lock = None if path == ":memory:" else await hold_as_daemon(Path(path).parent)
        sim_cfgs = [m for m in self.config.modems if m.port == "sim"]
        if sim_cfgs:
            from modem.simulator import Simulator  # noqa: PLC0415  (only the demo needs it)

            sc = self.config.simulator
            directory = Path(sc.directory) if sc.directory else default_sim_dir()
            self.simulator = Simulator(
                directory, submit_latency_s=sc.submit_latency_s, report_delay_s=sc.report_delay_s
            )
            await self.simulator.start()
            _LOGGER.info(
                "simulated modem on %s (aux %s)", self.simulator.primary_path, self.simulator.aux_path
            )
            if sc.control:
                await self._start_sim_control(sc.control)
        for i, cfg in enumerate(self.config.modems):
            name = cfg.name or (f"modem{i}" if len(self.config.modems) > 1 else "modem")
            url = str(self.simulator.primary_path) if cfg.port == "sim" else cfg.port
            receiver = Receiver(self.store, self.config.inbound, self.metrics, name, self.sealer)
            modem = Modem(
                url,
                baudrate=cfg.baudrate,
                pin=cfg.pin,
                on_deliver=receiver.on_deliver,
                on_status_report=receiver.on_report,
                on_undecodable=receiver.on_undecodable,
                command_timeout_s=cfg.command_timeout_s,
                submit_timeout_s=cfg.submit_timeout_s,
                submit_floor_s=cfg.submit_floor_s,
            )
            self.ussd[name] = Ussd(modem, command_timeout_s=cfg.command_timeout_s)
            await modem.start()
            self.modem_list.append((name, cfg, modem))
            self.dispatcher.workers.append(ModemWorker(self.dispatcher, modem, cfg, name))

    async def _start_sim_control(self, listen: str) -> None:
        from modem.simulator.control import create_app as control_app  # noqa: PLC0415

        host, _, port = listen.rpartition(":")
        server = _Server(
            uvicorn.Config(
                control_app(self.simulator),
                host=host,
                port=int(port),
                log_level="warning",
                lifespan="off",
                access_log=False,
                log_config=None,  # as the API's server: through the root handlers (see _hardened)
            )
        )
        self._sim_control = server
        self._sim_control_task = asyncio.create_task(server.serve())
        _LOGGER.info("simulator control on http://%s", listen)

    async def _relay(self) -> None:
        from appliance.addrpolicy import AddressPolicy  # noqa: PLC0415
        from appliance.webhooks import Relay  # noqa: PLC0415

        relay = Relay(
            self.store,
            self.metrics,
            retention_s=self.config.store.webhook_retention_hours * 3600.0,
            callback_secret=self.callback_secret,
            policy=AddressPolicy(self.config.webhook_policy.allow),
            configured=[w.url for w in self.config.webhooks],
        )
        await relay.run()

    async def _escalate(self) -> None:
        from appliance.intake import Intake  # noqa: PLC0415

        intake = Intake(
            self.store,
            queue_max=self.config.api.queue_max,
            gateway=self,
            metrics=self.metrics,
            min_free_bytes=MIN_FREE_BYTES,
        )
        self.escalator = Escalator(self.store, intake, self.config)
        await self.escalator.run()

    async def _maintenance(self) -> None:
        last_slow = 0.0
        cfg = self.config
        # Often enough that a short configured timeout is honoured close to its time.
        slow_every = min(
            SLOW_MAINTENANCE_S, cfg.dispatcher.report_timeout_s / 2, cfg.inbound.reassembly_timeout_s / 2
        )
        while True:
            try:
                if not await self.store.check_space():
                    await asyncio.sleep(MAINTENANCE_S)
                    continue
                if await self.store.promote_and_expire():
                    self.dispatcher.wake()
                if time.monotonic() - last_slow >= slow_every:
                    last_slow = time.monotonic()
                    await self.store.expire_reports(cfg.dispatcher.report_timeout_s)
                    await self.store.flush_stale_inbound(
                        cfg.inbound.reassembly_timeout_s,
                        join=join,
                        keyword_of=lambda t: keyword(t, cfg.inbound),
                        seal=self.sealer,
                        reply_window_s=cfg.inbound.reply_window_s,
                    )
                    await self.store.purge_bodies(
                        cfg.store.body_retention_days, cfg.store.idempotency_retention_hours
                    )
                    await self._retention()
                    await self._copy_watchdog_commands()
                    await self._sample_modems()
            except (StorageFull, LedgerUnreachable):  # said once by the ledger
                pass  # the store logs a full disk once, and again when it has room
            except StoreError as exc:
                _LOGGER.error("maintenance: %s", exc)  # noqa: TRY400  (the message says it all)
            await asyncio.sleep(MAINTENANCE_S)

    async def _copy_watchdog_commands(self) -> None:
        """The watchdog's command facts into the audit trail (GET /api/v1/audit, /audit), so that
        paging stays one ordered table; the last copied id is kept in the ledger (idempotent)."""
        path = watchdog_state_path(self.config)
        while True:
            facts = await asyncio.to_thread(commands_after, path, await self.store.watchdog_audit_mark())
            if not facts:
                return
            rows = [
                (
                    f["at"],
                    f"sms ({f['via']})",
                    mask_number(f["sender"]),
                    f"{f['verb']} {f['outcome']}" + (f": {f['detail']}" if f["detail"] else ""),
                )
                for f in facts
            ]
            await self.store.copy_watchdog_commands(rows, facts[-1]["id"])

    async def _retention(self) -> None:
        r = self.config.retention
        if time.monotonic() - self._purged >= PURGE_EVERY_S:  # periods are days: hourly is plenty
            self._purged = time.monotonic()
            await self.store.purge(
                Retention(r.numbers_days, r.metadata_days, r.events_days, r.messages_days, r.audit_days)
            )
        if r.vacuum_every_hours > 0 and time.monotonic() - self._compacted >= r.vacuum_every_hours * 3600:
            self._compacted = time.monotonic()
            await self.store.compact()
        if self.log_filter is not None:
            self.log_filter.flush()

    async def _sample_modems(self) -> None:
        for name, _cfg, modem in self.modem_list:
            if modem.state is ModemState.READY:
                with contextlib.suppress(Exception):
                    await modem.refresh_status()
            reg = modem.info.registration
            sig = modem.info.signal
            await self.store.add_modem_sample(
                name,
                modem.state.value,
                bool(reg and reg.registered),
                sig.dbm if sig else None,
                modem.info.operator,
            )

    async def _fleet_wakeups(self) -> None:
        """A shared PostgreSQL ledger: another box's accept wakes this box's dispatcher at once
        (NOTIFY), as this box's own accepts do; on SQLite the event is never set."""
        while True:
            await self.store.queue_changed.wait()
            self.store.queue_changed.clear()
            self.wake()  # with the escalator: what the other box committed may start a chain

    async def _heartbeat(self) -> None:
        last_parts = -1
        while True:
            parts = sum(m.sent_parts for _n, _c, m in self.modem_list)
            line = ""  # the queue's counts, read once a beat for the heartbeat row and systemd
            try:
                line = await self._status_line()
                await self.store.heartbeat("serve", progress=parts != last_parts, detail=line)
            except (StorageFull, LedgerUnreachable):  # said once by the ledger
                pass  # said once by the store; the watchdog sees the full disk itself
            except StoreError as exc:
                _LOGGER.error("heartbeat: %s", exc)  # noqa: TRY400  (the message says it all)
            try:  # apart: a failed heartbeat row must not also let the lease run out
                await self._lease()
            except (StorageFull, LedgerUnreachable):  # said once by the ledger
                pass
            except StoreError as exc:
                _LOGGER.error("fleet lease: %s", exc)  # noqa: TRY400  (the message says it all)
            last_parts = parts
            now = time.monotonic()
            stalled = [
                (name, now - modem.stalled_since)
                for name, _cfg, modem in self.modem_list
                if modem.stalled_since is not None
            ]
            if self.progress.check(now - self.dispatcher.last_progress, stalled):
                self.notifier.watchdog()
            if line:
                self.notifier.status(line)
            # systemd restarts the service when WATCHDOG=1 is later than WATCHDOG_USEC: ping at
            # the interval the notifier derived from it (half) when that is shorter.
            # The lease is renewed with the heartbeat: at least three times per lease.
            await asyncio.sleep(
                min(
                    HEARTBEAT_S,
                    self.config.fleet.lease_s / 3,
                    self.notifier.watchdog_interval_s or HEARTBEAT_S,
                )
            )

    async def _hold_box_name(self) -> None:
        """This start holds the box's name in the fleet, or the start ends with one line saying
        which other start holds it (box_name.py)."""
        path = self.config.store.path
        directory = None if path == ":memory:" else Path(path).parent
        try:
            await hold_name(self.store, self.config.fleet.lease_s, directory, self._stop)
        except NameTaken as exc:
            raise SystemExit(f"smsgw: {exc}") from None

    async def _lease(self) -> None:
        """Renew this box's lease and take over boxes of the fleet whose lease ran out.

        A box taken over while it lived (paused past its lease: SIGSTOP, a frozen VM) says so once
        and claims nothing (the ledger refuses its claims); at the next turn, its in-flight
        messages resolved by the other box, it registers again and sends on."""
        fleet = self.config.fleet
        if self._taken_over_by is not None:
            if await self.store.register_box(fleet.lease_s) is not None:
                return  # another start holds the name now (said when it was lost): claim nothing
            _LOGGER.info("box %s registered again after box %s took it over", fleet.box, self._taken_over_by)
            self._taken_over_by = None
            self.dispatcher.wake()
        else:
            by = await self.store.renew_lease(fleet.lease_s)
            if by is not None:
                self._taken_over_by = by
                _LOGGER.warning(
                    "box %s was taken over by box %s (its lease of %d s ran out while it was paused): "
                    "claiming nothing until it registers again",
                    fleet.box,
                    by,
                    fleet.lease_s,
                )
                return
        for takeover in await self.store.take_over_expired(self.config.dispatcher.unknown_outcome):
            _LOGGER.warning(
                "took over box %s (lease ran out at %s): %d message(s) in flight there, policy %r applied",
                takeover.box,
                rfc3339(takeover.lease_until),
                len(takeover.messages),
                self.config.dispatcher.unknown_outcome,
            )
            self.wake()  # its queue, and the chains its escalator was taking

    async def _status_line(self) -> str:
        stats = await self.store.stats()
        depth = sum(stats.by_status.get(s, 0) for s in ("queued", "scheduled", "sending"))
        modems = ", ".join(f"{n} {m.state.value}" for n, _c, m in self.modem_list)
        return f"queue {depth}; {modems}"


async def _forever(name: str, loop: Callable[[], Awaitable[None]]) -> None:
    """Run a background loop; if it fails, log why and start it again (the daemon lives on)."""
    while True:
        try:
            await loop()
        except LedgerUnreachable:
            pass  # the ledger said so once; the loop starts again and waits for the server
        except Exception:
            _LOGGER.exception("%s failed; restarting it in 1 s", name)
        await asyncio.sleep(1.0)


def _hardened(config: Config) -> dict[str, Any]:
    """uvicorn settings for a hostile LAN: what one client can hold (appliance/httpguard.py), and
    uvicorn's log lines through the root handlers, where repeats are collapsed (appliance/logrepeat.py)."""
    api = config.api
    per_client = min(api.max_connections, api.max_connections_per_client)
    limits = Limits(api.request_timeout_s, api.max_connections, per_client)
    return {
        "http": protocol_class(limits),
        "timeout_keep_alive": api.keepalive_timeout_s,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "log_config": None,
    }


def serve(config: Config) -> int:
    """Run the daemon in the foreground; returns the exit status."""
    gateway = Gateway(config)
    gateway.log_filter = install()  # a flood of bad requests must not fill the disk with log lines
    heap.tune()
    asyncio.run(gateway.run())
    return 0
