"""The `smsgw` command: one console script, one verb per job."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import metadata


def _version() -> str:
    try:
        return metadata.version("smsgw")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smsgw", description="SMS gateway appliance")
    parser.add_argument("--version", action="version", version=f"smsgw {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail (AT traffic)")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    sim = sub.add_parser("simulate", help="run the simulated modem standalone (demo, reproduction)")
    sim.add_argument(
        "args", nargs=argparse.REMAINDER, help="options of the simulator (see: smsgw simulate --help)"
    )

    modem = sub.add_parser("modem", help="modem tools")
    modem_sub = modem.add_subparsers(dest="modem_verb", required=True, metavar="TOOL")
    probe = modem_sub.add_parser(
        "probe", help="check a modem port: identity, SIM, network, signal, SMS support"
    )
    probe.add_argument("port", help="device path (/dev/gsmmodem), socket://host:port")
    probe.add_argument("--baudrate", type=int, default=115200)
    return parser


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
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.verb == "simulate":
        from modem.simulator.__main__ import main as simulate  # noqa: PLC0415  (load only what the verb needs)

        return simulate(extra)
    if args.verb == "modem" and args.modem_verb == "probe":
        from modem.probe import main as probe  # noqa: PLC0415

        return probe(args.port, baudrate=args.baudrate)
    return 2


if __name__ == "__main__":
    sys.exit(main())
