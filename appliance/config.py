"""The TOML configuration, validated once at start into frozen dataclasses.

Order of precedence: environment (`SMSGW_MODEM__PORT=...`) over the file over
the defaults. Every error names the key and what is wrong with it, and unknown
keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
import socket
import tomllib
import types
import typing
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.keywords import check_keywords
from appliance.sms_templates import TemplateError, check_name
from watchdog.mail import SmtpConfigError, SmtpSettings, mailto_address
from watchdog.thresholds import ThresholdError, Thresholds

DEFAULT_PATH = Path("/etc/smsgw/smsgw.toml")
# A burst larger than a minute's worth of sends at any sane rate defeats the carrier limit.
MAX_RATE_BURST = 100
MIN_REPLY_WINDOW_S = 1.0  # [inbound] reply_window_s
MAX_REPLY_WINDOW_S = 366 * 86400.0
# Less than one release step of the reserve would not let SQLite open a ledger on a full disk.
MIN_RESERVE_BYTES = 1024 * 1024
MAX_RESERVE_BYTES = 1024 * 1024 * 1024


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key."""


@dataclass(frozen=True)
class GatewayConfig:
    name: str = "smsgw"  # the box's name in alerts and on the status page
    default_region: str = "DE"  # national numbers ("0151...") are read in this region


@dataclass(frozen=True)
class ModemConfig:
    port: str = "sim"  # a serial device path, "socket://host:port", or "sim"
    baudrate: int = 115200
    pin: str = ""
    name: str = ""  # label in logs and status; defaults to the port
    rate_per_minute: float = 20.0  # carrier anti-spam: stay well below what gets a SIM blocked
    # Sends that may go back to back before the rate applies: sporadic traffic goes at once,
    # the long-run rate stays rate_per_minute (a burst of 1 made every second message wait).
    rate_burst: int = 5
    command_timeout_s: float = 10.0
    submit_timeout_s: float = 180.0  # the ceiling: a silent submit is given up after this long
    # A submit silent this long (at least; more when this modem's submits run slow; at most
    # submit_timeout_s) gets the modem probed, so a freeze is noticed as soon as the modem answers
    # again (modem/liveness.py).
    submit_floor_s: float = 10.0


MAX_BATCH_WORKERS = 8  # more than a Pi's cores buys nothing: SQLite commits one at a time
MAX_BATCH_BYTES = 64 * 1024 * 1024  # a batch body is held in memory whole, parsed and validated


@dataclass(frozen=True)
class ApiConfig:
    listen: str = "0.0.0.0:8080"
    max_body_bytes: int = 65536
    # POST /api/v1/messages/batch: 1,000 message requests of ~2 KB each (a 1,600-character text).
    max_batch_bytes: int = 2 * 1024 * 1024
    # Processes that accept large batches beside the daemon (appliance/batch_worker.py), ~50 MB of
    # memory each once the first large batch comes; 0: the daemon accepts every batch itself.
    batch_workers: int = 2
    max_text_chars: int = 1600  # about 10 UCS-2 / 10 GSM-7 segments
    queue_max: int = 100000
    status_page_public: bool = True
    # Signs per-message status_callback webhooks; "" = one generated at first start (callback.key).
    callback_secret: str = ""
    # A hostile LAN (appliance/httpguard.py): the whole request within this, or the connection is closed.
    request_timeout_s: float = 10.0
    keepalive_timeout_s: float = 5.0  # an idle keep-alive connection is closed after this
    max_connections: int = 512  # past it, the oldest connection waiting for a request is closed
    max_connections_per_client: int = 128  # the same, per client address
    # Host names the box answers to (DNS rebinding): names, IP literals, "*.lan" suffixes, or "*" for any.
    # Empty: the box's own names and addresses. Loopback names are always allowed (local probes).
    allowed_hosts: tuple[str, ...] = ()
    tls_cert: str = ""  # PEM certificate chain; with tls_key the API and page speak HTTPS only
    tls_key: str = ""  # PEM private key for tls_cert


@dataclass(frozen=True)
class StoreConfig:
    path: str = "/var/lib/smsgw/ledger.sqlite3"
    # The ledger on a shared PostgreSQL server instead of the `path` file (a fleet of boxes):
    # postgresql://user@host[:port]/database. Exactly one of `path` and `url`. Keep the password out
    # of the URL: libpq's PGPASSFILE (the Ansible role passes one as a systemd credential).
    url: str = ""
    # With `url`: where this box keeps its own files (signing keys, port lock, watchdog state).
    directory: str = "/var/lib/smsgw"
    # With `url`: the local SQLite file that takes new messages while the server is unreachable
    # (appliance/ledger/spool.py); default spool.sqlite3 in `directory`.
    spool: str = ""
    body_retention_days: int = 30
    idempotency_retention_hours: int = 48
    webhook_retention_hours: int = 72  # a webhook target may be down this long without losing events
    # Disk kept free (a preallocated file next to the ledger) so that a part the modem accepted
    # is still recorded when the disk fills up; given up in 1 MiB steps, restored when room returns.
    reserve_bytes: int = 8 * 1024 * 1024

    @property
    def ledger(self) -> str:
        """What the ledger opens: the SQLite file or the PostgreSQL URL."""
        return self.url or self.path

    @property
    def shown(self) -> str:
        """The ledger for log lines and messages: its file, or its URL without a password."""
        password = urllib.parse.urlsplit(self.url).password if self.url else None
        return self.url.replace(f":{password}@", ":******@") if password else self.ledger


@dataclass(frozen=True)
class RetentionConfig:
    """Data minimisation (appliance/ledger/retention.py `purge`): what the ledger forgets, and when. 0 = never."""

    numbers_days: int = 90  # recipient and sender numbers of final messages and inbound texts, masked
    metadata_days: int = 90  # callers' metadata and status_callback URLs of final messages
    events_days: int = 90  # the events timeline of final messages
    messages_days: int = 365  # final messages deleted whole (with parts and events): bounds the ledger
    audit_days: int = 365  # audit trail rows (who did what, from where); resolved peer_incidents too
    vacuum_every_hours: float = 24.0  # give freed pages back to the file system (incremental vacuum)


@dataclass(frozen=True)
class DispatcherConfig:
    max_attempts: int = 5
    backoff_base_s: float = 5.0
    backoff_max_s: float = 900.0
    per_recipient_per_minute: float = 6.0  # anti-flood for one recipient
    unknown_outcome: str = "resend"  # after a crash mid-send: "resend" (at-least-once) or "hold"
    report_timeout_s: float = 172800.0  # no status report after 48 h -> final "sent" is kept, marked expired
    default_validity_s: int = 86400
    modem_failures_before_set_aside: int = 5
    set_aside_s: float = 300.0


@dataclass(frozen=True)
class InboundConfig:
    reassembly_timeout_s: float = 3600.0
    # A text answers the latest message sent to its sender at most this long before it (in_reply_to).
    reply_window_s: float = 604800.0
    stop_keywords: tuple[str, ...] = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT")
    start_keywords: tuple[str, ...] = ("START", "UNSTOP", "YES")


@dataclass(frozen=True)
class WebhookConfig:
    url: str = ""
    secret: str = ""  # Standard Webhooks secret ("whsec_..." base64, or raw text)
    events: tuple[str, ...] = ("message.status", "message.received", "message.escalated", "gateway.alert")


@dataclass(frozen=True)
class WebhookPolicyConfig:
    """Where per-message callbacks may go (appliance/addrpolicy.py): `[webhooks] allow` CIDRs.

    Loopback, link-local, multicast, unspecified and the box's own addresses are refused
    unless a CIDR here allows them; LAN and public targets are allowed.
    """

    allow: tuple[str, ...] = ()


@dataclass(frozen=True)
class WatchdogConfig(Thresholds):
    """`[watchdog]`: the alert thresholds (the type the watchdog's own settings extend too), and the rest."""

    port: str = ""  # its own AT port; empty: take the primary over once the daemon is down
    oncall: tuple[str, ...] = ()
    pin: str = ""  # on-call replies "STATUS|ACK|RESTART <pin>", 6+ digits; empty: replies are ignored
    healthz_url: str = ""  # default: http://<api.listen>/healthz
    unit: str = "smsgw.service"
    restart_command: tuple[str, ...] = ("systemctl", "restart", "smsgw.service")
    state_path: str = ""  # default: watchdog.sqlite3 next to the ledger
    cycle_s: float = 5.0
    healthz_timeout_s: float = 4.0
    repeat_s: float = 1800.0
    cap_per_hour: int = 10
    alive_at: str = "09:00"  # local time of the daily "alive" SMS; "" = never
    canary_number: str = ""  # the box's own number, for the loopback canary
    canary_every_s: float = 0.0  # 0 = canary off (each one costs an SMS)
    canary_timeout_s: float = 600.0
    # Escalation (watchdog/escalation.py; checked in _check_escalation): `oncall` in order, one
    # number every escalate_after_s until an ACK, then e-mail. 0 = all numbers at once (as before).
    escalate_after_s: float = 0.0
    escalate_email: tuple[str, ...] = ()  # "mailto:oncall@example.com" targets, through [smtp]
    # A box of the fleet ([fleet]) whose heartbeat is older than this gets one text (from one
    # watchdog of the fleet); 0 = three times [fleet] lease_s.
    peer_silent_s: float = 0.0


@dataclass(frozen=True)
class AlertmanagerConfig:
    """POST /api/v1/alertmanager: one SMS per notification to [watchdog] oncall (or ?to=)."""

    max_segments: int = 2  # the SMS is cut (with "...") to fit this many segments
    max_alerts: int = 10  # alerts listed in one SMS; the rest are counted as "+N more"
    dedupe_window_s: float = 300.0  # the same notification again within this window is not re-sent
    template: str = ""  # a message template (/api/v1/templates) for the SMS text; "" = the built-in text


@dataclass(frozen=True)
class WebConfig:
    """The status page at `/` (appliance/web.py; how to make a password hash: appliance/session.py)."""

    public: bool = True  # read-only views open to the LAN; false: everything but /login needs a login
    admin_password_hash: str = ""  # "pbkdf2_sha256$<iterations>$<salt b64>$<hash b64>"; "" = API key only
    session_secret: str = ""  # signs session cookies; "" = a random key kept in session.key by the ledger


@dataclass(frozen=True)
class SimulatorConfig:
    """Used when a modem's port is "sim": the built-in simulated modem."""

    directory: str = ""  # where the pty symlinks go; default under the runtime dir
    submit_latency_s: float = 1.0
    report_delay_s: float = 3.0
    control: str = "127.0.0.1:8025"  # its control interface (inject, faults, phone inboxes); "" = off


@dataclass(frozen=True)
class UssdConfig:
    """[ussd]: the prepaid balance check (appliance/balance.py) over USSD (modem/ussd.py)."""

    balance_code: str = "*100#"  # what the operator's balance enquiry is dialled as
    balance_regex: str = "([0-9]+[.,][0-9]{2})"  # its first group is the amount ("12,34" or "12.34")
    check_every_s: int = 86400  # 0 = no scheduled check; else at least MIN_BALANCE_CHECK_S
    alert_below: float = 5.0  # the watchdog alerts when the balance falls below this; 0 = never
    first_check_after_s: float = 30.0  # the first check after start (the modem registers meanwhile)


@dataclass(frozen=True)
class EscalationConfig:
    """[escalation]: bounds of a message's `escalation` (appliance/escalation.py)."""

    min_after_s: int = 30  # the shortest wait a request may ask for before the next step
    mail_retry_max_s: float = 86400.0  # a chain's e-mail failing transiently is given up after this


MAX_ESCALATION_AFTER_S = 7 * 86400

# [fleet]: a box's name is a ledger key and shows on pages and in SMS: short, no spaces or markup.
_BOX_NAME = re.compile(r"[A-Za-z0-9._-]{1,63}")
# 1 s at least (tests run fast with it); a real fleet wants several heartbeats per lease.
MIN_LEASE_S, MAX_LEASE_S = 1.0, 3600.0


def box_name_of(hostname: str) -> str:
    """A host name made a valid box name ("pi 4" -> "pi-4", at most 63 characters); "smsgw" if empty."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", hostname)[:63] or "smsgw"


def default_box_name() -> str:
    """This host's name as a box name (the Ansible role names a box after its inventory host)."""
    return box_name_of(socket.gethostname())


@dataclass(frozen=True)
class FleetConfig:
    """[fleet]: this box among several sharing one ledger (appliance/ledger/fleet.py), a
    PostgreSQL server ([store] url) or, on one host, one SQLite file."""

    box: str = field(default_factory=default_box_name)  # unique in the fleet: it holds leases by this name
    # Another box takes over this box's in-flight messages once its lease is this long overdue.
    lease_s: float = 30.0


# A USSD session occupies the radio for seconds and some operators answer balance enquiries by SMS
# (which costs): once a minute is the most a check may run.
MIN_BALANCE_CHECK_S = 60
MAX_BALANCE_REGEX = 200


def _check_ussd(ussd: UssdConfig) -> None:
    from modem.ussd import InvalidUssdCode, check_code  # noqa: PLC0415  (appliance wires modem/)

    try:
        check_code(ussd.balance_code)
    except InvalidUssdCode as exc:
        raise ConfigError(f"ussd.balance_code: {exc} (got {ussd.balance_code!r})") from None
    if len(ussd.balance_regex) > MAX_BALANCE_REGEX:
        raise ConfigError(f"ussd.balance_regex: longer than {MAX_BALANCE_REGEX} characters")
    try:
        pattern = re.compile(ussd.balance_regex)
    except re.error as exc:
        raise ConfigError(f"ussd.balance_regex: not a valid regular expression: {exc}") from None
    if pattern.groups < 1:
        raise ConfigError("ussd.balance_regex: needs a group around the amount, such as ([0-9]+[.,][0-9]{2})")
    if ussd.check_every_s != 0 and not MIN_BALANCE_CHECK_S <= ussd.check_every_s <= 366 * 86400:
        raise ConfigError(
            f"ussd.check_every_s: must be 0 (off) or {MIN_BALANCE_CHECK_S} to {366 * 86400} seconds, "
            f"got {ussd.check_every_s}"
        )
    if not 0 <= ussd.first_check_after_s <= 86400:
        raise ConfigError(
            f"ussd.first_check_after_s: must be 0 to 86400 seconds, got {ussd.first_check_after_s}"
        )
    if not 0 <= ussd.alert_below < float("inf"):
        raise ConfigError(f"ussd.alert_below: must be 0 (never) or a positive amount, got {ussd.alert_below}")


@dataclass(frozen=True)
class Config:
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    modems: tuple[ModemConfig, ...] = (ModemConfig(),)
    api: ApiConfig = field(default_factory=ApiConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    dispatcher: DispatcherConfig = field(default_factory=DispatcherConfig)
    inbound: InboundConfig = field(default_factory=InboundConfig)
    webhooks: tuple[WebhookConfig, ...] = ()
    webhook_policy: WebhookPolicyConfig = field(default_factory=WebhookPolicyConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    web: WebConfig = field(default_factory=WebConfig)
    alertmanager: AlertmanagerConfig = field(default_factory=AlertmanagerConfig)
    ussd: UssdConfig = field(default_factory=UssdConfig)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    escalation: EscalationConfig = field(default_factory=EscalationConfig)
    fleet: FleetConfig = field(default_factory=FleetConfig)
    source: str = "<defaults>"

    @property
    def modem(self) -> ModemConfig:
        return self.modems[0]


_SECTIONS: dict[str, type[Any]] = {
    "gateway": GatewayConfig,
    "modem": ModemConfig,
    "api": ApiConfig,
    "store": StoreConfig,
    "dispatcher": DispatcherConfig,
    "inbound": InboundConfig,
    "watchdog": WatchdogConfig,
    "simulator": SimulatorConfig,
    "web": WebConfig,
    "alertmanager": AlertmanagerConfig,
    "retention": RetentionConfig,
    "ussd": UssdConfig,
    "smtp": SmtpSettings,
    "escalation": EscalationConfig,
    "fleet": FleetConfig,
}
# TOML keys that are Python keywords, and the dataclass field that holds them.
_FIELD_OF = {"from": "from_"}
_ARRAYS: dict[str, type[Any]] = {"modems": ModemConfig, "webhooks": WebhookConfig}


def load(path: str | Path | None = None, *, environ: typing.Mapping[str, str] | None = None) -> Config:
    """Read, merge with the environment, and validate; ConfigError names the key at fault."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{p}: no such file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
        source = str(p)
    _apply_env(raw, env)
    return from_dict(raw, source=source)


def from_dict(raw: dict[str, Any], *, source: str = "<dict>") -> Config:
    """Validate a parsed TOML document."""
    unknown = set(raw) - set(_SECTIONS) - set(_ARRAYS)
    for key in sorted(unknown):
        raise ConfigError(f"unknown section [{key}]{_suggest(key, [*_SECTIONS, *_ARRAYS])}")
    if "modem" in raw and "modems" in raw:
        raise ConfigError("use either [modem] or [[modems]], not both")
    values: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        if name == "modem":
            continue
        section = raw.get(name, {})
        if not isinstance(section, dict):
            raise ConfigError(f"{name}: expected a table [{name}]")
        values[name] = _build(cls, section, name)
    if "modems" in raw:
        items = raw["modems"]
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
            raise ConfigError("modems: expected one or more [[modems]] tables")
        values["modems"] = tuple(_build(ModemConfig, item, f"modems[{i}]") for i, item in enumerate(items))
    else:
        section = raw.get("modem", {})
        if not isinstance(section, dict):
            raise ConfigError("modem: expected a table [modem]")
        values["modems"] = (_build(ModemConfig, section, "modem"),)
    hooks = raw.get("webhooks", [])
    where = "webhooks"
    if isinstance(hooks, dict):
        # `[webhooks]` with `allow` (and targets as [[webhooks.targets]]) instead of [[webhooks]] tables
        hooks = dict(hooks)
        targets = hooks.pop("targets", [])
        values["webhook_policy"] = _build(WebhookPolicyConfig, hooks, "webhooks")
        hooks, where = targets, "webhooks.targets"
    if not isinstance(hooks, list) or not all(isinstance(i, dict) for i in hooks):
        raise ConfigError(f"{where}: expected [[{where}]] tables")
    values["webhooks"] = tuple(_build(WebhookConfig, item, f"{where}[{i}]") for i, item in enumerate(hooks))
    values["inbound"] = _fold_keywords(values["inbound"])
    values["store"] = _check_store_url(values["store"], raw.get("store", {}))
    config = Config(**values, source=source)
    _check(config)
    return config


def _check_store_url(store: StoreConfig, section: dict[str, Any]) -> StoreConfig:
    """`url` (PostgreSQL) or `path` (SQLite), not both; with a URL the box's own files (keys, locks)
    live in `directory`, where `path`'s directory holds them otherwise."""
    if "directory" in section and "url" not in section:
        raise ConfigError("store.directory: only with store.url (the box's files live beside store.path)")
    if "spool" in section and "url" not in section:
        raise ConfigError("store.spool: only with store.url (a SQLite ledger needs no spool)")
    if not store.url:
        return store
    if "path" in section:
        raise ConfigError(
            "store.url: set store.path (SQLite on this box) or store.url (the fleet's PostgreSQL), not both"
        )
    # Never the URL itself in an error: it may hold a password.
    expected = (
        "store.url: expected postgresql://user@host[:port]/database such as postgresql://smsgw@db.lan/smsgw"
    )
    parts = urllib.parse.urlsplit(store.url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"{expected}, got a {parts.scheme[:20]!r} one" if parts.scheme else expected)
    try:
        _ = parts.port  # raises on a port that is no number up to 65535
    except ValueError:
        raise ConfigError(f"{expected}: its port is not a number from 1 to 65535") from None
    database = parts.path.lstrip("/")
    if not parts.hostname:
        raise ConfigError(f"{expected}: it names no host")
    if not database or "/" in database:
        raise ConfigError(f"{expected}: it names no database (one path segment)")
    if not store.directory.startswith("/"):
        raise ConfigError(f"store.directory: expected an absolute path, got {store.directory!r}")
    if store.spool and not store.spool.startswith("/"):
        raise ConfigError(f"store.spool: expected an absolute path, got {store.spool!r}")
    return dataclasses.replace(
        store,
        path=str(Path(store.directory) / "ledger.sqlite3"),
        spool=store.spool or str(Path(store.directory) / "spool.sqlite3"),
    )


def _fold_keywords(inbound: InboundConfig) -> InboundConfig:
    """STOP/START keywords in the matcher's folded form: "Stop" and "STOP" configure the same word."""
    try:
        stop = check_keywords(inbound.stop_keywords, "inbound.stop_keywords")
        start = check_keywords(inbound.start_keywords, "inbound.start_keywords")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    both = sorted(set(stop) & set(start))
    if both:
        raise ConfigError(
            f"inbound.start_keywords: {both[0]!r} is also in inbound.stop_keywords; a word opts out or in, not both"
        )
    return dataclasses.replace(inbound, stop_keywords=stop, start_keywords=start)


def _build(cls: type[Any], section: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    keys = {
        next((k for k, v in _FIELD_OF.items() if v == f.name), f.name): f.name
        for f in dataclasses.fields(cls)
    }
    kwargs: dict[str, Any] = {}
    for key, value in section.items():
        if key not in keys:
            raise ConfigError(f"{where}.{key}: unknown key{_suggest(key, list(keys))}")
        kwargs[keys[key]] = _coerce(value, hints[keys[key]], f"{where}.{key}")
    try:
        return cls(**kwargs)
    except (SmtpConfigError, ThresholdError) as exc:  # sections that validate themselves (naming their key)
        raise ConfigError(str(exc)) from None


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if isinstance(hint, types.UnionType):
        raise ConfigError(f"{key}: unsupported type")  # pragma: no cover  (schema bug)
    raise ConfigError(f"{key}: unsupported type {hint!r}")  # pragma: no cover


def _check(config: Config) -> None:
    """Cross-field and value checks, each naming its key."""
    import phonenumbers  # noqa: PLC0415  (heavy; only needed when a config is loaded)

    region = config.gateway.default_region
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(
            f"gateway.default_region: {region!r} is not a two-letter region code such as 'DE' or 'GB'"
        )
    for i, modem in enumerate(config.modems):
        where = "modem" if len(config.modems) == 1 else f"modems[{i}]"
        if not modem.port:
            raise ConfigError(
                f'{where}.port: must not be empty (a device path, socket://host:port, or "sim")'
            )
        if modem.pin and not re.fullmatch(r"\d{4,8}", modem.pin):
            raise ConfigError(f"{where}.pin: a SIM PIN is 4 to 8 digits")
        if modem.baudrate <= 0:
            raise ConfigError(f"{where}.baudrate: must be positive")
        for name in ("rate_per_minute", "command_timeout_s", "submit_timeout_s", "submit_floor_s"):
            if getattr(modem, name) <= 0:
                raise ConfigError(f"{where}.{name}: must be positive")
        if not 1 <= modem.rate_burst <= MAX_RATE_BURST:
            raise ConfigError(
                f"{where}.rate_burst: must be 1 to {MAX_RATE_BURST} sends (1 = no burst), got {modem.rate_burst}"
            )
    ports = [m.port for m in config.modems if m.port != "sim"]
    if len(set(ports)) != len(ports):
        raise ConfigError("modems: two modems share one port")
    host, sep, port = config.api.listen.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ConfigError(f"api.listen: expected host:port such as 0.0.0.0:8080, got {config.api.listen!r}")
    if not MIN_RESERVE_BYTES <= config.store.reserve_bytes <= MAX_RESERVE_BYTES:
        raise ConfigError(
            f"store.reserve_bytes: must be {MIN_RESERVE_BYTES} (1 MiB) to {MAX_RESERVE_BYTES} (1 GiB), "
            f"got {config.store.reserve_bytes}"
        )
    _check_api(config.api)
    _check_ussd(config.ussd)
    if config.dispatcher.unknown_outcome not in ("resend", "hold"):
        raise ConfigError(
            f'dispatcher.unknown_outcome: expected "resend" or "hold", got {config.dispatcher.unknown_outcome!r}'
        )
    if config.dispatcher.max_attempts < 1:
        raise ConfigError("dispatcher.max_attempts: must be at least 1")
    for name in ("per_recipient_per_minute", "backoff_base_s", "backoff_max_s", "report_timeout_s"):
        if getattr(config.dispatcher, name) <= 0:
            raise ConfigError(f"dispatcher.{name}: must be positive")
    if config.watchdog.alive_at and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", config.watchdog.alive_at):
        raise ConfigError(f"watchdog.alive_at: expected HH:MM, got {config.watchdog.alive_at!r}")
    if config.watchdog.pin and not re.fullmatch(r"[0-9]{6,32}", config.watchdog.pin):
        raise ConfigError(
            "watchdog.pin: must be 6 to 32 digits (on-call replies carry it; a shorter one is guessed)"
        )
    for i, number in enumerate(config.watchdog.oncall):
        if not re.fullmatch(r"\+[1-9]\d{6,14}", number):
            raise ConfigError(
                f"watchdog.oncall[{i}]: {number!r} is not an E.164 number such as +4915112345678"
            )
    _check_escalation(config)
    if not MIN_REPLY_WINDOW_S <= config.inbound.reply_window_s <= MAX_REPLY_WINDOW_S:
        raise ConfigError(
            f"inbound.reply_window_s: must be {MIN_REPLY_WINDOW_S:g} to {MAX_REPLY_WINDOW_S:g} seconds (a year), "
            f"got {config.inbound.reply_window_s:g}"
        )
    _check_message_escalation(config.escalation)
    _check_fleet(config.fleet)
    if not 0 <= config.watchdog.peer_silent_s <= 86400:
        raise ConfigError(
            "watchdog.peer_silent_s: must be 0 (three times fleet.lease_s) to 86400 seconds, "
            f"got {config.watchdog.peer_silent_s:g}"
        )
    if not 1 <= config.alertmanager.max_segments <= 10:
        raise ConfigError("alertmanager.max_segments: must be 1 to 10")
    if config.alertmanager.dedupe_window_s < 0:
        raise ConfigError("alertmanager.dedupe_window_s: must not be negative")
    if config.alertmanager.max_alerts < 1:
        raise ConfigError("alertmanager.max_alerts: must be at least 1")
    if config.alertmanager.template:
        try:
            check_name(config.alertmanager.template, field_name="alertmanager.template")
        except TemplateError as exc:
            raise ConfigError(exc.message) from None
    for name in ("request_timeout_s", "keepalive_timeout_s", "max_connections", "max_connections_per_client"):
        if getattr(config.api, name) <= 0:
            raise ConfigError(f"api.{name}: must be positive")
    if not config.api.max_body_bytes <= config.api.max_batch_bytes <= MAX_BATCH_BYTES:
        raise ConfigError(
            f"api.max_batch_bytes: must be api.max_body_bytes ({config.api.max_body_bytes}) to "
            f"{MAX_BATCH_BYTES} (64 MiB), got {config.api.max_batch_bytes}"
        )
    if not 0 <= config.api.batch_workers <= MAX_BATCH_WORKERS:
        raise ConfigError(
            f"api.batch_workers: must be 0 (batches in the daemon) to {MAX_BATCH_WORKERS}, "
            f"got {config.api.batch_workers}"
        )
    for f in dataclasses.fields(RetentionConfig):
        if getattr(config.retention, f.name) < 0:
            raise ConfigError(f"retention.{f.name}: must not be negative (0 = never)")
    for i, cidr in enumerate(config.webhook_policy.allow):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(
                f"webhooks.allow[{i}]: {cidr!r} is not an address or CIDR such as 127.0.0.1/32 or fd00::/8"
            ) from None
    for i, hook in enumerate(config.webhooks):
        if not re.match(r"^https?://", hook.url):
            raise ConfigError(f"webhooks[{i}].url: expected an http:// or https:// URL, got {hook.url!r}")


def _check_fleet(fleet: FleetConfig) -> None:
    """[fleet] box is a short name, lease_s a sane interval ([store] url is checked by _check_store_url)."""
    if not _BOX_NAME.fullmatch(fleet.box):
        raise ConfigError(f"fleet.box: must be 1 to 63 letters, digits, '.', '_' or '-', got {fleet.box!r}")
    if not MIN_LEASE_S <= fleet.lease_s <= MAX_LEASE_S:
        raise ConfigError(
            f"fleet.lease_s: must be {MIN_LEASE_S:g} to {MAX_LEASE_S:g} seconds, got {fleet.lease_s:g}"
        )


def _check_escalation(config: Config) -> None:
    """[watchdog] escalate_* keys: a non-negative interval, mailto: targets, and an [smtp] to reach them."""
    wd = config.watchdog
    if wd.escalate_after_s < 0:
        raise ConfigError("watchdog.escalate_after_s: must not be negative (0 = all on-call numbers at once)")
    for i, target in enumerate(wd.escalate_email):
        try:
            mailto_address(target)
        except ValueError as exc:
            raise ConfigError(f"watchdog.escalate_email[{i}]: {exc}") from None
    if wd.escalate_email and not config.smtp.enabled:
        raise ConfigError("watchdog.escalate_email: needs [smtp] host (the mail server to send through)")


def _check_message_escalation(esc: EscalationConfig) -> None:
    """[escalation]: a wait no shorter than a second, no longer than a chain may wait."""
    if not 1 <= esc.min_after_s <= MAX_ESCALATION_AFTER_S:
        raise ConfigError(
            f"escalation.min_after_s: must be 1 to {MAX_ESCALATION_AFTER_S} seconds, got {esc.min_after_s}"
        )
    if not 60 <= esc.mail_retry_max_s <= MAX_ESCALATION_AFTER_S:
        raise ConfigError(
            f"escalation.mail_retry_max_s: must be 60 to {MAX_ESCALATION_AFTER_S} seconds, got {esc.mail_retry_max_s:g}"
        )


_HOST_NAME = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?")


def _check_api(api: ApiConfig) -> None:
    """[api] allowed_hosts entries are host names or addresses; TLS files exist and can be read."""
    import ipaddress  # noqa: PLC0415

    for i, host in enumerate(api.allowed_hosts):
        if host == "*":
            continue
        try:
            ipaddress.ip_address(host.strip("[]"))
            continue
        except ValueError:
            pass
        if not _HOST_NAME.fullmatch(host.lower()):
            raise ConfigError(
                f"api.allowed_hosts[{i}]: {host!r} is not a host name or address "
                '(no scheme, port or path; "*.example.lan" allows its subdomains, "*" any)'
            )
    if bool(api.tls_cert) != bool(api.tls_key):
        raise ConfigError("api.tls_cert and api.tls_key: set both (HTTPS) or neither (plain HTTP)")
    for name in ("tls_cert", "tls_key"):
        path = getattr(api, name)
        if not path:
            continue
        try:
            with open(path, "rb") as fh:  # noqa: PTH123  (a readability check, nothing kept)
                head = fh.read(4096)
        except OSError as exc:
            raise ConfigError(f"api.{name}: cannot read {path}: {exc.strerror}") from None
        if b"-----BEGIN " not in head:
            raise ConfigError(f"api.{name}: {path} is not a PEM file (no -----BEGIN line)")


def _apply_env(raw: dict[str, Any], env: typing.Mapping[str, str]) -> None:
    """SMSGW_<SECTION>__<KEY>=value overrides [section] key (scalars; parsed as TOML values)."""
    for name, text in env.items():
        m = re.fullmatch(r"SMSGW_([A-Z]+)__([A-Z0-9_]+)", name)
        if not m:
            continue
        section, key = m.group(1).lower(), m.group(2).lower()
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text  # bare strings need no quotes in the environment
        cls = _SECTIONS.get(section)
        if cls is not None and typing.get_type_hints(cls).get(key) is str and not isinstance(value, str):
            value = text  # a string key keeps the text as written: SMSGW_MODEM__PIN=1234 is "1234"
        if section == "modem" and "modems" in raw:
            raise ConfigError(f"{name}: the file uses [[modems]]; override those in the file")
        table = raw.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{name}: [{section}] is not a table")
        table[key] = value


def _suggest(key: str, options: list[str]) -> str:
    close = difflib.get_close_matches(key, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
