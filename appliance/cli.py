"""The `smsgw` command: one console script, one verb per job."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from appliance import cli_keys

KEY_ENV = "SMSGW_API_KEY"
# Long-running verbs log their normal events (INFO); one-shot tools only what needs a look.
_DAEMONS = ("serve", "watchdog", "simulate")


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

    cli_keys.add_parser(sub, _add_config)

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


def _add_key_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key-file", help=f"file holding the API key (or set {KEY_ENV})")
    # Refused, never used: a key on the command line is visible to every user in the process list.
    p.add_argument("--key", help=argparse.SUPPRESS)


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
            f"{config.source}: ok ({len(config.modems)} modem(s), ledger {config.store.shown}, API {config.api.listen})"
        )
        return 0
    if args.verb == "keys":
        return asyncio.run(cli_keys.run(args, load_config=_load_config, config_hint=_config_hint(args)))
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
    values = {
        k: v
        for k, v in dataclasses.asdict(wd).items()
        if k in own and k not in ("healthz_url", "peer_silent_s")
    }
    healthz = wd.healthz_url or f"{base}/healthz"
    return Settings(
        **values,
        ledger_path=config.store.path,
        ledger_url=config.store.url,
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
        box=config.fleet.box,
        peer_silent_s=wd.peer_silent_s or 3.0 * config.fleet.lease_s,
    )


async def _templates(args: argparse.Namespace) -> int:
    """`smsgw templates ...` on the ledger directly, as `keys` (audited as `cli`)."""
    from appliance.ledger import Store  # noqa: PLC0415

    draft = _template_draft(args) if args.templates_verb == "put" else None
    if isinstance(draft, int):
        return draft
    config = _load_config(args.config)
    ledger = Store(config.store.ledger, reserve_bytes=config.store.reserve_bytes)
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
