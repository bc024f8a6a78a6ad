"""Standalone simulator: `python -m modem.simulator` (also `smsgw simulate`).

Publishes the modem's AT ports as symlinks to pseudo-terminals, optionally a TCP port for
`socket://` URLs, and the HTTP control interface (see `modem.simulator.control`), then runs
until SIGINT/SIGTERM and removes the symlinks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from modem.simulator.control import ControlServer
from modem.simulator.device import MODELS, Simulator, default_directory


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return (host or "127.0.0.1", int(port))


def build_parser(prog: str = "python -m modem.simulator") -> argparse.ArgumentParser:
    """The simulator's options; `prog` is how the user invoked it (`smsgw simulate` names itself)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="A simulated modem on its own: its AT ports as pseudo-terminal symlinks, the HTTP "
        "control interface (inject SMS, faults, phone inboxes), until Ctrl-C.",
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help=f"where the port symlinks go (default {default_directory()})"
    )
    parser.add_argument("--model", choices=sorted(MODELS), default="quectel-ec25")
    parser.add_argument(
        "--listen", type=_host_port, default=None, help="also serve the primary port over TCP (HOST:PORT)"
    )
    parser.add_argument("--control", default="127.0.0.1:8025", help="control interface HOST:PORT, or 'none'")
    parser.add_argument(
        "--latency", type=float, default=1.5, help="seconds from Ctrl-Z to +CMGS (plus up to 1 s jitter)"
    )
    parser.add_argument(
        "--report-delay",
        type=float,
        default=2.5,
        help="seconds from +CMGS to the status report (plus jitter)",
    )
    parser.add_argument("--pin", default=None, help="the SIM asks for this PIN after power-on")
    parser.add_argument("--first-mr", type=int, default=0, help="first TP-MR handed out")
    parser.add_argument("--seed", type=int, default=None, help="seed for jitter, noise and shuffles")
    parser.add_argument("--balance", type=float, default=12.34, help="prepaid balance that *100# answers")
    parser.add_argument("--sms-price", type=float, default=0.09, help="what each SMS part sent costs")
    parser.add_argument("--ussd-ucs2", action="store_true", help="the operator answers USSD in UCS-2")
    parser.add_argument("--fast", action="store_true", help="no delays at all (for scripts and tests)")
    wording = parser.add_argument_group("answer wording (default: the model's; see modem.simulator.variants)")
    wording.add_argument(
        "--cmgr-header",
        choices=("empty_alpha", "quoted_alpha", "no_alpha", "no_stat", "length_only"),
        help='+CMGR/+CMGL head: 1,,24 | 1,"",24 | 1,24 | ,,24 | 24',
    )
    wording.add_argument("--alpha", help='a phonebook <alpha> in +CMGR/+CMGL heads, e.g. "Smith, J"')
    wording.add_argument("--empty-read", choices=("cms321", "ok"), help="AT+CMGR on an empty slot")
    wording.add_argument(
        "--cmgs-extra", choices=("none", "scts", "ackpdu"), help="what follows <mr> in +CMGS under AT+CSMS=1"
    )
    return parser


def apply_wording(sim: Simulator, args: argparse.Namespace) -> None:
    """The --cmgr-header/--alpha/--empty-read/--cmgs-extra overrides of the model's wording."""
    if args.cmgr_header:
        sim.variants.cmgr_header = args.cmgr_header
    if args.alpha is not None:
        sim.variants.alpha = args.alpha
    if args.empty_read:
        sim.variants.empty_read = args.empty_read
    if args.cmgs_extra:
        sim.variants.cmgs_extra = "" if args.cmgs_extra == "none" else args.cmgs_extra


async def run(args: argparse.Namespace) -> None:
    fast = args.fast
    sim = Simulator(
        args.dir,
        args.model,
        listen=args.listen,
        pin=args.pin,
        first_mr=args.first_mr,
        seed=args.seed,
        submit_latency_s=0 if fast else args.latency,
        submit_jitter_s=0 if fast else 1.0,
        report_delay_s=0 if fast else args.report_delay,
        report_jitter_s=0 if fast else 2.5,
        prompt_delay_s=0 if fast else 0.08,
        reset_delay_s=0 if fast else 0.2,
        reenumerate_delay_s=0 if fast else 1.0,
        boot_delay_s=0 if fast else 0.5,
        ussd_delay_s=0 if fast else 1.5,
    )
    apply_wording(sim, args)
    sim.ussd.update({"balance": args.balance, "price": args.sms_price, "ucs2": args.ussd_ucs2})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with sim:
        control = None
        if args.control != "none":
            host, port = _host_port(args.control)
            control = ControlServer(sim, host, port)
            await control.start()
        print(f"smsgw modem simulator ({sim.profile.key})")
        print(f"  primary port: {sim.primary_path}")
        if sim.aux_path is not None:
            print(f"  aux port:     {sim.aux_path}")
        if sim.tcp_address is not None:
            print(f"  tcp:          socket://{sim.tcp_address[0]}:{sim.tcp_address[1]}")
        if control is not None:
            base = f"http://{control.address[0]}:{control.address[1]}"
            print(f"  control:      {base}")
            print("examples:")
            print(f"  curl -s {base}/state")
            print(
                f'  curl -s {base}/inject -d \'{{"sender": "+4917612345678", "text": "Hello from the network"}}\''
            )
            print(f'  curl -s {base}/fault -d \'{{"name": "unplug"}}\'   # then {{"name": "replug"}}')
            print(f'  curl -s {base}/policy -d \'{{"number": "+4915112345678", "outcome": "fail"}}\'')
            print(f"  curl -s {base}/phones/+4915112345678/inbox")
            print(f'  curl -s {base}/ussd -d \'{{"balance": 0.5}}\'   # then AT+CUSD=1,"*100#",15')
        print(
            f"  gammu: printf '[gammu]\\ndevice = {sim.primary_path}\\nconnection = at\\n' > rc; gammu -c rc identify"
        )
        sys.stdout.flush()
        try:
            await stop.wait()
        finally:
            if control is not None:
                await control.stop()


def main(argv: list[str] | None = None, *, prog: str = "python -m modem.simulator") -> int:
    """Run the simulator until SIGINT/SIGTERM; 0 on a clean exit."""
    args = build_parser(prog).parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
