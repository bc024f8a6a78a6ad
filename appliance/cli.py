"""The `smsgw` command: one console script, one verb per job."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

VALID_SCOPES = ("send", "read", "read_all", "admin")
PRIORITIES = ("high", "normal", "bulk")
KEY_ENV = "SMSGW_API_KEY"
# An imported key is hashed with plain SHA-256 like ours: it must be long and random enough.
MIN_IMPORT_CHARS = 32
_KEEP: Any = object()  # a limit not given on the command line: left as it is (update), unlimited (create)
# Long-running verbs log their normal events (INFO); one-shot tools only what needs a look.
_DAEMONS = ("serve", "watchdog", "simulate")
_KEY_CHARS = re.compile(r"[A-Za-z0-9._~+/=-]+")  # RFC 6750 b64token: usable as a Bearer token


def _version() -> str:
    try:
        return metadata.version("smsgw")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        help="TOML file (default /etc/smsgw/smsgw.toml when it exists, else built-in defaults)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smsgw", description="SMS gateway appliance")
    parser.add_argument("--version", action="version", version=f"smsgw {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail (AT traffic)")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    serve = sub.add_parser("serve", help="run the gateway daemon (HTTP API, dispatcher, modem)")
    _add_config(serve)

    # Its options belong to the simulator's own parser (smsgw simulate --help).
    watchdog = sub.add_parser("watchdog", help="run the independent watchdog (texts on-call over the modem)")
    _add_config(watchdog)
    sub.add_parser("simulate", help="run the simulated modem standalone (demo, reproduction)", add_help=False)

    modem = sub.add_parser("modem", help="modem tools")
    modem_sub = modem.add_subparsers(dest="modem_verb", required=True, metavar="TOOL")
    probe = modem_sub.add_parser(
        "probe", help="check a modem port: identity, SIM, network, signal, SMS support"
    )
    probe.add_argument("port", help="device path (/dev/gsmmodem), socket://host:port")
    probe.add_argument("--baudrate", type=int, default=115200)

    keys = sub.add_parser("keys", help="API keys: create, import, update, list, revoke")
    keys_sub = keys.add_subparsers(dest="keys_verb", required=True, metavar="ACTION")
    create = keys_sub.add_parser("create", help="create a key; prints only the key, once")
    _add_config(create)
    create.add_argument("--name", required=True)
    create.add_argument("--scope", default="send,read", help="comma-separated: " + ", ".join(VALID_SCOPES))
    _add_limits(create)
    imp = keys_sub.add_parser(
        "import",
        help="store a key kept elsewhere (a vault), hashed; read from --file or stdin; idempotent; "
        "never narrows the scopes of a key already here",
    )
    _add_config(imp)
    imp.add_argument("--name", required=True)
    imp.add_argument("--scope", default="send,read", help="comma-separated: " + ", ".join(VALID_SCOPES))
    imp.add_argument("--file", help="file holding the key (default: stdin)")
    _add_limits(imp)
    update = keys_sub.add_parser(
        "update", help="change a key's scopes, quotas, highest priority or send window"
    )
    _add_config(update)
    update.add_argument("key", help="id, name or prefix (sgw_...)")
    update.add_argument("--scope", help="comma-separated: " + ", ".join(VALID_SCOPES))
    _add_limits(update)
    lst = keys_sub.add_parser("list", help="list keys (never the keys themselves)")
    _add_config(lst)
    lst.add_argument("--long", "-l", action="store_true", help="also each key's quotas and highest priority")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id, name or prefix")
    _add_config(revoke)
    revoke.add_argument("key", help="id, name or prefix (sgw_...)")

    templates = sub.add_parser("templates", help="message templates: list, show, put, delete (on the ledger)")
    templates_sub = templates.add_subparsers(dest="templates_verb", required=True, metavar="ACTION")
    t_verbs = {
        "list": "name, version, allowed keys of every template",
        "show": "a template's latest version, as the API shows it (JSON)",
        "put": "create a template or write its next version (every field replaced)",
        "delete": "delete a template (messages keep name and version)",
    }
    for verb, about in t_verbs.items():
        t_verb = templates_sub.add_parser(verb, help=about)
        _add_config(t_verb)
        if verb != "list":
            t_verb.add_argument("name")
        if verb == "put":
            t_verb.add_argument("--body", help="the template text (Jinja2 subset); or --file")
            t_verb.add_argument("--file", help="file holding the template text ('-': stdin)")
            t_verb.add_argument(
                "--allowed-keys", help="comma-separated API key names that may use it (default: any)"
            )

    send = sub.add_parser("send", help="send an SMS through the gateway's API")
    _add_config(send)
    send.add_argument("to")
    send.add_argument("text")
    _add_key_source(send)
    send.add_argument("--url", help="gateway base URL (default from api.listen)")
    send.add_argument("--wait", action="store_true", help="wait until the message reaches a final state")

    status = sub.add_parser("status", help="the gateway's status, through its API")
    _add_config(status)
    _add_key_source(status)
    status.add_argument("--url", help="gateway base URL (default from api.listen)")
    status.add_argument("--json", action="store_true", help="print the /api/v1/status document (for scripts)")

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_verb", required=True, metavar="TOOL")
    check = config_sub.add_parser("check", help="validate a config file without starting anything")
    check.add_argument("path", nargs="?", help="TOML file (default: --config or /etc/smsgw/smsgw.toml)")
    _add_config(check)
    return parser


def _add_limits(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--per-hour", type=_limit, default=_KEEP, help="messages per hour (a whole number, or 'unlimited')"
    )
    p.add_argument(
        "--per-day", type=_limit, default=_KEEP, help="messages per 24 hours (a whole number, or 'unlimited')"
    )
    p.add_argument(
        "--max-priority",
        choices=(*PRIORITIES, "unlimited"),
        help="the highest priority the key may use (high > normal > bulk)",
    )
    p.add_argument(
        "--window",
        type=_window,
        default=_KEEP,
        help="default send window of the key's messages, e.g. 'mon-fri 08:00-20:00 Europe/Berlin' "
        "('none': no window); a message outside it waits as scheduled",
    )
    p.add_argument(
        "--window-bypass-high",
        action=argparse.BooleanOptionalAction,
        help="the key's priority high messages go out at once, outside its (and a template's) window",
    )


def _add_key_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key-file", help=f"file holding the API key (or set {KEY_ENV})")
    # Refused, never used: a key on the command line is visible to every user in the process list.
    p.add_argument("--key", help=argparse.SUPPRESS)


def _limit(text: str) -> int | None:
    if text.strip().lower() in ("unlimited", "none"):
        return None
    if not re.fullmatch(r"[0-9]{1,9}", text.strip()):
        raise argparse.ArgumentTypeError(f"expected a whole number or 'unlimited', got {text!r}")
    return int(text)


def _window(text: str) -> dict[str, str] | None:
    """--window: 'DAYS HH:MM-HH:MM ZONE' checked like the API checks a window; 'none' clears it."""
    from appliance.windows import WindowError, parse_window_text  # noqa: PLC0415  (keep `--help` fast)

    if text.strip().lower() == "none":
        return None
    try:
        return parse_window_text(text, field="window").to_json()
    except WindowError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _config_hint(args: argparse.Namespace) -> str:
    """The config path to print in a hint: the one given, else where a box keeps it."""
    return str(args.config or "/etc/smsgw/smsgw.toml")


def _load_config(path: str | None) -> Any:
    from appliance.config import DEFAULT_PATH, ConfigError, load  # noqa: PLC0415  (keep `--help` fast)

    if path is None and DEFAULT_PATH.exists():
        path = str(DEFAULT_PATH)
    try:
        return load(path)
    except ConfigError as exc:
        print(f"smsgw: config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "simulate" in argv:
        # Everything after the verb belongs to the simulator's own parser.
        cut = argv.index("simulate") + 1
        argv, extra = argv[:cut], argv[cut:]
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO if args.verb in _DAEMONS else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.verb == "simulate":
        from modem.simulator.__main__ import main as simulate  # noqa: PLC0415  (load only what the verb needs)

        return simulate(extra, prog="smsgw simulate")
    if args.verb == "modem" and args.modem_verb == "probe":
        from modem.probe import main as probe  # noqa: PLC0415

        return probe(args.port, baudrate=args.baudrate)
    if args.verb == "serve":
        from appliance.daemon import serve  # noqa: PLC0415

        return serve(_load_config(args.config))
    if args.verb == "watchdog":
        from watchdog.__main__ import main as watchdog  # noqa: PLC0415

        if not args.verbose:  # its own port's routine modem events belong to the daemon's log, not here
            logging.getLogger("modem").setLevel(logging.WARNING)

        return watchdog(_watchdog_settings(_load_config(args.config)))
    if args.verb == "config":
        config = _load_config(args.path or args.config)
        print(
            f"{config.source}: ok ({len(config.modems)} modem(s), ledger {config.store.path}, API {config.api.listen})"
        )
        return 0
    if args.verb == "keys":
        return asyncio.run(_keys(args))
    if args.verb == "templates":
        return asyncio.run(_templates(args))
    if args.verb in ("send", "status"):
        return _api_call(args)
    return 2


def _watchdog_settings(config: Any) -> Any:
    """The watchdog's own settings from the config (watchdog/ never imports appliance/)."""
    import dataclasses  # noqa: PLC0415

    from watchdog.settings import Settings  # noqa: PLC0415

    wd = config.watchdog
    scheme = "https" if config.api.tls_cert else "http"
    base = f"{scheme}://{config.api.listen.replace('0.0.0.0', '127.0.0.1')}"  # noqa: S104  (a wildcard is reached locally)
    own = {f.name for f in dataclasses.fields(Settings)}
    values = {k: v for k, v in dataclasses.asdict(wd).items() if k in own and k != "healthz_url"}
    healthz = wd.healthz_url or f"{base}/healthz"
    return Settings(
        **values,
        ledger_path=config.store.path,
        box_name=config.gateway.name,
        default_region=config.gateway.default_region,
        primary_port=config.modem.port,
        baudrate=config.modem.baudrate,
        sim_pin=config.modem.pin,
        command_timeout_s=config.modem.command_timeout_s,
        submit_timeout_s=config.modem.submit_timeout_s or 30.0,
        healthz_url=healthz,
        readyz_url=healthz.rsplit("/", 1)[0] + "/readyz",
        smtp=config.smtp,
        balance_floor=config.ussd.alert_below,
    )


async def _keys(args: argparse.Namespace) -> int:
    from appliance.ledger import Actor, KeyConflict, KeyLimits, Store  # noqa: PLC0415

    scopes: list[str] | None = None
    if getattr(args, "scope", None) is not None:
        scopes = [s.strip() for s in args.scope.split(",") if s.strip()]
        bad = [s for s in scopes if s not in VALID_SCOPES]
        if bad or not scopes:
            print(
                f"smsgw: unknown scope {', '.join(bad) or '(none)'}; use {', '.join(VALID_SCOPES)}",
                file=sys.stderr,
            )
            return 2
    plaintext = ""
    if args.keys_verb == "import":
        plaintext = _read_import(args.file)
        if not plaintext:
            return 2
    config = _load_config(args.config)
    actor = Actor("cli", "local")
    store = Store(config.store.path, reserve_bytes=config.store.reserve_bytes)
    await store.open()
    try:
        if args.keys_verb == "create":
            _rec, plaintext = await store.create_key(
                args.name, scopes or [], limits=_limits(args, KeyLimits), actor=actor
            )
            print(plaintext)
        elif args.keys_verb == "import":
            try:
                rec, created = await store.import_key(
                    plaintext, args.name, scopes or [], limits=_limits(args, KeyLimits), actor=actor
                )
            except KeyConflict as exc:
                print(f"smsgw: {exc}", file=sys.stderr)
                return 1
            print(f"{'imported' if created else 'already imported, updated'} {rec.id} {rec.name}")
            kept = sorted(set(rec.scopes) - set(scopes or rec.scopes))
            if kept:  # an import never narrows a key (the Ansible role shows this line)
                print(
                    f"kept scopes not in the import: {','.join(kept)} "
                    f"(narrow them with `smsgw keys update --config {_config_hint(args)} {rec.id} --scope ...`)"
                )
        elif args.keys_verb == "update":
            changes = _limit_changes(args)
            if scopes is None and not changes:
                print(
                    "smsgw: nothing to change: give --scope, --per-hour, --per-day, --max-priority, "
                    "--window or --window-bypass-high",
                    file=sys.stderr,
                )
                return 2
            updated = await store.update_key(args.key, scopes=scopes, changes=changes, actor=actor)
            if updated is None:
                print(f"smsgw: no active key {args.key!r}", file=sys.stderr)
                return 1
            print(f"updated {updated.id} {updated.name}: {_describe(updated)}")
        elif args.keys_verb == "list":
            for key in await store.list_keys():
                state = "revoked" if key.revoked_at else "active"
                # Tab-separated, the state last: scripts (the Ansible role) parse these lines.
                line = f"{key.id}\t{key.name}\t{key.prefix}…\t{','.join(sorted(key.scopes))}"
                if args.long:
                    line += f"\t{KeyLimits.of(key).describe()}"
                print(f"{line}\t{state}")
        elif args.keys_verb == "revoke":
            revoked = await store.revoke_key(args.key, actor=actor)
            if revoked is None:
                print(f"smsgw: no active key {args.key!r}", file=sys.stderr)
                return 1
            print(f"revoked {revoked.id} {revoked.name}")
    finally:
        await store.close()
    return 0


async def _templates(args: argparse.Namespace) -> int:
    """`smsgw templates ...` on the ledger directly, as `keys` (audited as `cli`)."""
    from appliance.ledger import Store  # noqa: PLC0415

    draft = _template_draft(args) if args.templates_verb == "put" else None
    if isinstance(draft, int):
        return draft
    config = _load_config(args.config)
    ledger = Store(config.store.path, reserve_bytes=config.store.reserve_bytes)
    await ledger.open()
    try:
        return await _template_verb(ledger, args.templates_verb, args.name if "name" in args else "", draft)
    finally:
        await ledger.close()


def _template_draft(args: argparse.Namespace) -> Any:
    """`templates put`: the checked TemplateDraft, or the exit code after saying what is wrong."""
    from appliance.sms_templates import TemplateError, parse_template_doc  # noqa: PLC0415

    if (args.body is None) == (args.file is None):
        print("smsgw: give the template text with --body or --file", file=sys.stderr)
        return 2
    doc: dict[str, Any] = {"body": args.body}
    if args.allowed_keys is not None:
        doc["allowed_keys"] = [k.strip() for k in args.allowed_keys.split(",") if k.strip()]
    try:
        if args.file is not None:
            doc["body"] = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
        return parse_template_doc(doc, name=args.name)
    except (OSError, UnicodeError) as exc:
        print(f"smsgw: cannot read {args.file}: {exc}", file=sys.stderr)
    except TemplateError as exc:
        print(f"smsgw: {exc.message}", file=sys.stderr)
    return 2


async def _template_verb(ledger: Any, verb: str, name: str, draft: Any) -> int:
    from appliance.ledger import Actor, Conflict, NotFound  # noqa: PLC0415
    from appliance.sms_templates import TemplateError  # noqa: PLC0415

    if verb == "list":
        for record in await ledger.list_templates():
            allowed = "any" if record.allowed_keys is None else ",".join(record.allowed_keys) or "admin"
            print(f"{record.name}\tv{record.version}\t{allowed}")
        return 0
    try:
        if verb == "show":
            shown = await ledger.template(name)
            if shown is not None:
                print(json.dumps(shown.to_json(), indent=2, ensure_ascii=False))
                return 0
        elif verb == "put":
            record, _created = await ledger.save_template(
                draft, create_only=False, actor=Actor("cli", "local")
            )
            print(f"{record.name} v{record.version}")
            return 0
        else:
            gone = await ledger.delete_template(name, actor=Actor("cli", "local"))
            print(f"deleted {gone.name} (was v{gone.version})")
            return 0
    except NotFound:
        pass
    except (TemplateError, Conflict) as exc:
        print(f"smsgw: {exc}", file=sys.stderr)
        return 1
    print(f"smsgw: no template {name!r}", file=sys.stderr)
    return 1


def _priority(name: str | None) -> Any:
    from appliance.states import Priority  # noqa: PLC0415

    return None if name in (None, "unlimited") else Priority[str(name).upper()]


def _limits(args: argparse.Namespace, cls: Any) -> Any:
    def given(value: Any) -> Any:
        return None if value is _KEEP else value

    return cls(
        given(args.per_hour),
        given(args.per_day),
        _priority(args.max_priority),
        window=given(args.window),
        window_bypass_high=bool(args.window_bypass_high),
    )


def _limit_changes(args: argparse.Namespace) -> dict[str, int | str | None]:
    """Only the limits given on the command line ('unlimited' clears one, a --window of 'none' too)."""
    changes: dict[str, int | str | None] = {}
    for column in ("per_hour", "per_day"):
        if getattr(args, column) is not _KEEP:
            changes[column] = getattr(args, column)
    if args.max_priority is not None:
        top = _priority(args.max_priority)
        changes["max_priority"] = None if top is None else int(top)
    if args.window is not _KEEP:
        changes["send_window"] = None if args.window is None else json.dumps(args.window, sort_keys=True)
    if args.window_bypass_high is not None:
        changes["window_bypass_high"] = int(args.window_bypass_high)
    return changes


def _describe(key: Any) -> str:
    from appliance.ledger import KeyLimits  # noqa: PLC0415

    return f"{','.join(sorted(key.scopes))}; {KeyLimits.of(key).describe()}"


def _read_import(path: str | None) -> str:
    """The key to import from a file or stdin (never argv), checked; "" after saying what is wrong."""
    try:
        if path:
            with Path(path).open(encoding="utf-8") as fh:
                text = fh.read(4096)
        else:
            text = sys.stdin.read(4096)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"smsgw: cannot read the key: {exc}", file=sys.stderr)
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        print("smsgw: expected exactly one key (one line) to import", file=sys.stderr)
        return ""
    key = lines[0]
    if len(key) < MIN_IMPORT_CHARS or len(key) > 256 or not _KEY_CHARS.fullmatch(key):
        print(
            f"smsgw: the key to import must be {MIN_IMPORT_CHARS} to 256 characters of "
            "A-Z a-z 0-9 . _ ~ + / = - (random, as a vault generates it)",
            file=sys.stderr,
        )
        return ""
    return key


def _api_key(args: argparse.Namespace) -> str:
    """The API key from --key-file or SMSGW_API_KEY; "" after saying what to do."""
    if args.key is not None:
        print(
            "smsgw: --key is refused: a key on the command line is visible to every user in the process "
            f"list. Put it in a file readable only by you and pass --key-file FILE, or set {KEY_ENV}",
            file=sys.stderr,
        )
        return ""
    if args.key_file:
        try:
            with Path(args.key_file).open(encoding="utf-8") as fh:
                key = fh.read(4096).strip()
        except (OSError, UnicodeDecodeError) as exc:
            print(f"smsgw: cannot read --key-file: {exc}", file=sys.stderr)
            return ""
        if not key:
            print(f"smsgw: --key-file {args.key_file} is empty", file=sys.stderr)
        return key
    key = os.environ.get(KEY_ENV, "").strip()
    if not key:
        print(
            f"smsgw: an API key is needed: --key-file FILE or {KEY_ENV}. Create one on the gateway with: "
            f"smsgw keys create --config {_config_hint(args)} --name me --scope send,read > FILE",
            file=sys.stderr,
        )
    return key


def _base_url(config: Any, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    host, _, port = config.api.listen.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]", ""):  # noqa: S104  (a wildcard bind is reached on loopback)
        host = "127.0.0.1"
    scheme = "https" if config.api.tls_cert else "http"
    return f"{scheme}://{host}:{port}"


def _verify(config: Any, base: str) -> Any:
    """How the CLI checks the gateway's certificate (httpx `verify`)."""
    import ssl  # noqa: PLC0415
    import urllib.parse  # noqa: PLC0415

    if urllib.parse.urlsplit(base).hostname in ("127.0.0.1", "::1", "localhost"):
        # As the watchdog's probe: the box's own daemon over loopback, nothing on the path to
        # verify, and its certificate names the box, not 127.0.0.1.
        return False
    if config.api.tls_cert:
        # Usually self-signed: the configured certificate is the CA that vouches for the gateway.
        return ssl.create_default_context(cafile=config.api.tls_cert)
    return True


def _api_call(args: argparse.Namespace) -> int:
    import httpx  # noqa: PLC0415

    key = _api_key(args)
    if not key:
        return 2
    config = _load_config(args.config)
    base = _base_url(config, args.url)
    headers = {"Authorization": f"Bearer {key}"}
    try:
        verify = _verify(config, base)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        print(
            f"smsgw: cannot use api.tls_cert {config.api.tls_cert} to verify the gateway: {exc}",
            file=sys.stderr,
        )
        return 2
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=10, verify=verify) as client:
            if args.verb == "send":
                r = client.post("/api/v1/messages", json={"to": args.to, "body": args.text})
                doc = r.json()
                if r.status_code >= 400:
                    print(f"smsgw: {doc['error']['code']}: {doc['error']['message']}", file=sys.stderr)
                    return 1
                print(f"{doc['id']}\t{doc['status']}\t{doc['to']}\t{doc['segments']} segment(s)")
                if args.wait:
                    return _wait_final(client, doc["id"])
                return 0
            r = client.get("/api/v1/status")
            doc = r.json()
            if r.status_code >= 400:
                print(f"smsgw: {doc['error']['code']}: {doc['error']['message']}", file=sys.stderr)
                return 1
    except httpx.HTTPError as exc:
        print(f"smsgw: cannot reach the gateway at {base}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        _print_status(doc)
    return 0 if doc.get("verdict", {}).get("state") == "healthy" else 1


def _wait_final(client: Any, msg_id: str) -> int:
    import time  # noqa: PLC0415

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        doc = client.get(f"/api/v1/messages/{msg_id}").json()
        if doc["status"] in ("delivered", "undelivered", "failed", "canceled"):
            print(f"{doc['id']}\t{doc['status']}")
            return 0 if doc["status"] == "delivered" else 1
        time.sleep(1)
    print(f"{msg_id}\tstill {doc['status']} after 300 s")
    return 1


def _print_status(doc: dict[str, Any]) -> None:
    from appliance.statustext import render  # noqa: PLC0415

    print(render(doc))


if __name__ == "__main__":
    sys.exit(main())
