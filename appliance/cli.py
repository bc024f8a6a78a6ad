"""The `smsgw` command: one console script, one verb per job."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from importlib import metadata
from typing import Any

VALID_SCOPES = ("send", "read", "admin")


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

    keys = sub.add_parser("keys", help="API keys: create, list, revoke")
    keys_sub = keys.add_subparsers(dest="keys_verb", required=True, metavar="ACTION")
    create = keys_sub.add_parser("create", help="create a key; prints only the key, once")
    _add_config(create)
    create.add_argument("--name", required=True)
    create.add_argument("--scope", default="send,read", help="comma-separated: send, read, admin")
    lst = keys_sub.add_parser("list", help="list keys (never the keys themselves)")
    _add_config(lst)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id, name or prefix")
    _add_config(revoke)
    revoke.add_argument("key", help="id, name or prefix (sgw_...)")

    send = sub.add_parser("send", help="send an SMS through the gateway's API")
    _add_config(send)
    send.add_argument("to")
    send.add_argument("text")
    send.add_argument("--key", default=os.environ.get("SMSGW_API_KEY", ""), help="API key (or SMSGW_API_KEY)")
    send.add_argument("--url", help="gateway base URL (default from api.listen)")
    send.add_argument("--wait", action="store_true", help="wait until the message reaches a final state")

    status = sub.add_parser("status", help="the gateway's status, through its API")
    _add_config(status)
    status.add_argument(
        "--key", default=os.environ.get("SMSGW_API_KEY", ""), help="API key (or SMSGW_API_KEY)"
    )
    status.add_argument("--url", help="gateway base URL (default from api.listen)")
    status.add_argument("--json", action="store_true", help="print the raw document")

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_verb", required=True, metavar="TOOL")
    check = config_sub.add_parser("check", help="validate a config file without starting anything")
    check.add_argument("path", nargs="?", help="TOML file (default: --config or /etc/smsgw/smsgw.toml)")
    _add_config(check)
    return parser


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
        level=logging.DEBUG if args.verbose else logging.WARNING if args.verb != "serve" else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.verb == "simulate":
        from modem.simulator.__main__ import main as simulate  # noqa: PLC0415  (load only what the verb needs)

        return simulate(extra)
    if args.verb == "modem" and args.modem_verb == "probe":
        from modem.probe import main as probe  # noqa: PLC0415

        return probe(args.port, baudrate=args.baudrate)
    if args.verb == "serve":
        from appliance.daemon import serve  # noqa: PLC0415

        return serve(_load_config(args.config))
    if args.verb == "watchdog":
        from watchdog.__main__ import main as watchdog  # noqa: PLC0415

        return watchdog(_watchdog_settings(_load_config(args.config)))
    if args.verb == "config":
        config = _load_config(args.path or args.config)
        print(
            f"{config.source}: ok ({len(config.modems)} modem(s), ledger {config.store.path}, API {config.api.listen})"
        )
        return 0
    if args.verb == "keys":
        return asyncio.run(_keys(args))
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
        primary_port=config.modem.port,
        baudrate=config.modem.baudrate,
        sim_pin=config.modem.pin,
        command_timeout_s=config.modem.command_timeout_s,
        submit_timeout_s=config.modem.submit_timeout_s or 30.0,
        healthz_url=healthz,
        readyz_url=healthz.rsplit("/", 1)[0] + "/readyz",
    )


async def _keys(args: argparse.Namespace) -> int:
    from appliance.store import Store  # noqa: PLC0415

    config = _load_config(args.config)
    store = Store(config.store.path)
    await store.open()
    try:
        if args.keys_verb == "create":
            scopes = [s.strip() for s in args.scope.split(",") if s.strip()]
            bad = [s for s in scopes if s not in VALID_SCOPES]
            if bad or not scopes:
                print(
                    f"smsgw: unknown scope {', '.join(bad) or '(none)'}; use {', '.join(VALID_SCOPES)}",
                    file=sys.stderr,
                )
                return 2
            _rec, plaintext = await store.create_key(args.name, scopes)
            print(plaintext)
        elif args.keys_verb == "list":
            for key in await store.list_keys():
                state = "revoked" if key.revoked_at else "active"
                print(f"{key.id}\t{key.name}\t{key.prefix}…\t{','.join(sorted(key.scopes))}\t{state}")
        elif args.keys_verb == "revoke":
            rec = await store.revoke_key(args.key)
            if rec is None:
                print(f"smsgw: no active key {args.key!r}", file=sys.stderr)
                return 1
            print(f"revoked {rec.id} {rec.name}")
    finally:
        await store.close()
    return 0


def _base_url(config: Any, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    host, _, port = config.api.listen.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]", ""):  # noqa: S104  (a wildcard bind is reached on loopback)
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def _api_call(args: argparse.Namespace) -> int:
    import httpx  # noqa: PLC0415

    config = _load_config(args.config)
    if not args.key:
        print(
            "smsgw: an API key is needed: --key or SMSGW_API_KEY (create one: smsgw keys create --name me)",
            file=sys.stderr,
        )
        return 2
    base = _base_url(config, args.url)
    headers = {"Authorization": f"Bearer {args.key}"}
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
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
    verdict = doc.get("verdict", {})
    print(f"{doc['gateway']['name']}: {verdict.get('state', '?').upper()}")
    for reason in verdict.get("reasons", []):
        print(f"  - {reason}")
    for m in doc.get("modems", []):
        sig = m.get("signal") or {}
        reg = m.get("registration") or {}
        print(
            f"modem {m['name']}: {m['state']}, {m.get('manufacturer', '')} {m.get('model', '')}, "
            f"{m.get('operator') or 'no operator'} ({reg.get('text', '?')}), signal {sig.get('dbm', '?')} dBm"
        )
    q = doc.get("queue", {})
    print(
        f"queue: {q.get('depth', '?')} waiting, oldest {q.get('oldest_age_s') or 0:.0f} s; by status {q.get('by_status')}"
    )


if __name__ == "__main__":
    sys.exit(main())
