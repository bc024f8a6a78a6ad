"""HTTP JSON control interface of a running simulator (127.0.0.1 only by default).

```
GET  /state                      model, ports, SIM, radio, sessions, faults, policies
GET  /log?since=N                network log (submits, reports, injections), from entry N
GET  /phones                     {number: inbox size}
GET  /phones/{number}/inbox      messages the phone received, parts joined
POST /inject   {"sender": "+4917612345678", "text": "hi", "encoding": null|"gsm7"|"ucs2",
                "concat_bits": 8|16, "ref": 42 (default: the next), "parts_order": [2,1]|[1]|"reverse"|"shuffle",
                "smsc": "+49…"|["…","…"]}
POST /policy   {"number": "+49…" (omit: default), "outcome": "delivered"|"pending"|"fail"|"expired"|
                "gave_up"|"lost", "status": 65, "intermediate": 48, "duplicates": 1,
                "order": "in"|"reverse"|"shuffle", "delay_s": 5, "recipient_format": "national",
                "submit_error": 21}
POST /ussd     {"balance": 3.5, "price": 0.09, "currency": "EUR", "ucs2": false, "silent": false,
                "unknown": "text"|"unsupported", "delay_s": 1.5}   the operator's USSD answers
                (modem.simulator.ussd); any subset; answers the current settings
POST /fault    {"name": "hang", "port": "primary"|"aux"|null}   also: unhang, unplug, replug, reset,
               {"name": "cms_error", "code": 38, "count": 2}, {"name": "registration", "registered": false},
               {"name": "storage_full", "memory": "SM"}, {"name": "noise", "enabled": true},
               {"name": "pin_after_reset", "enabled": true}, {"name": "garbage", "hex": "00FF"},
               {"name": "drop_prompt", "count": 1}, {"name": "clear"},
               {"name": "stray_input", "hex": "0D"} (bytes as if the host wrote them: aborts a
               Fibocom send), {"name": "variants", "cmgr_header": "no_stat", "alpha": "Smith, J",
               "empty_read": "ok", "cmgs_extra": "scts"} (see modem.simulator.variants)
               {"name": "pdu", "hex": "0791…", "report": false} (a raw PDU, even an undecodable one)
               {"name": "freeze", "seconds": 30, "mid_submit": true}  (stops answering, the command in
               flight lost, then answers again), {"name": "thaw"},
               {"name": "boot_busy", "init_busy_s": 1, "sim_busy_s": 20}  (+CME ERROR: 515 / SIM busy
               windows of the next boots: replug, reset)
```
Example: `curl -s localhost:8025/inject -d '{"sender":"Megafon","text":"Привет 😀"}'`.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from modem.simulator.device import Simulator


class ControlError(Exception):
    """A bad control request; answered with 400 and the message."""


def create_app(sim: Simulator) -> Starlette:
    """The control interface of `sim` as an ASGI app."""

    async def state(request: Request) -> JSONResponse:
        return JSONResponse(sim.snapshot())

    async def log(request: Request) -> JSONResponse:
        since = int(request.query_params.get("since", "0"))
        return JSONResponse([e.as_dict() for e in sim.network.log[since:]])

    async def phones(request: Request) -> JSONResponse:
        return JSONResponse({n: len(p.inbox) for n, p in sim.network.phones.items()})

    async def inbox(request: Request) -> JSONResponse:
        phone = sim.network.phone(request.path_params["number"])
        return JSONResponse([m.as_dict() for m in phone.inbox])

    async def inject(request: Request) -> JSONResponse:
        body = await _json(request)
        try:
            deliveries = await sim.inject(
                sender=str(body["sender"]),
                text=str(body["text"]),
                encoding=body.get("encoding"),
                concat_bits=int(body.get("concat_bits", 8)),
                parts_order=body.get("parts_order"),
                smsc=body.get("smsc"),
                ref=None if body.get("ref") is None else int(body["ref"]),
            )
        except (KeyError, ValueError) as exc:
            raise ControlError(f"inject needs sender and text: {exc}") from exc
        return JSONResponse([d.__dict__ for d in deliveries])

    async def policy(request: Request) -> JSONResponse:
        body = await _json(request)
        number = body.pop("number", None)
        outcome = body.pop("outcome", None)
        try:
            result = sim.network.set_policy(number, outcome, **body)
        except (TypeError, ValueError) as exc:
            raise ControlError(str(exc)) from exc
        return JSONResponse(result.as_dict())

    async def fault(request: Request) -> JSONResponse:
        body = await _json(request)
        await apply_fault(sim, body)
        return JSONResponse(sim.snapshot())

    async def ussd(request: Request) -> JSONResponse:
        body = await _json(request)
        try:
            sim.ussd.update(body)
        except ValueError as exc:
            raise ControlError(str(exc)) from exc
        return JSONResponse(sim.ussd.as_dict())

    async def bad_request(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    routes = [
        Route("/state", state),
        Route("/log", log),
        Route("/phones", phones),
        Route("/phones/{number}/inbox", inbox),
        Route("/inject", inject, methods=["POST"]),
        Route("/policy", policy, methods=["POST"]),
        Route("/fault", fault, methods=["POST"]),
        Route("/ussd", ussd, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={ControlError: bad_request})


async def apply_fault(sim: Simulator, body: dict[str, Any]) -> None:
    """Switch one fault on or off, as described in the module docstring."""
    name = body.get("name")
    port = body.get("port")
    if name == "hang":
        sim.hang(port)
    elif name == "unhang":
        sim.unhang(port)
    elif name == "unplug":
        await sim.unplug()
    elif name == "replug":
        await sim.replug()
    elif name == "reset":
        sim.schedule_reset()
    elif name == "cms_error":
        sim.cms_error(int(body.get("code", 500)), int(body.get("count", 1)))
    elif name == "registration":
        sim.set_registration(bool(body.get("registered", False)))
    elif name == "storage_full":
        sim.fill_storage(str(body.get("memory", "SM")))
    elif name == "noise":
        sim.set_noise(bool(body.get("enabled", True)))
    elif name == "pin_after_reset":
        sim.pin_after_reset(bool(body.get("enabled", True)))
    elif name == "garbage":
        raw = body.get("hex")
        sim.inject_garbage(bytes.fromhex(raw) if raw else None, port or "primary")
    elif name == "drop_prompt":
        sim.drop_prompt(int(body.get("count", 1)))
    elif name == "stray_input":
        raw = body.get("hex")
        sim.stray_input(bytes.fromhex(raw) if raw else b"\r", port or "primary")
    elif name == "variants":
        _set_variants(sim, body)
    elif name == "pdu":
        try:
            sim.inject_pdu(bytes.fromhex(str(body.get("hex", ""))), report=bool(body.get("report", False)))
        except (ValueError, IndexError) as exc:
            raise ControlError(f"pdu needs hex of at least one octet: {exc}") from exc
    elif name == "clear":
        sim.clear_faults()
    elif name == "freeze":
        sim.freeze(_seconds(body, "seconds", 30.0), mid_submit=bool(body.get("mid_submit", True)))
    elif name == "thaw":
        sim.thaw()
    elif name == "boot_busy":
        sim.boot_busy(
            init_busy_s=_seconds(body, "init_busy_s", None), sim_busy_s=_seconds(body, "sim_busy_s", None)
        )
    else:
        raise ControlError(f"unknown fault {name!r}")


_VARIANT_CHOICES: dict[str, tuple[str, ...] | None] = {
    "cmgr_header": ("empty_alpha", "quoted_alpha", "no_alpha", "no_stat", "length_only"),
    "alpha": None,  # free text
    "empty_read": ("cms321", "ok"),
    "cmgs_extra": ("", "scts", "ackpdu"),
}


def _set_variants(sim: Simulator, body: dict[str, Any]) -> None:
    for key, value in body.items():
        if key == "name":
            continue
        if key not in _VARIANT_CHOICES:
            raise ControlError(f"unknown variant {key!r}: one of {', '.join(_VARIANT_CHOICES)}")
        choices = _VARIANT_CHOICES[key]
        if not isinstance(value, str) or (choices is not None and value not in choices):
            raise ControlError(
                f"variant {key!r} must be one of {choices}" if choices else f"{key!r} must be text"
            )
        setattr(sim.variants, key, value)


def _seconds(body: dict[str, Any], key: str, default: float | None) -> Any:
    """A duration field of a fault: a number from 0 to one day."""
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 86400:
        raise ControlError(f"{key}: expected seconds from 0 to 86400, got {value!r}")
    return float(value)


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise ControlError(f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ControlError("body must be a JSON object")
    return body


class ControlServer:
    """uvicorn serving `create_app(sim)` inside the caller's loop."""

    def __init__(self, sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._socket: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"ControlServer({self.host!r}, {self.port})"

    @property
    def address(self) -> tuple[str, int]:
        if self._socket is not None:
            host, port = self._socket.getsockname()[:2]
            return (str(host), int(port))
        return (self.host, self.port)

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self._socket = sock
        config = uvicorn.Config(create_app(self.sim), log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
        task = self._task
        while not self._server.started:  # uvicorn has no "started" event to wait on
            if task.done():
                task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            if self._task is not None:
                await self._task
            self._server = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
