"""Where the box may send callbacks: not to itself, its loopback, link-local or multicast (SSRF).

Any key holder names a `status_callback`, and the box POSTs to it: without a policy
that is a way into what only the box can reach (its own API and simulator control
on 127.0.0.1, a cloud metadata service on 169.254.169.254, the router's link-local
admin page). LAN and public targets stay allowed (a LAN appliance calls LAN apps);
`[webhooks] allow` CIDRs re-admit what is refused here.

Checked twice: at request time on the URL's literal host (so the caller gets a 422
naming the field, also for obfuscated forms such as 0x7f000001, 2130706433, 127.1
or [::ffff:127.0.0.1], which resolvers accept) and at connect time on every address
the name resolves to, connecting to the address checked (no second lookup that a
rebinding DNS server could answer differently).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
import typing
from collections.abc import Iterable

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # "this host on this network": Linux connects to itself
_LOOSE_V4 = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}", re.IGNORECASE)


_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=16)


class ForbiddenAddress(httpcore.ConnectError):
    """The callback's host is (or resolves to) an address the policy refuses."""


class AddressPolicy:
    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.allow: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(c, strict=False) for c in allow)

    def refusal(self, address: IPAddress) -> str | None:
        """Why the box must not connect to `address`, or None when it may."""
        candidates = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        if any(a in net for a in candidates for net in self.allow if a.version == net.version):
            return None
        ip = candidates[-1]
        if ip.is_loopback:
            return "a loopback address"
        if ip.is_unspecified or (isinstance(ip, ipaddress.IPv4Address) and ip in _THIS_NETWORK):
            return "an unspecified address"
        if ip.is_link_local:
            return "a link-local address"
        if ip.is_multicast:
            return "a multicast address"
        if isinstance(ip, ipaddress.IPv4Address) and ip.is_reserved:  # 240/4 and the broadcast address
            return "a reserved or broadcast address"
        if _is_own(ip):
            return "this box's own address"
        return None

    def check_host(self, host: str) -> str | None:
        """Request time: why a URL host is refused (a literal address or a localhost name), else None."""
        name = host.strip("[]").rstrip(".").lower()
        if name == "localhost" or name.endswith(".localhost"):
            return "a loopback name"
        address = literal_address(name)
        return None if address is None else self.refusal(address)

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Connect time: every address the name has, all checked; ForbiddenAddress if any is refused."""
        name = host.strip("[]")
        literal = literal_address(name.rstrip(".").lower())
        if literal is not None:
            addresses = [literal]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    name, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
                )
            except socket.gaierror as exc:
                raise httpcore.ConnectError(f"cannot resolve {name}: {exc.strerror}") from None
            addresses = list(dict.fromkeys(_address(str(info[4][0])) for info in infos))
        for address in addresses:
            why = self.refusal(address)
            if why is not None:
                raise ForbiddenAddress(f"{host} is {address}, {why}: refused ([webhooks] allow admits CIDRs)")
        return addresses


@functools.lru_cache(maxsize=8)
def policy_for(allow: tuple[str, ...]) -> AddressPolicy:
    return AddressPolicy(allow)


def literal_address(host: str) -> IPAddress | None:
    """The address a host written as a number means, in every form resolvers accept, else None."""
    try:
        return _address(host)
    except ValueError:
        pass
    if not _LOOSE_V4.fullmatch(host):
        return None
    # inet_aton(3) forms: 1 to 4 parts, each decimal, 0x-hex or 0-octal; the last fills the rest.
    values: list[int] = []
    for part in host.split("."):
        try:
            if part[:2].lower() == "0x":
                values.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part.startswith("0"):
                values.append(int(part, 8))
            else:
                values.append(int(part))
        except ValueError:
            return None  # "08": not octal, and resolvers refuse it too
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = last
    for i, value in enumerate(head):
        number += value << (8 * (3 - i))
    return ipaddress.IPv4Address(number)


def _address(text: str) -> IPAddress:
    return ipaddress.ip_address(text.split("%", 1)[0])  # without an IPv6 zone ("fe80::1%eth0")


def _is_own(address: IPAddress) -> bool:
    """Whether the address is one of this box's: only a local address can be bound to."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((str(address), 0))
    except OSError:
        return False
    return True


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Resolves and checks the host itself, then connects to the address it checked."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self.policy.resolve(host, port)
        last: Exception | None = None
        for address in addresses:  # as a resolver's caller would: the next address if one fails
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None  # noqa: S101  (resolve returns at least one address)
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise ForbiddenAddress("callbacks never go to a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with PinnedBackend underneath, and no proxy from the environment."""

    def __init__(self, policy: AddressPolicy, *, limits: httpx.Limits = _LIMITS) -> None:
        super().__init__(trust_env=False, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),  # the CAs the configured targets' client trusts
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PinnedBackend(policy),
        )
