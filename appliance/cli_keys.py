"""`smsgw keys ...`: create, import, update, list and revoke API keys on the ledger directly.

appliance/cli.py builds the `smsgw` parser and calls `add_parser` and `run` for the `keys` verb.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

VALID_SCOPES = ("send", "read", "read_all", "admin")
PRIORITIES = ("high", "normal", "bulk")
# An imported key is hashed with plain SHA-256 like ours: it must be long and random enough.
MIN_IMPORT_CHARS = 32
_KEEP: Any = object()  # a limit not given on the command line: left as it is (update), unlimited (create)
_KEY_CHARS = re.compile(r"[A-Za-z0-9._~+/=-]+")  # RFC 6750 b64token: usable as a Bearer token


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_config: Callable[[argparse.ArgumentParser], None],
) -> None:
    """The `keys` verb and its actions, on the `smsgw` parser's subparsers."""
    keys = sub.add_parser("keys", help="API keys: create, import, update, list, revoke")
    keys_sub = keys.add_subparsers(dest="keys_verb", required=True, metavar="ACTION")
    create = keys_sub.add_parser("create", help="create a key; prints only the key, once")
    add_config(create)
    create.add_argument("--name", required=True)
    create.add_argument("--scope", default="send,read", help="comma-separated: " + ", ".join(VALID_SCOPES))
    _add_limits(create)
    imp = keys_sub.add_parser(
        "import",
        help="store a key kept elsewhere (a vault), hashed; read from --file or stdin; idempotent; "
        "never narrows the scopes of a key already here",
    )
    add_config(imp)
    imp.add_argument("--name", required=True)
    imp.add_argument("--scope", default="send,read", help="comma-separated: " + ", ".join(VALID_SCOPES))
    imp.add_argument("--file", help="file holding the key (default: stdin)")
    _add_limits(imp)
    update = keys_sub.add_parser(
        "update", help="change a key's scopes, quotas, highest priority or send window"
    )
    add_config(update)
    update.add_argument("key", help="id, name or prefix (sgw_...)")
    update.add_argument("--scope", help="comma-separated: " + ", ".join(VALID_SCOPES))
    _add_limits(update)
    lst = keys_sub.add_parser("list", help="list keys (never the keys themselves)")
    add_config(lst)
    lst.add_argument("--long", "-l", action="store_true", help="also each key's quotas and highest priority")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id, name or prefix")
    add_config(revoke)
    revoke.add_argument("key", help="id, name or prefix (sgw_...)")


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


async def run(args: argparse.Namespace, *, load_config: Callable[[str | None], Any], config_hint: str) -> int:
    """`smsgw keys ...` on the ledger directly (audited as `cli`); `load_config` says what is wrong and exits."""
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
    config = load_config(args.config)
    actor = Actor("cli", "local")
    store = Store(config.store.ledger, reserve_bytes=config.store.reserve_bytes)
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
                    f"(narrow them with `smsgw keys update --config {config_hint} {rec.id} --scope ...`)"
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
